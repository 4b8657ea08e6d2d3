"""Budget calibration for the sandwich recipe (docs/method.md §7): fit the router on held-out data
(router_fit.py) and choose the operating point that meets a FLOPs budget.

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
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from datasets import Dataset

from sharcs.data import compute_metrics
from sharcs.data.collate import pad_batch
from sharcs.errors import SharcsError
from sharcs.inference.predict import MODEL_INPUTS
from sharcs.methods.sharcs.config import check_budget, check_max_drop
from sharcs.methods.sharcs.flops import sharcs_flops
from sharcs.methods.sharcs.model import SharcsModel
from sharcs.methods.sharcs.router import masked_mean
from sharcs.methods.sharcs.router_fit import fit_router

RULES = ("tau", "cascade")
ROUTER_MARGIN = 0.01  # the router is kept over the cascade only when better by more than this
ONE_POINT = 0.01  # the drop whose cheapest routing every calibration summary also reports
DROP_Z = 1.645  # --max-drop's noise margin: the one-sided 95% quantile of a standard normal
DROP_STEPS = 1000  # the most thresholds `drop_point` walks through (each costs a metric over the rows)
TABLE_VERSION = 1


@dataclass
class OperatingPoint:
    """A rule and threshold, with what it does on the calibration rows: the metric, the share of samples
    answered at full width and the mean FLOPs as a fraction of the full model's."""

    rule: str
    threshold: float
    metric: float
    full_share: float
    cost: float  # mean FLOPs / mean full-model FLOPs
    budget: float  # the FLOPs budget asked for; for a --max-drop point, the cost it amounts to
    met: bool  # False: even every sample on the cheapest path costs more than the budget
    max_drop: float | None = None  # set when the point was chosen by --max-drop instead of a budget

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def arguments(self) -> dict[str, float]:
        """The point as a forward's inference keywords: {"tau": ...} or {"cascade": ...}."""
        # rule tau sends a sample narrow when its score >= tau: the full-width ones are those below it
        return {"tau": self.threshold} if self.rule == "tau" else {"cascade": self.threshold}


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


def _metric(table: dict[str, Any], rows: np.ndarray, full_mask: np.ndarray, metric: str) -> float:
    narrow = np.asarray(table["prediction_narrow"])[rows]
    full = np.asarray(table["prediction_full"])[rows]
    labels = np.asarray(table["labels"])[rows]
    predictions = np.where(full_mask, full, narrow)
    if not table["regression"]:
        predictions, labels = predictions.astype(np.int64), labels.astype(np.int64)
    return compute_metrics([metric], predictions, labels)[metric]


def path_costs(table: dict[str, Any], rule: str) -> tuple[np.ndarray, np.ndarray]:
    """Per-sample FLOPs of the cheap and the full-width answer under `rule` ("tau": routed once;
    "cascade": a full-width answer also paid for the narrow pass)."""
    flops = table["flops"]
    cheap, dear = (
        (flops["tau_narrow"], flops["tau_full"])
        if rule == "tau"
        else (flops["cascade_narrow"], flops["cascade_full"])
    )
    return np.asarray(cheap, dtype=np.float64), np.asarray(dear, dtype=np.float64)


def rule_scores(table: dict[str, Any], rule: str) -> np.ndarray:
    """What `rule` ranks samples by (lowest first to full width): the router's score, or the narrowest
    width's top class probability."""
    if rule not in RULES:
        raise SharcsError(f"unknown rule {rule!r}; rules: {', '.join(RULES)}")
    if rule == "cascade" and table["regression"]:
        raise SharcsError("the cascade rule needs class probabilities; a regression model has none")
    return np.asarray(table["router_score" if rule == "tau" else "narrow_confidence"], dtype=np.float64)


@dataclass
class _Rows:
    """The rows a point is computed on, with `rule`'s scores (also sorted), cheap and full-width costs,
    and the full model's FLOPs summed over them."""

    index: np.ndarray
    score: np.ndarray
    ordered: np.ndarray
    cheap: np.ndarray
    dear: np.ndarray
    reference: float


def _rows(table: dict[str, Any], rule: str, rows: list[int] | None, score: np.ndarray | None) -> _Rows:
    score = rule_scores(table, rule) if score is None else np.asarray(score, dtype=np.float64)
    index = np.arange(len(table["labels"])) if rows is None else np.asarray(rows)
    cheap, dear = (c[index] for c in path_costs(table, rule))
    reference = float(np.asarray(table["full_model_flops"], dtype=np.float64)[index].sum())
    return _Rows(index, score[index], np.sort(score[index]), cheap, dear, reference)


def _point(
    table: dict[str, Any],
    rule: str,
    metric: str,
    at: _Rows,
    count: int,
    budget: float | None,
    met: bool = True,
    max_drop: float | None = None,
) -> OperatingPoint:
    """The point of `rule` that sends the `count` lowest-scored rows to full width: a threshold between
    the last score sent there and the next one (rule "tau" sends a sample narrow when its score >= tau,
    the cascade re-runs it when its confidence < C; tied scores go together)."""
    if count == 0:  # every sample on the cheap path, on these rows and on any others
        threshold = 0.0
    elif count == len(at.ordered):
        threshold = 1.0
    else:
        threshold = float((at.ordered[count - 1] + at.ordered[count]) / 2)
    return _at_threshold(table, rule, metric, at, min(1.0, max(0.0, threshold)), budget, met, max_drop)


def _at_threshold(
    table: dict[str, Any],
    rule: str,
    metric: str,
    at: _Rows,
    threshold: float,
    budget: float | None,
    met: bool = True,
    max_drop: float | None = None,
) -> OperatingPoint:
    """What the model does on `at`'s rows at this threshold: metric, full-width share and cost (and the
    budget asked for; without one, the cost)."""
    full_mask = at.score < threshold
    cost = float(np.where(full_mask, at.dear, at.cheap).sum() / at.reference)
    value = _metric(table, at.index, full_mask, metric)
    spent = cost if budget is None else budget
    return OperatingPoint(rule, threshold, value, float(full_mask.mean()), cost, spent, met, max_drop)


def threshold_point(
    table: dict[str, Any], rule: str, threshold: float, metric: str, rows: list[int] | None = None
) -> OperatingPoint:
    """What `rule` at `threshold` does on `rows` of a table (e.g. one of dev data, to see how a point
    chosen on the calibration rows transfers): the metric, full-width share and cost a model routed so
    gets there."""
    return _at_threshold(table, rule, metric, _rows(table, rule, rows, None), threshold, None)


def rule_point(
    table: dict[str, Any],
    rule: str,
    budget: float,
    metric: str,
    rows: list[int] | None = None,
    score: np.ndarray | None = None,
) -> OperatingPoint:
    """The operating point of `rule` within `budget`: samples go to full width in ascending order of
    `score` (default: the rule's own, `rule_scores`), paying `rule`'s costs, as far as a threshold
    between scores allows (tied scores go together, so the budget is never exceeded)."""
    at = _rows(table, rule, rows, score)
    order = np.argsort(at.score, kind="stable")
    extra = np.concatenate([[0.0], np.cumsum((at.dear - at.cheap)[order])])  # cost of the first r at full
    count = int(np.searchsorted(extra, budget * at.reference - at.cheap.sum(), side="right")) - 1
    return _point(table, rule, metric, at, max(0, min(count, len(order))), budget, count >= 0)


def drop_point(
    table: dict[str, Any], rule: str, max_drop: float, metric: str, rows: list[int] | None = None
) -> OperatingPoint:
    """The cheapest operating point of `rule` whose metric on `rows` stays within `max_drop` of every
    sample at full width: walking from all of them at full width towards the cheap path (lowest scores
    last), the last point before the metric first falls below that floor. Stopping at the first fall,
    rather than taking the cheapest point anywhere above the floor, keeps a lucky dip of a few rows
    from choosing a point the rows around it do not support.

    For a classifier the floor is raised by a margin for the rows' own noise: DROP_Z x sqrt(m) / n,
    where m of the n rows get a narrow answer that differs from full width's (the standard error of
    the accuracy difference when each of those is a coin flip between the two answers); so the point
    stays within `max_drop` with about 95% confidence, one-sided, on rows like these."""
    at = _rows(table, rule, rows, None)
    # the counts at which the threshold can lie: between distinct scores, plus none and all at full
    n = len(at.ordered)
    counts = [0, *(c for c in range(1, n) if at.ordered[c - 1] < at.ordered[c]), n]
    if len(counts) > DROP_STEPS:  # many calibration rows: an even subset of the steps, both ends kept
        counts = [counts[round(i)] for i in np.linspace(0, len(counts) - 1, DROP_STEPS)]
    points = [_point(table, rule, metric, at, c, None, max_drop=max_drop) for c in reversed(counts)]
    floor = points[0].metric - max_drop - 1e-12  # points[0]: every sample at full width
    differs = np.zeros(n, dtype=bool)
    if not table["regression"]:
        narrow = np.asarray(table["prediction_narrow"])[at.index]
        differs = narrow != np.asarray(table["prediction_full"])[at.index]
    kept = points[0]
    for point in points[1:]:
        changed = int((differs & ~(at.score < point.threshold)).sum())  # narrow answers unlike full's
        if point.metric - DROP_Z * np.sqrt(changed) / n < floor:
            break
        if point.cost <= kept.cost:
            kept = point
    return kept


def choose_operating_point(
    table: dict[str, Any],
    budget: float | None,
    metric: str,
    rows: list[int] | None = None,
    max_drop: float | None = None,
) -> tuple[OperatingPoint, list[OperatingPoint]]:
    """The rule kept on the calibration rows at `budget`, or with `max_drop` (then `budget` is ignored)
    the cheapest routing within max_drop of full width (`drop_point`), and every rule's point. A
    classifier keeps the cascade unless the router beats it by more than ROUTER_MARGIN (in the metric at
    a budget, in the cost at a max drop): a few hundred calibration rows cannot tell smaller differences
    from noise, and across seeds on SST-2 the cascade was the better rule at equal cost
    (docs/recipe.md)."""
    if max_drop is not None:
        check_max_drop(max_drop)
        tau = drop_point(table, "tau", max_drop, metric, rows)
        if table["regression"]:
            return tau, [tau]
        cascade = drop_point(table, "cascade", max_drop, metric, rows)
        return (tau if tau.cost < cascade.cost - ROUTER_MARGIN else cascade), [tau, cascade]
    if budget is None:
        raise SharcsError("calibration needs a --flops-budget or a --max-drop")
    check_budget(budget)
    tau = rule_point(table, "tau", budget, metric, rows)
    if table["regression"]:
        return tau, [tau]
    cascade = rule_point(table, "cascade", budget, metric, rows)
    router_wins = tau.met and (not cascade.met or tau.metric > cascade.metric + ROUTER_MARGIN)
    return (tau if router_wins else cascade), [tau, cascade]


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
        "full_width_metric": _metric(table, np.asarray(calibration_rows), everything_full, metric),
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
