"""Budget calibration for the sandwich recipe (docs/method.md §7): fit the router on held-out data
(router_fit.py) and choose the operating point that meets a FLOPs budget (operating_points.py walks
the table built here).

    table = held_out_table(model, held_data)          # per-sample costs, scores and outcomes per width
    choice, points = choose_operating_point(table, budget=0.5, metric="accuracy")
    choice, points = choose_operating_point(table, None, "accuracy", max_drop=0.01)  # within 1 point
    apply_choice(model, choice)                        # routing "tau" or "cascade" at the chosen threshold
    summary = calibrate(model, held_data, 0.5, "accuracy", seed=0)   # all of it: fit, choose, apply

Everything here reads held-out *training* data (never the dev set): a seeded half of the held-out slice
fits the router, the other half chooses the rule and its threshold. The table is saved with the model
(`calibration.json`, plain JSON), so `--flops-budget` at evaluate/predict time picks a new operating
point without data.

Two rules compete at a budget B (mean FLOPs per sample <= B x the full model's):
- "tau": the fitted router reads layer K's states; the samples it scores least likely to be fine at the
  narrowest width run at full width, as many as the budget allows.
- "cascade" (classification): every sample runs the narrowest width; the least confident ones run again
  at full width from layer K, as many as the budget allows.
The cascade is kept unless the router is better on the calibration rows by more than ROUTER_MARGIN.
For regression only "tau" applies.

With a tolerated drop D instead of a budget (`--max-drop`), each rule's point is the cheapest one whose
metric on the calibration rows stays within D of every sample at full width, with a margin for their
noise on classifiers (`drop_point`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch
from datasets import Dataset

from sharcs.data.collate import pad_batch
from sharcs.errors import SharcsError
from sharcs.inference.predict import MODEL_INPUTS
from sharcs.methods.sharcs.flops import sharcs_flops
from sharcs.methods.sharcs.model import SharcsModel
from sharcs.methods.sharcs.operating_points import (
    OperatingPoint,
    choose_operating_point,
    drop_point,
    metric_at,
    rule_point,
)
from sharcs.methods.sharcs.router import masked_mean
from sharcs.methods.sharcs.router_fit import fit_router

ONE_POINT = 0.01  # the drop whose cheapest routing every calibration summary also reports
TABLE_VERSION = 1


def _batches(data: Dataset, batch_size: int, pad_token_id: int):
    inputs = data.select_columns([c for c in MODEL_INPUTS if c in data.column_names])
    for start in range(0, len(data), batch_size):
        rows = list(range(start, min(start + batch_size, len(data))))
        yield pad_batch(inputs[rows], pad_token_id)


@torch.inference_mode()
def _features_and_logits(
    model: SharcsModel, data: Dataset, batch_size: int, pad_token_id: int
) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
    """Layer K's masked-mean states, router logits, and the logits at each width, in data order."""
    model.eval()
    device = next(model.parameters()).device
    features, router_logits, logits = [], [], [[] for _ in model.config.widths]
    for batch in _batches(data, batch_size, pad_token_id):
        batch = {k: v.to(device) for k, v in batch.items()}
        hidden = model.encode_prefix(batch["input_ids"], batch["attention_mask"], batch.get("token_type_ids"))
        features.append(masked_mean(hidden, batch["attention_mask"]).float().cpu())
        router_logits.append(model.router(hidden, batch["attention_mask"]).float().cpu())
        choice = torch.zeros(len(hidden), dtype=torch.long, device=device)
        for i in range(len(model.config.widths)):
            logits[i].append(model.run_routed(hidden, batch["attention_mask"], choice + i).float().cpu())
    return torch.cat(features), torch.cat(router_logits), [torch.cat(w) for w in logits]


def held_out_table(
    model: SharcsModel, data: Dataset, batch_size: int = 64, pad_token_id: int = 0
) -> dict[str, Any]:
    """Per-sample facts of labeled `data` that every operating point is computed from (JSON-ready):
    lengths, FLOPs of each path, the router's narrowest-width score, the narrowest width's top class
    probability, the predictions at the narrowest and full widths, and the labels."""
    _, router_logits, logits = _passes(model, data, batch_size, pad_token_id)
    return _table(model, data, router_logits, logits)


def _passes(
    model: SharcsModel, data: Dataset, batch_size: int, pad_token_id: int
) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
    if len(data) == 0:
        raise SharcsError("calibration needs held-out samples (--held-out-fraction > 0)")
    if len(model.config.widths) != 2:
        raise SharcsError(
            "calibration routes between two widths (narrowest and full); this model has "
            f"{list(model.config.widths)}"
        )
    return _features_and_logits(model, data, batch_size, pad_token_id)


def _table(
    model: SharcsModel, data: Dataset, router_logits: torch.Tensor, logits: list[torch.Tensor]
) -> dict[str, Any]:
    narrow, full = logits[0], logits[-1]
    regression = model.num_labels == 1
    lengths = [len(ids) for ids in data["input_ids"]]
    config = model.config
    w0, w1 = config.widths[0], config.widths[-1]
    return {
        "version": TABLE_VERSION,
        "regression": regression,
        "widths": [w0, w1],
        "labels": [float(v) for v in data["labels"]],
        "full_model_flops": [model.full_flops(n) for n in lengths],
        "flops": {
            "tau_narrow": [sharcs_flops(model, w0, n, rule="tau") for n in lengths],
            "tau_full": [sharcs_flops(model, w1, n, rule="tau") for n in lengths],
            "cascade_narrow": [sharcs_flops(model, w0, n, rule="cascade") for n in lengths],
            "cascade_full": [sharcs_flops(model, w1, n, rule="cascade") for n in lengths],
        },
        "router_score": torch.sigmoid(router_logits[:, 0]).tolist(),
        "narrow_confidence": None if regression else torch.softmax(narrow, -1).amax(-1).tolist(),
        "prediction_narrow": _predictions(narrow),
        "prediction_full": _predictions(full),
    }


def check_table(table: Any) -> dict[str, Any]:
    """The table if it has every field `held_out_table` and `calibrate` write, of consistent lengths,
    else a SharcsError (a damaged or foreign calibration.json)."""
    keys = ("labels", "full_model_flops", "router_score", "prediction_narrow", "prediction_full")
    flops = ("tau_narrow", "tau_full", "cascade_narrow", "cascade_full")
    if (
        not isinstance(table, dict)
        or table.get("version") != TABLE_VERSION
        or not isinstance(table.get("regression"), bool)
        or any(k not in table for k in keys)
        or not isinstance(table.get("flops"), dict)
        or any(k not in table["flops"] for k in flops)
    ):
        raise SharcsError("calibration.json is not a sharcs calibration table (version 1)")
    n = len(table["labels"]) if isinstance(table["labels"], list) else 0
    columns = [table[k] for k in keys] + [table["flops"][k] for k in flops]
    if not table["regression"]:
        columns.append(table.get("narrow_confidence"))
    if n == 0 or any(not isinstance(c, list) or len(c) != n for c in columns):
        raise SharcsError("calibration.json: its per-sample columns are missing or of different lengths")
    rows = table.get("calibration_rows", list(range(n)))
    if not rows or not isinstance(rows, list) or any(not isinstance(r, int) or not 0 <= r < n for r in rows):
        raise SharcsError("calibration.json: calibration_rows must be row numbers of the table")
    return table


def _predictions(logits: torch.Tensor) -> list[float]:
    return (logits[:, 0] if logits.shape[-1] == 1 else logits.argmax(-1).float()).tolist()


def split_rows(count: int, seed: int) -> tuple[list[int], list[int]]:
    """A seeded split of the held-out rows into (router fitting, calibration) halves."""
    order = torch.randperm(count, generator=torch.Generator().manual_seed(seed + 7919)).tolist()
    half = max(1, count // 2)
    return sorted(order[:half]), sorted(order[half:] or order[:half])


def apply_choice(model: SharcsModel, point: OperatingPoint) -> None:
    """Set the model's routing rule to the chosen point (routing "tau" at tau, or "cascade")."""
    if point.rule == "tau":
        # rule tau sends a sample narrow when its score >= tau: the full-width ones are those below it
        model.config = dataclasses.replace(model.config, routing="tau", tau=point.threshold)
    else:
        model.config = dataclasses.replace(
            model.config, routing="cascade", cascade_confidence=point.threshold
        )


def calibrate(
    model: SharcsModel,
    data: Dataset,
    budget: float,
    metric: str,
    seed: int,
    batch_size: int = 64,
    pad_token_id: int = 0,
    max_drop: float | None = None,
) -> dict[str, Any]:
    """Fit the router on one half of the held-out `data`, choose the rule at `budget` (or within
    `max_drop` of full width) on the other, apply it to `model` and store the table on the model
    (`model.calibration`). Returns a summary."""
    features, router_logits, logits = _passes(model, data, batch_size, pad_token_id)
    table = _table(model, data, router_logits, logits)
    fit_rows, calibration_rows = split_rows(len(data), seed)
    fit = fit_router(model, features, table, fit_rows, calibration_rows, seed)
    with torch.no_grad():  # the fitted router's scores, from the same features
        router = model.router.eval()
        parameter = next(router.parameters())
        scored = router(features.to(parameter).unsqueeze(1), torch.ones(len(features), 1).to(parameter))
    table["router_score"] = torch.sigmoid(scored[:, 0].float()).cpu().tolist()
    table["calibration_rows"] = calibration_rows
    table["metric"] = metric
    best, points = choose_operating_point(table, budget, metric, calibration_rows, max_drop)
    apply_choice(model, best)
    model.calibration = table
    everything_full = np.ones(len(calibration_rows), dtype=bool)
    one_point, _ = choose_operating_point(table, None, metric, calibration_rows, ONE_POINT)
    return {
        **fit,
        "calibration_samples": len(calibration_rows),
        "chosen": best.to_dict(),
        "points": [p.to_dict() for p in points],
        "full_width_metric": metric_at(table, np.asarray(calibration_rows), everything_full, metric),
        "one_point_drop": one_point.to_dict(),  # what --max-drop 0.01 would choose, for the summary
    }


def operating_point(
    model: SharcsModel, budget: float | None, rule: str | None = None, max_drop: float | None = None
) -> OperatingPoint:
    """The operating point for `budget`, or within `max_drop` of full width, from the table saved with
    the model (no data needed); the model is not changed (`point.arguments()` are the forward's keywords
    for it)."""
    table = getattr(model, "calibration", None)
    if table is None:
        option = "--max-drop" if max_drop is not None else "--flops-budget"
        raise SharcsError(
            f"{option}: this model has no calibration table (it was not trained with the sandwich "
            "recipe); use --tau or --cascade instead"
        )
    table = check_table(table)
    rows, metric = table.get("calibration_rows"), table.get("metric", "accuracy")
    if rule is None:
        point, _ = choose_operating_point(table, budget, metric, rows, max_drop)
    elif max_drop is not None:
        point = drop_point(table, rule, max_drop, metric, rows)
    else:
        point = rule_point(table, rule, budget, metric, rows)
    return point


def calibration_line(summary: dict[str, Any], metric: str) -> str:
    """One log line: the chosen rule at the budget and what every rule scored on the calibration rows."""
    chosen = summary["chosen"]
    parts = [
        f"{p['rule']} {metric} {p['metric']:.4f} at {100 * p['full_share']:.0f}% full width, "
        f"{p['cost']:.2f} of full FLOPs"
        for p in summary["points"]
    ]
    met = "" if chosen["met"] else " (not met: even the cheapest path costs more)"
    drop = chosen.get("max_drop")
    target = f"--max-drop {drop:g}" if drop is not None else f"--flops-budget {chosen['budget']:g}{met}"
    return (
        f"calibrated to {target} on {summary['calibration_samples']} "
        f"held-out samples: kept rule {chosen['rule']} (threshold {chosen['threshold']:.4g}); "
        + "; ".join(parts)
    )
