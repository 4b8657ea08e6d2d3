"""Accuracy/cost trade-off curves: each of a model's inference settings evaluated for real.

    points = sweep(model, dev_data, ["accuracy"])            # model.curve_settings(): taus, widths, ...
    write_curves({"sharcs": points, "pabee": other}, "runs/sst2/curve")   # CSV, JSON, two PNG plots

Every point is a real batched pass over the dev set under one setting (a SHARCS tau or forced width, a
DynaBERT width, an early-exit threshold or patience): its metrics, analytic FLOPs per sample, share of
each route and, when measured, batched seconds per sample against the full model (`model.base`, the
wrapped Hugging Face model) timed on the same length-sorted batches in the same run, and against the
model's own full width (`sharcs.measure.bench.own_full_setting`: same code, full width), each with its spread
over repeats. Every point also carries "own_full": that full-width setting's metrics and FLOPs, where
the plots mark the full model.
"""

from __future__ import annotations

import csv
import json
import math
import statistics
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from datasets import Dataset

from sharcs.inference.predict import predict
from sharcs.measure.bench import full_model_pass, own_full_setting, spread, timed
from sharcs.measure.evaluation import evaluate_model
from sharcs.methods.sharcs.model import SharcsModel, cascade_problem, has_trained_router
from sharcs.modeling.adaptive import AdaptiveModel, Setting
from sharcs.storage.files import atomic_write_text

SHARES = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def share_taus(
    model: SharcsModel,
    data: Dataset,
    shares: Sequence[float] = SHARES,
    batch_size: int = 64,
    pad_token_id: int = 0,
) -> tuple[float, ...]:
    """Taus that send about each of `shares` of `data` below full width: quantiles of the router's scores.

    Under the tau rule a sample leaves full width when some narrower width's sigmoid score reaches tau.
    A trained router's scores can sit in a narrow band (about 0.46..0.56 for the MiniLM/SST-2 runs in
    docs/results.md), where a fixed tau grid jumps from "everyone narrow" to "everyone full";
    quantiles trace the whole curve.
    Only the router's scores are read (no labels), so no operating point is chosen on the data.
    """
    logits = predict(model, data, batch_size, pad_token_id=pad_token_id, setting={"tau": 0.5}).router_logits
    scores = torch.sigmoid(logits[:, :-1].float()).amax(-1)
    return tuple(sorted({round(float(torch.quantile(scores, 1.0 - s)), 6) for s in shares}))


def cascade_settings(
    model: SharcsModel, data: Dataset, shares: Sequence[float], batch_size: int = 64, pad_token_id: int = 0
) -> list[Setting]:
    """Cascade settings that re-run about each of `shares` of `data` at full width: quantiles of the
    narrowest width's top class probability (no labels are read)."""
    logits = predict(model, data, batch_size, model.config.widths[0], pad_token_id).logits
    confidence = torch.softmax(logits.float(), -1).amax(-1)
    levels = sorted({round(float(torch.quantile(confidence, s)), 6) for s in shares})
    return [Setting(f"cascade={c:g}", {"cascade": c}) for c in levels]


def settings_for(
    model: AdaptiveModel,
    data: Dataset,
    taus: Sequence[float] | None = None,
    pad_token_id: int = 0,
    cascade_shares: Sequence[float] = (),
) -> list[Setting]:
    """A model's curve settings; a routed SHARCS model sweeps `taus` (None: `share_taus` on `data`), and
    with `cascade_shares` a model that can cascade (`cascade_problem`) adds `cascade_settings`."""
    if has_trained_router(model):
        taus = tuple(taus) if taus else share_taus(model, data, pad_token_id=pad_token_id)
        settings = model.curve_settings(taus)
    else:
        settings = model.curve_settings()
    if cascade_shares and cascade_problem(model) is None:
        settings += cascade_settings(model, data, cascade_shares, pad_token_id=pad_token_id)
    return settings


def pareto_front(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """The (cost, score) points no other point dominates (as cheap or cheaper and as good or better, one
    of them strictly), by ascending cost; a repeated point appears once and non-finite ones are ignored.
    Along the front the score rises with the cost."""
    finite = sorted(
        {(float(x), float(y)) for x, y in points if math.isfinite(x) and math.isfinite(y)},
        key=lambda p: (p[0], -p[1]),
    )
    front: list[tuple[float, float]] = []
    for x, y in finite:
        if not front or y > front[-1][1]:
            front.append((x, y))
    return front


def sweep(
    model: AdaptiveModel,
    data: Dataset,
    metric_names: Sequence[str],
    settings: Sequence[Setting] | None = None,
    batch_size: int = 64,
    repeats: int = 3,
    pad_token_id: int = 0,
    measure_latency: bool = True,
) -> list[dict]:
    """One point per setting (default: `model.curve_settings()`) on a tokenized labeled dataset.

    Each point: setting, metrics, flops_per_sample, flops_reduction, width_share (the share of each
    route), own_full (the setting, metrics and FLOPs of the model's own full width, or None) and, when
    measured, seconds_per_sample (batched), full_seconds_per_sample and speedup (against the Hugging
    Face model), own_full_seconds_per_sample and speedup_vs_own_full, and the spread over repeats of
    each (`sharcs.measure.bench.spread`): seconds_per_sample_spread, full_seconds_per_sample_spread,
    own_full_seconds_per_sample_spread, speedup_spread, speedup_vs_own_full_spread.
    """
    points = []
    for setting in settings if settings is not None else model.curve_settings():
        evaluation = evaluate_model(model, data, metric_names, batch_size, None, pad_token_id, setting.kwargs)
        points.append({"setting": setting.name, "kwargs": dict(setting.kwargs), **evaluation.to_dict()})
    reference = _own_full_reference(model, data, metric_names, points, batch_size, pad_token_id)
    for point in points:
        point["own_full"] = reference
    if measure_latency:
        _add_latency(model, data, points, batch_size, repeats, pad_token_id)
    return points


def _own_full_reference(
    model: AdaptiveModel,
    data: Dataset,
    metric_names: Sequence[str],
    points: list[dict],
    batch_size: int,
    pad_token_id: int,
) -> dict[str, Any] | None:
    """Setting, metrics and FLOPs per sample of the model's own full width (a point's when one is it)."""
    own = own_full_setting(model)
    if own is None:
        return None
    name, kwargs = own
    same = [p for p in points if p["kwargs"] == kwargs]
    if same:
        metrics, flops = same[0]["metrics"], same[0]["flops_per_sample"]
    else:
        evaluation = evaluate_model(model, data, metric_names, batch_size, None, pad_token_id, kwargs)
        metrics, flops = dict(evaluation.metrics), evaluation.flops_per_sample
    return {"setting": name, "kwargs": dict(kwargs), "metrics": dict(metrics), "flops_per_sample": flops}


def _add_latency(
    model: AdaptiveModel, data: Dataset, points: list[dict], batch_size: int, repeats: int, pad_token_id: int
) -> None:
    """Time each point against the full model and the model's own full width, interleaved per repeat."""
    # `predict` batches samples of similar length; give the full model the same batches
    order = sorted(range(len(data)), key=lambda i: len(data[i]["input_ids"]))
    full_pass = full_model_pass(model, data.select(order), batch_size, pad_token_id)
    full_pass()  # warm-up
    own = own_full_setting(model)

    def predict_pass(kwargs: dict[str, Any]) -> Callable[[], object]:
        return lambda: predict(model, data, batch_size, pad_token_id=pad_token_id, setting=kwargs)

    own_pass = predict_pass(own[1]) if own is not None else None
    if own_pass is not None:
        own_pass()  # warm-up
    n = len(data)
    for p in points:
        run = predict_pass(p["kwargs"])
        times: dict[str, list[float]] = {"full": [], "own_full": [], "point": []}
        run()  # warm-up (builds the sliced-weight cache)
        for _ in range(repeats):
            times["full"].append(timed(full_pass) / n)
            if own_pass is not None:
                times["own_full"].append(timed(own_pass) / n)
            times["point"].append(timed(run) / n)
        full, point = statistics.median(times["full"]), statistics.median(times["point"])
        p["seconds_per_sample"], p["full_seconds_per_sample"], p["speedup"] = point, full, full / point
        p["seconds_per_sample_spread"] = spread(times["point"])
        p["full_seconds_per_sample_spread"] = spread(times["full"])
        p["speedup_spread"] = spread([f / t for f, t in zip(times["full"], times["point"], strict=True)])
        if own_pass is not None:
            own_full = statistics.median(times["own_full"])
            p["own_full_seconds_per_sample"] = own_full
            p["speedup_vs_own_full"] = own_full / point
            p["own_full_seconds_per_sample_spread"] = spread(times["own_full"])
            ratios = [o / t for o, t in zip(times["own_full"], times["point"], strict=True)]
            p["speedup_vs_own_full_spread"] = spread(ratios)


def _median_of(points: list[dict], key: str) -> float | None:
    values = [p[key] for p in points if isinstance(p.get(key), int | float)]
    return statistics.median(values) if values else None


def _reference_marks(points: list[dict], key: str, metric: str) -> list[tuple[str, str, float, float]]:
    """(kind, label, x, score) of the full model ("full": the Hugging Face model, eager) and of the
    model's own full width ("own") on an accuracy-vs-`key` plot, where the points know them. The score
    is the own full width's, the same function as the full model's."""
    reference = points[0].get("own_full")
    if not reference or metric not in reference.get("metrics", {}):
        return []
    score = reference["metrics"][metric]
    if key == "flops_per_sample":
        full, own = points[0].get("full_flops_per_sample"), reference.get("flops_per_sample")
    else:
        full = _median_of(points, "full_seconds_per_sample")
        own = _median_of(points, "own_full_seconds_per_sample")
    marks = []
    if full is not None:
        marks.append(("full", "full model (HF eager)", full, score))
    if own is not None:
        marks.append(("own", f"sharcs full width: {reference['setting']}", own, score))
    return marks


def plot_curves(
    curves: dict[str, list[dict]],
    key: str,
    metric: str,
    path: str | Path,
    xlabel: str,
    scale: float = 1.0,
    title: str | None = None,
) -> Path:
    """One accuracy-vs-cost plot (cost: the points' `key`, times `scale`): each model's settings as dots,
    its Pareto front (`pareto_front`) as a step line, and the full model (a star) and the model's own
    full width (a diamond) where known. Points without `key` are left out."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    many = len(curves) > 6
    fig, ax = plt.subplots(figsize=(6 + 2 * many, 4.5))
    colors = plt.get_cmap("tab20").colors
    labelled: set[str] = set()
    for i, (name, points) in enumerate(curves.items()):
        color = colors[i % len(colors)]
        timed = [p for p in points if isinstance(p.get(key), int | float)]
        xy = [(p[key] * scale, p["metrics"][metric]) for p in timed]
        ax.scatter([x for x, _ in xy], [y for _, y in xy], s=18, color=color, label=name, zorder=3)
        front = pareto_front(xy)
        if len(front) > 1:
            ax.step(*zip(*front, strict=True), where="post", color=color, alpha=0.7, linewidth=1.2, zorder=2)
        for kind, label, x, y in _reference_marks(timed or points, key, metric):
            marker, size = ("*", 180) if kind == "full" else ("D", 45)
            ax.scatter(
                [x * scale],
                [y],
                marker=marker,
                s=size,
                color=color,
                edgecolors="black",
                linewidths=0.8,
                label="_nolegend_" if kind in labelled else label,
                zorder=4,
            )
            labelled.add(kind)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(metric)
    ax.set_title(title or f"{metric} vs {xlabel} (dots: settings, line: Pareto front)", fontsize=10)
    ax.grid(alpha=0.3)
    if many:  # many runs: the legend goes beside the plot
        ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    else:
        ax.legend(fontsize=8)
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def write_curves(
    curves: dict[str, list[dict]], out_dir: str | Path, main_metric: str | None = None
) -> list[Path]:
    """Write curve.csv, curve.json and accuracy-vs-FLOPs / -latency PNGs for one or more models."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    first = next(iter(curves.values()))[0]
    metric = main_metric or next(iter(first["metrics"]))
    atomic_write_text(out / "curve.json", json.dumps(curves, indent=2) + "\n")
    rows = []
    for name, points in curves.items():
        for p in points:
            timing = p.get("seconds_per_sample_spread") or {}
            rows.append(
                {
                    "model": name,
                    "setting": p["setting"],
                    metric: p["metrics"][metric],
                    "flops_per_sample": p["flops_per_sample"],
                    "flops_reduction": p["flops_reduction"],
                    "speedup": p.get("speedup", ""),
                    "width_share": json.dumps(p["width_share"]),
                    "speedup_vs_own_full": p.get("speedup_vs_own_full", ""),
                    "seconds_per_sample": p.get("seconds_per_sample", ""),
                    "seconds_per_sample_p25": timing.get("p25", ""),
                    "seconds_per_sample_p75": timing.get("p75", ""),
                }
            )
    with open(out / "curve.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    written = [out / "curve.json", out / "curve.csv"]
    axes = [("flops_per_sample", "GFLOPs per sample", 1e-9, "accuracy_vs_flops.png", "FLOPs")]
    if "seconds_per_sample" in first:
        axes.append(
            (
                "seconds_per_sample",
                "ms per sample (batched)",
                1e3,
                "accuracy_vs_latency.png",
                "measured latency",
            )
        )
    for key, label, scale, filename, what in axes:
        title = f"{metric} vs {what} (dots: settings, line: Pareto front)"
        written.append(plot_curves(curves, key, metric, out / filename, label, scale, title))
    return written
