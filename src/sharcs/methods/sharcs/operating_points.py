"""Operating points on a calibration table (calibration.py builds the table): where each routing rule
lands at a FLOPs budget or within a tolerated drop, and which rule the sandwich recipe keeps.

    point = rule_point(table, "cascade", 0.5, "accuracy", rows)        # the most full width in budget
    point = drop_point(table, "tau", 0.01, "accuracy", rows)           # the cheapest within 1 point
    point = threshold_point(table, "tau", 0.4, "accuracy", rows)       # a given threshold
    choice, points = choose_operating_point(table, 0.5, "accuracy", rows)

A table holds, per held-out sample, both paths' predictions and costs and each rule's score; a rule
sends the lowest-scored samples to full width, so every point is a threshold between two scores.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from sharcs.data import compute_metrics
from sharcs.errors import SharcsError
from sharcs.methods.sharcs.config import check_budget, check_max_drop

RULES = ("tau", "cascade")
ROUTER_MARGIN = 0.01  # the router is kept over the cascade only when better by more than this
DROP_Z = 1.645  # --max-drop's noise margin: the one-sided 95% quantile of a standard normal
DROP_STEPS = 1000  # the most thresholds `drop_point` walks through (each costs a metric over the rows)


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


def metric_at(table: dict[str, Any], rows: np.ndarray, full_mask: np.ndarray, metric: str) -> float:
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
    value = metric_at(table, at.index, full_mask, metric)
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
