"""Accuracy/cost trade-off curves: each of a model's inference settings evaluated for real.

    points = sweep(model, dev_data, ["accuracy"])            # model.curve_settings(): taus, widths, ...
    write_curves({"sharcs": points, "pabee": other}, "runs/sst2/curve")   # CSV, JSON, two PNG plots

Every point is a real batched pass over the dev set under one setting (a SHARCS tau or forced width, a
DynaBERT width, an early-exit threshold or patience): its metrics, analytic FLOPs per sample, share of
each route and, when measured, batched seconds per sample against the full model (`model.base`, the
wrapped Hugging Face model) timed on the same length-sorted batches in the same run.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import statistics
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from datasets import Dataset

from sharcs.adaptive import AdaptiveModel, Setting
from sharcs.bench import full_model_pass
from sharcs.evaluation import evaluate_model
from sharcs.files import atomic_write_text
from sharcs.inference import predict
from sharcs.model import SharcsModel, cascade_problem, has_router

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
    logits = predict(model, data, batch_size, pad_token_id=pad_token_id).router_logits
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
    return [Setting(f"cascade={c:g}", {}, {"routing": "cascade", "cascade_confidence": c}) for c in levels]


def settings_for(
    model: AdaptiveModel,
    data: Dataset,
    taus: Sequence[float] | None = None,
    pad_token_id: int = 0,
    cascade_shares: Sequence[float] = (),
) -> list[Setting]:
    """A model's curve settings; a routed SHARCS model sweeps `taus` (None: `share_taus` on `data`), and
    with `cascade_shares` a model that can cascade (`cascade_problem`) adds `cascade_settings`."""
    if has_router(model):
        taus = tuple(taus) if taus else share_taus(model, data, pad_token_id=pad_token_id)
        settings = model.curve_settings(taus)
    else:
        settings = model.curve_settings()
    if cascade_shares and cascade_problem(model) is None:
        settings += cascade_settings(model, data, cascade_shares, pad_token_id=pad_token_id)
    return settings


def _seconds_per_sample(run, repeats: int, num_samples: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times) / num_samples


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
    route) and, when measured, seconds_per_sample (batched), full_seconds_per_sample and speedup.
    """
    points = []
    for setting in settings if settings is not None else model.curve_settings():
        with configured(model, setting.config):
            evaluation = evaluate_model(
                model, data, metric_names, batch_size, None, pad_token_id, setting.kwargs
            )
        point = {"setting": setting.name, "kwargs": dict(setting.kwargs), **evaluation.to_dict()}
        points.append(point | ({"config": dict(setting.config)} if setting.config else {}))
    if measure_latency:
        _add_latency(model, data, points, batch_size, repeats, pad_token_id)
    return points


@contextmanager
def configured(model: AdaptiveModel, changes: dict[str, Any]) -> Iterator[None]:
    """Run a block with a setting's config `changes` applied to `model`, then restore its config."""
    saved = model.config
    if changes:
        model.config = dataclasses.replace(saved, **changes)
    try:
        yield
    finally:
        model.config = saved


def _add_latency(
    model: AdaptiveModel, data: Dataset, points: list[dict], batch_size: int, repeats: int, pad_token_id: int
) -> None:
    # `predict` batches samples of similar length; give the full model the same batches
    order = sorted(range(len(data)), key=lambda i: len(data[i]["input_ids"]))
    full_pass = full_model_pass(model, data.select(order), batch_size, pad_token_id)
    full_pass()  # warm-up
    for p in points:

        def run(kwargs=p["kwargs"]):
            return predict(model, data, batch_size, pad_token_id=pad_token_id, setting=kwargs)

        full = _seconds_per_sample(full_pass, repeats, len(data))
        with configured(model, p.get("config", {})):
            run()  # warm-up (builds the sliced-weight cache)
            p["seconds_per_sample"] = _seconds_per_sample(run, repeats, len(data))
        p["full_seconds_per_sample"] = full
        p["speedup"] = full / p["seconds_per_sample"]


def write_curves(
    curves: dict[str, list[dict]], out_dir: str | Path, main_metric: str | None = None
) -> list[Path]:
    """Write curve.csv, curve.json and accuracy-vs-FLOPs / -latency PNGs for one or more models."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    first = next(iter(curves.values()))[0]
    metric = main_metric or next(iter(first["metrics"]))
    atomic_write_text(out / "curve.json", json.dumps(curves, indent=2) + "\n")
    rows = []
    for name, points in curves.items():
        for p in points:
            rows.append(
                {
                    "model": name,
                    "setting": p["setting"],
                    metric: p["metrics"][metric],
                    "flops_per_sample": p["flops_per_sample"],
                    "flops_reduction": p["flops_reduction"],
                    "speedup": p.get("speedup", ""),
                    "width_share": json.dumps(p["width_share"]),
                }
            )
    with open(out / "curve.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    written = [out / "curve.json", out / "curve.csv"]
    axes = [("flops_per_sample", "GFLOPs per sample", 1e-9, "accuracy_vs_flops.png")]
    if "seconds_per_sample" in first:
        axes.append(("seconds_per_sample", "ms per sample (batched)", 1e3, "accuracy_vs_latency.png"))
    for key, label, scale, filename in axes:
        fig, ax = plt.subplots(figsize=(6 + 2 * (len(curves) > 6), 4.5))
        colors = plt.get_cmap("tab20").colors
        for i, (name, points) in enumerate(curves.items()):
            ordered = sorted(points, key=lambda p: p[key])
            xs, ys = [p[key] * scale for p in ordered], [p["metrics"][metric] for p in ordered]
            style = "o-" if len(points) > 1 else "s"
            ax.plot(xs, ys, style, label=name, color=colors[i % len(colors)], markersize=4)
        ax.set_xlabel(label)
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        if len(curves) > 6:  # many runs: the legend goes beside the plot
            ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
        else:
            ax.legend()
        fig.tight_layout()
        fig.savefig(out / filename, dpi=120)
        plt.close(fig)
        written.append(out / filename)
    return written
