"""`sharcs train` from Python: data, model and trainer put together into an output folder.

    options = TrainOptions(output_dir="runs/sst2", task="sst2", data_dir="glue", epochs=2)
    results = train(options)                      # runs/sst2/{model,best,checkpoint,history.json,...}

An output folder holds everything later commands need: run_config.json (the options and the task's
labels, columns and metrics), the tokenizer, and the trained model in model/. Evaluation and
prediction live in `sharcs.evaluation` and `sharcs.prediction`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

from datasets import Dataset

from sharcs import distributed
from sharcs.adaptive import AdaptiveModel, load_model
from sharcs.backbone import build_model, pad_id, resolve_model_path
from sharcs.data import tokenize
from sharcs.errors import SharcsError
from sharcs.evaluation import evaluate_model, reduction_text, share_text
from sharcs.files import atomic_write_text
from sharcs.model import has_router, is_cascade
from sharcs.options import MODEL_DIR, RUN_CONFIG, TrainOptions, load_train_options, option_name, pick_device
from sharcs.task_data import TaskInfo, label_range, prepare_data
from sharcs.training import (
    BEST_DIR,
    CHECKPOINT_DIR,
    Trainer,
    TrainingArguments,
    find_checkpoint,
    remove_checkpoints,
)

RESULTS_NAME = "results.json"
LOG_NAME = "train.log"

logger = logging.getLogger("sharcs")


class _RunLog:
    """Add a train.log file handler to the "sharcs" logger for the duration of a run."""

    def __init__(self, path: Path):
        self.handler = logging.FileHandler(path, encoding="utf-8")
        self.handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        self.level = logger.level

    def __enter__(self) -> None:
        logger.addHandler(self.handler)
        if self.level == logging.NOTSET or self.level > logging.INFO:
            logger.setLevel(logging.INFO)

    def __exit__(self, *exc: object) -> None:
        logger.removeHandler(self.handler)
        self.handler.close()
        logger.setLevel(self.level)


class _Quiet:
    """Silence the "sharcs" logger below ERROR for the duration of a run (ranks other than 0)."""

    def __init__(self) -> None:
        self.level = logger.level

    def __enter__(self) -> None:
        logger.setLevel(logging.ERROR)

    def __exit__(self, *exc: object) -> None:
        logger.setLevel(self.level)


def _device(options: TrainOptions) -> Any:
    """The run's device; under a multi-process launch each process takes the GPU of its local rank."""
    import torch

    device = pick_device(options.device)
    distributed.init_distributed(device.type)
    if distributed.is_distributed() and device.type == "cuda":
        device = torch.device("cuda", distributed.local_rank())
        torch.cuda.set_device(device)
    return device


def _check_resumable(saved: TrainOptions, options: TrainOptions) -> None:
    """On resume every option must equal the saved one (the device may change)."""
    for f in dataclasses.fields(TrainOptions):
        if f.name in ("device", "output_dir"):
            continue
        old, new = getattr(saved, f.name), getattr(options, f.name)
        if old != new:
            raise SharcsError(
                f"--resume continues with the saved settings, but {option_name(f.name)} is {new!r} "
                f"here and {old!r} in {Path(options.output_dir) / RUN_CONFIG}"
            )


COLLAPSED_TOP_CLASS_SHARE = 0.98  # the narrow path answering one class this often has collapsed


def _epoch_line(epoch: int, record: dict[str, Any], info: TaskInfo) -> str:
    main = info.main_metric
    parts = [f"epoch {epoch}: train loss {record['train_loss']:.4f}"]
    if f"heldout_{main}" in record:
        parts.append(f"held-out {main} {record[f'heldout_{main}']:.4f}")
    if f"heldout_narrowest_{main}" in record:
        parts.append(f"held-out at narrowest width {main} {record[f'heldout_narrowest_{main}']:.4f}")
    parts.append(f"dev {main} {record[f'dev_{main}']:.4f}")
    parts.append(f"FLOPs {reduction_text(record['flops_reduction'])} fewer")
    parts.append(f"dev routes {share_text(record['dev_width_share'])}")
    return " | ".join(parts)


def train(options: TrainOptions, resume: bool = False, overwrite: bool = False) -> dict[str, Any]:
    """Train (or resume) a run into options.output_dir and return its final dev results.

    Under torchrun / accelerate launch every process trains its share of each batch (see
    `sharcs.training`); only rank 0 writes files and logs, every rank returns the results.

    The epoch kept is the one with the best held-out score (a seeded slice of the training data,
    never the dev set), or with --select-tolerance the cheapest one near it. Writes the tokenizer,
    run_config.json, train.log, history.json, checkpoint/, best/, then model/ (the kept model) and
    results.json (its dev evaluation).
    """
    out = Path(options.output_dir).expanduser()
    options.validate()
    source = Path(resolve_model_path(options.model)).expanduser()
    if source.exists() and out.resolve() in (source.resolve(), *source.resolve().parents):
        raise SharcsError(f"--model {options.model} is inside --output-dir {out}: the run would overwrite it")
    if resume:
        if not (out / RUN_CONFIG).is_file():
            raise SharcsError(f"nothing to resume: {out / RUN_CONFIG} does not exist")
        _check_resumable(load_train_options(out), options)
        if find_checkpoint(out) is None:
            raise SharcsError(f"nothing to resume: {out / CHECKPOINT_DIR} does not exist")
    elif (out / RUN_CONFIG).exists() and not overwrite:
        raise SharcsError(f"{out} already holds a run; continue it with --resume, or pass --overwrite")
    elif out.exists() and not out.is_dir():
        raise SharcsError(f"--output-dir {out} exists and is not a folder")
    device = _device(options)
    distributed.barrier()  # every rank has checked the folder before rank 0 writes into it
    main = distributed.is_main()

    data = prepare_data(options)
    info = data.info
    model, tokenizer = build_model(options, info)
    model.to(device)
    pad = pad_id(tokenizer)
    train_data = tokenize(data.train, tokenizer, options.max_seq_length)
    held_data = tokenize(data.held_out, tokenizer, options.max_seq_length) if data.held_out else None
    dev_data = tokenize(data.dev, tokenizer, options.max_seq_length)
    args = TrainingArguments(
        epochs=options.epochs,
        batch_size=options.batch_size,
        learning_rate=options.lr,
        router_learning_rate=options.router_lr,
        router_loss_in_warmup=options.router_loss_in_warmup,
        distill_narrow=options.distill_narrow,
        distill_hidden=options.distill_hidden,
        hardness_from=options.hardness_from,
        select_tolerance=options.select_tolerance,
        seed=options.seed,
        label_range=label_range(data.train) if info.is_regression else None,
        save_every_steps=options.save_every_steps,
    )
    eval_batch = max(64, options.batch_size)
    narrowest = min(model.config.widths) if has_router(model) or is_cascade(model) else None

    def evaluate(m: AdaptiveModel) -> dict[str, Any]:
        """After each epoch: held-out scores (for choosing the epoch), dev scores and costs (for the log)."""
        record: dict[str, Any] = {}
        if held_data is not None:
            record.update(evaluate_model(m, held_data, info.metrics, eval_batch, None, pad).record("heldout"))
            if narrowest is not None:  # the narrow path alone: one that collapsed to a class shows here
                narrow = evaluate_model(m, held_data, info.metrics, eval_batch, narrowest, pad)
                record[f"heldout_narrowest_{info.main_metric}"] = narrow.metrics[info.main_metric]
                if narrow.top_class_share is not None:
                    record["heldout_narrowest_top_class_share"] = narrow.top_class_share
                    if narrow.top_class_share >= COLLAPSED_TOP_CLASS_SHARE:
                        logger.warning(
                            f"at width {narrowest} the model gives one class to "
                            f"{100 * narrow.top_class_share:.1f}% of held-out samples: the narrow path has "
                            "collapsed, so whatever routes samples there decides their class (it may recover "
                            "in later epochs; else try --keep-residual or a wider narrowest width; see "
                            "docs/notes/sst2-findings.md)"
                        )
        dev = evaluate_model(m, dev_data, info.metrics, eval_batch, None, pad)
        record.update(dev.record("dev"))
        record["full_flops_per_sample"] = dev.full_flops_per_sample
        record["flops_reduction"] = dev.flops_reduction
        sums = trainer.epoch_sums
        train_loss = sums["loss"] / max(1, sums["steps"])
        logger.info(_epoch_line(len(trainer.history) + 1, {"train_loss": train_loss, **record}, info))
        return record

    select = f"heldout_{info.main_metric}" if held_data is not None else None
    cost = "heldout_flops_per_sample" if held_data is not None else None
    trainer = Trainer(model, train_data, args, out, evaluate, select, pad, select_cost=cost)
    if resume:
        trainer.load_checkpoint()  # fail early (before any log line) on a missing or corrupt checkpoint

    if main:
        out.mkdir(parents=True, exist_ok=True)
    if main and not resume:
        remove_checkpoints(out)  # an --overwrite must never resume the old run's training state
        run_config = {
            "options": options.to_dict(),
            "task_info": info.to_dict(),
            "model_path": resolve_model_path(options.model),
            "paths": {name: _absolute(getattr(options, name)) for name in ("data_dir", "validation_file")},
            "num_samples": {
                "train": len(data.train),
                "held_out": len(data.held_out) if data.held_out else 0,
                "dev": len(data.dev),
            },
        }
        tokenizer.save_pretrained(str(out))
        atomic_write_text(out / RUN_CONFIG, json.dumps(run_config, indent=2) + "\n")
    distributed.barrier()
    with _RunLog(out / LOG_NAME) if main else _Quiet():
        logger.info(
            "%s %s: %d train, %d held-out, %d dev samples; model %s (%d layers), method %s: %s",
            "resuming" if resume else "training",
            info.task or Path(options.train_file or "").name,
            len(data.train),
            len(data.held_out) if data.held_out else 0,
            len(data.dev),
            options.model,
            model.dims.layers,
            options.method,
            model.config,
        )
        if resume:
            logger.info("resuming at epoch %d, step %d", trainer.epoch + 1, trainer.step_in_epoch)
        history = trainer.train(resume=resume)
        results = _finish(model, history, out, info, dev_data, eval_batch, pad, select)
        logger.info(
            "done: dev %s, %s fewer FLOPs than the full model, routes %s; model in %s",
            ", ".join(f"{k} {v:.4f}" for k, v in results["metrics"].items()),
            reduction_text(results["flops_reduction"]),
            share_text(results["width_share"]),
            out / MODEL_DIR,
        )
    return results


def _absolute(path: str | None) -> str | None:
    return None if path is None else str(Path(path).expanduser().resolve())


def _finish(
    model: AdaptiveModel,
    history: list[dict[str, Any]],
    out: Path,
    info: TaskInfo,
    dev_data: Dataset,
    batch_size: int,
    pad: int,
    select: str | None,
) -> dict[str, Any]:
    """Save the kept model to model/, evaluate it on dev and write results.json."""
    best_epochs = [i + 1 for i, record in enumerate(history) if record.get("best")]
    if not best_epochs:
        select = None  # no epoch ever scored (e.g. a NaN held-out metric): keep the last one
    if select is not None:
        kept = load_model(out / BEST_DIR).to(next(model.parameters()).device)
        best_epoch = max(best_epochs)
    else:
        kept, best_epoch = model, len(history)
    if distributed.is_main():
        kept.save_pretrained(out / MODEL_DIR)
    evaluation = evaluate_model(kept, dev_data, info.metrics, batch_size, None, pad)
    results = {
        "task": info.task or "file",
        "split": info.dev_split,
        "best_epoch": best_epoch,
        "selected_on": select or "last epoch",
        "epochs": len(history),
        **evaluation.to_dict(),
    }
    if select is not None:
        results["held_out_" + info.main_metric] = history[best_epoch - 1][select]
    if distributed.is_main():
        atomic_write_text(out / RESULTS_NAME, json.dumps(results, indent=2) + "\n")
    distributed.barrier()
    return results


__all__ = ["LOG_NAME", "RESULTS_NAME", "logger", "train"]
