"""Evaluation of a model: task metrics, the share of samples at each width and FLOPs per sample.

    report = evaluate_dir("runs/sst2")            # what `sharcs evaluate` prints
    evaluation = evaluate_model(model, dev_data, ("accuracy",))

FLOPs are analytic (`sharcs.modeling.flops`), per sample at its unpadded length and the width it ran at.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from datasets import Dataset

from sharcs.data import Examples, compute_metrics, default_metrics, get_task, load_file, tokenize
from sharcs.data.prepare import TaskInfo, first_samples, load_glue_quietly
from sharcs.errors import SharcsError
from sharcs.inference.predict import predict
from sharcs.methods.sharcs.calibration import operating_point
from sharcs.methods.sharcs.model import SharcsModel, cascade_problem, has_trained_router
from sharcs.modeling.adaptive import AdaptiveModel
from sharcs.modeling.flops import average_flops
from sharcs.modeling.pretrained import pad_id
from sharcs.storage.saved_run import Run, load_run


@dataclass
class Evaluation:
    """Task metrics, the share of samples on each route (width, or exit layer for early exit), the
    average analytic FLOPs per sample, and (classification) the share given the most predicted class."""

    metrics: dict[str, float]
    width_share: dict[str, float]  # keyed by `model.route_label`: "0.25", "1.0" or "exit 3"
    flops_per_sample: float
    full_flops_per_sample: float
    num_samples: int
    top_class_share: float | None = None  # 1.0: the model answers one class for everything

    @property
    def flops_reduction(self) -> float:
        """full-model FLOPs / SHARCS FLOPs (2.0 means half the compute)."""
        return self.full_flops_per_sample / self.flops_per_sample

    def to_dict(self) -> dict[str, Any]:
        """The JSON fields of `sharcs evaluate --json` and results.json."""
        return {
            "metrics": dict(self.metrics),
            "flops_per_sample": self.flops_per_sample,
            "full_flops_per_sample": self.full_flops_per_sample,
            "flops_reduction": self.flops_reduction,
            "width_share": dict(self.width_share),
            "num_samples": self.num_samples,
        }

    def record(self, prefix: str) -> dict[str, Any]:
        """Flat keys for a history record: dev_accuracy, dev_width_share, dev_flops_per_sample, ..."""
        record: dict[str, Any] = {f"{prefix}_{name}": value for name, value in self.metrics.items()}
        record[f"{prefix}_width_share"] = dict(self.width_share)
        record[f"{prefix}_flops_per_sample"] = self.flops_per_sample
        return record


def reduction_text(reduction: float) -> str:
    """2.034 -> "2.03x"."""
    return f"{reduction:.2f}x"


def metrics_text(metrics: dict[str, float]) -> str:
    """{"accuracy": 0.8291} -> "accuracy 0.8291"."""
    return ", ".join(f"{name} {value:.4f}" for name, value in metrics.items())


def share_text(share: dict[str, float]) -> str:
    """{"0.25": 0.6, "1.0": 0.4} -> "0.25: 60.0%, 1.0: 40.0%"."""
    return ", ".join(f"{w}: {100 * p:.1f}%" for w, p in share.items())


def evaluate_model(
    model: AdaptiveModel,
    data: Dataset,
    metrics: Sequence[str],
    batch_size: int = 64,
    width: float | None = None,
    pad_token_id: int = 0,
    setting: dict | None = None,
) -> Evaluation:
    """Routed (or width-forced, or under a curve `setting`) predictions on a tokenized labeled
    dataset, scored and costed."""
    if len(data) == 0:
        raise SharcsError("cannot evaluate on zero samples")
    if "labels" not in data.column_names:
        raise SharcsError("the evaluation data has no labels")
    out = predict(model, data, batch_size, width, pad_token_id, setting=setting)
    regression = model.num_labels == 1
    predictions = out.logits[:, 0].numpy() if regression else out.logits.argmax(-1).numpy()
    scores = compute_metrics(list(metrics), predictions, data["labels"])
    routes = out.routes.tolist()
    lengths = [len(ids) for ids in data["input_ids"]]
    forced = width is not None or "width" in (setting or {})
    routed, full = average_flops(model, routes, lengths, forced, setting)
    top_share = None if regression else float(np.bincount(predictions).max() / len(predictions))
    return Evaluation(scores, model.route_share(routes), routed, full, len(data), top_share)


def routing_arguments(
    model: AdaptiveModel,
    tau: float | None = None,
    cascade: float | None = None,
    budget: float | None = None,
    max_drop: float | None = None,
) -> dict[str, float]:
    """The forward's inference keywords for rule tau at `tau`, a cascade at confidence `cascade`, or the
    operating point the model's calibration table gives for the FLOPs `budget` or the tolerated drop
    `max_drop`; {} (the model's own routing) when all are None. The model is not changed."""
    if sum(x is not None for x in (tau, cascade, budget, max_drop)) > 1:
        raise SharcsError("give one of --tau, --cascade, --flops-budget and --max-drop")
    if budget is not None or max_drop is not None:
        option = "--flops-budget" if budget is not None else "--max-drop"
        if not isinstance(model, SharcsModel):
            raise SharcsError(f"{option}: a {model.method} model has no calibrated routing")
        point = operating_point(model, budget, max_drop=max_drop)
        if budget is not None and not point.met:
            logging.getLogger("sharcs").warning(
                f"--flops-budget {budget:g} cannot be met: the cheapest path alone costs {point.cost:.2f} of "
                "the full model's FLOPs, so every sample runs it"
            )
        return point.arguments()
    if tau is not None:
        if not has_trained_router(model):
            raise SharcsError("--tau: only a SHARCS model with a trained router has a tau to set")
        if not 0.0 <= tau <= 1.0:
            raise SharcsError(f"--tau: must lie in [0, 1], got {tau}")
        return {"tau": float(tau)}
    if cascade is not None:
        problem = cascade_problem(model)
        if problem is not None:
            raise SharcsError(f"--cascade: {problem}")
        if not 0.0 <= cascade <= 1.0:
            raise SharcsError(f"--cascade: must lie in [0, 1], got {cascade}")
        return {"cascade": float(cascade)}
    return {}


def check_width(model: AdaptiveModel, width: float | None, cascade: float | None = None) -> None:
    """SharcsError naming --width unless `width` is None or one of the model's widths (and no cascade:
    a cascade decides the widths itself)."""
    if width is not None and cascade is not None:
        raise SharcsError("give --width or --cascade, not both")
    if width is not None:
        try:
            model.width_index(width)
        except SharcsError as error:
            raise SharcsError(f"--width: {error}") from None


def evaluation_examples(
    run: Run,
    task: str | None = None,
    data_dir: str | None = None,
    validation_file: str | None = None,
    text_columns: Sequence[str] | None = None,
    label_column: str | None = None,
    split: str | None = None,
    encoding: str | None = None,
) -> tuple[Examples, TaskInfo]:
    """The labeled examples to evaluate `run` on: its own task by default, or another task or file
    (read with `encoding`; None: the run's --encoding, else UTF-8)."""
    saved = run.info
    paths = run.run_config.get("paths", {})
    if task is not None and validation_file is not None:
        raise SharcsError("give --task or --validation-file, not both")
    if validation_file is None and task is None and saved is not None and saved.task is None:
        validation_file = paths.get("validation_file")
        if validation_file is None:
            raise SharcsError("this run was trained on a file; pass --validation-file FILE")
    if validation_file is not None:
        columns = tuple(text_columns) if text_columns else (saved.text_columns if saved else None)
        if not columns:
            raise SharcsError("--validation-file needs --text-columns COLUMN[,COLUMN2]")
        label = label_column or (saved.label_column if saved else None) or "label"
        regression = run.model.num_labels == 1
        encoding = encoding or run.run_config.get("options", {}).get("encoding") or "utf-8"
        examples = load_file(validation_file, columns, label, run.label_list, regression, encoding)
        metrics = saved.metrics if saved and saved.task is None else default_metrics(regression)
        info = TaskInfo(None, columns, label, examples.label_list, metrics, None, run.max_seq_length)
    else:
        name = task or (saved.task if saved else None)
        if name is None:
            raise SharcsError("no task known for this model; pass --task NAME or --validation-file FILE")
        spec = get_task(name)
        dev_split = split or spec.dev_splits[0]
        if data_dir is None:
            data_dir = paths.get("data_dir")
        examples = load_glue_quietly(spec, dev_split, data_dir)
        info = TaskInfo.for_glue(spec, dev_split, run.max_seq_length)
    if examples.labels is None:
        raise SharcsError(f"{examples.source} has no labels to evaluate against")
    if info.num_labels != run.model.num_labels:
        raise SharcsError(
            f"{examples.source}: the data has {info.num_labels} label(s) "
            f"but the model predicts {run.model.num_labels}"
        )
    return examples, info


def evaluate_dir(
    directory: str | Path,
    task: str | None = None,
    data_dir: str | None = None,
    validation_file: str | None = None,
    text_columns: Sequence[str] | None = None,
    label_column: str | None = None,
    split: str | None = None,
    max_samples: int | None = None,
    max_seq_length: int | None = None,
    batch_size: int = 64,
    tau: float | None = None,
    width: float | None = None,
    device: str = "auto",
    cascade: float | None = None,
    budget: float | None = None,
    encoding: str | None = None,
    max_drop: float | None = None,
) -> dict[str, Any]:
    """Dev metrics, width shares and FLOPs of a trained model, as one JSON-ready dict.

    How many inputs were truncated to the max sequence length is logged on the "sharcs" logger."""
    if batch_size < 1:
        raise SharcsError(f"--batch-size: must be at least 1, got {batch_size}")
    if max_samples is not None and max_samples < 1:
        raise SharcsError(f"--max-eval-samples: must be at least 1, got {max_samples}")
    run = load_run(directory, device)
    check_width(run.model, width, cascade)
    setting = routing_arguments(run.model, tau, cascade, budget, max_drop)
    examples, info = evaluation_examples(
        run, task, data_dir, validation_file, text_columns, label_column, split, encoding
    )
    examples = first_samples(examples, max_samples)
    data = tokenize(examples, run.tokenizer, max_seq_length or info.max_seq_length, what="evaluation")
    model, config = run.model, run.model.config
    evaluation = evaluate_model(
        model, data, info.metrics, batch_size, width, pad_id(run.tokenizer), setting=setting
    )
    rule = model.rule(setting) if isinstance(model, SharcsModel) else model.method
    routing = "width" if width is not None else rule
    return {
        "task": info.task or "file",
        "split": info.dev_split,
        "data": examples.source,
        "model": str(run.model_dir),
        "method": run.model.method,
        "routing": routing,
        "tau": setting.get("tau", getattr(config, "tau", None)) if routing == "tau" else None,
        "cascade": setting.get("cascade", getattr(config, "cascade_confidence", None))
        if routing == "cascade"
        else None,
        "width": width,
        "flops_budget": budget,
        "max_drop": max_drop,
        **evaluation.to_dict(),
    }
