"""GLUE metrics with numpy/scipy: accuracy, binary F1, Matthews correlation, Pearson and Spearman."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from sharcs.errors import SharcsError


def _accuracy(predictions: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(predictions == labels))


def _f1(predictions: np.ndarray, labels: np.ndarray) -> float:
    """Binary F1 of the positive class 1; 0.0 when there is no true or predicted positive."""
    predicted, actual = predictions == 1, labels == 1
    true_pos = int(np.sum(predicted & actual))
    denominator = int(np.sum(predicted)) + int(np.sum(actual))
    return 2.0 * true_pos / denominator if denominator else 0.0


def _matthews(predictions: np.ndarray, labels: np.ndarray) -> float:
    """Matthews correlation (multi-class form); 0.0 when either side has a single class."""
    classes, inverse = np.unique(np.concatenate([labels, predictions]), return_inverse=True)
    n = len(labels)
    confusion = np.zeros((len(classes), len(classes)), dtype=np.float64)
    np.add.at(confusion, (inverse[:n], inverse[n:]), 1.0)
    true_counts, pred_counts = confusion.sum(axis=1), confusion.sum(axis=0)
    total, correct = float(n), float(np.trace(confusion))
    numerator = correct * total - float(true_counts @ pred_counts)
    denominator = np.sqrt(total**2 - float(pred_counts @ pred_counts)) * np.sqrt(
        total**2 - float(true_counts @ true_counts)
    )
    return float(numerator / denominator) if denominator > 0 else 0.0


def _constant(values: np.ndarray) -> bool:
    return len(values) < 2 or bool(np.all(values == values[0]))


def _pearson(predictions: np.ndarray, labels: np.ndarray) -> float:
    """Pearson correlation; 0.0 when either side is constant (undefined)."""
    if _constant(predictions) or _constant(labels):
        return 0.0
    from scipy import stats  # imported here: the command line checks options without scipy

    return float(stats.pearsonr(predictions.astype(np.float64), labels.astype(np.float64))[0])


def _spearman(predictions: np.ndarray, labels: np.ndarray) -> float:
    """Spearman rank correlation; 0.0 when either side is constant (undefined)."""
    if _constant(predictions) or _constant(labels):
        return 0.0
    from scipy import stats

    return float(stats.spearmanr(predictions, labels)[0])


_METRICS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "accuracy": _accuracy,
    "f1": _f1,
    "matthews_correlation": _matthews,
    "pearson": _pearson,
    "spearmanr": _spearman,
}
METRIC_NAMES: tuple[str, ...] = tuple(_METRICS)


def _as_vector(values: Any, what: str) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 1:
        raise SharcsError(f"metric {what} must be a 1-D sequence, got shape {array.shape}")
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_):
        raise SharcsError(f"metric {what} must be numbers, got dtype {array.dtype}")
    if np.issubdtype(array.dtype, np.floating) and not np.all(np.isfinite(array)):
        raise SharcsError(f"metric {what} contain NaN or infinite values")
    return array


def compute_metrics(metric_names: Sequence[str], predictions: Any, labels: Any) -> dict[str, float]:
    """Compute the named metrics of predictions (class ids or floats) against labels of the same kind."""
    unknown = [name for name in metric_names if name not in _METRICS]
    if unknown:
        raise SharcsError(f"unknown metric {unknown[0]!r}; known metrics: {', '.join(METRIC_NAMES)}")
    preds, golds = _as_vector(predictions, "predictions"), _as_vector(labels, "labels")
    if len(preds) != len(golds):
        raise SharcsError(f"got {len(preds)} predictions for {len(golds)} labels; the counts must match")
    if len(preds) == 0:
        raise SharcsError("cannot compute metrics on zero examples")
    return {name: _METRICS[name](preds, golds) for name in metric_names}


def default_metrics(regression: bool) -> tuple[str, ...]:
    """Metrics for a user dataset: Pearson/Spearman for regression, accuracy otherwise."""
    return ("pearson", "spearmanr") if regression else ("accuracy",)
