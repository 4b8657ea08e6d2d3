"""Accuracy/cost trade-off curves from one trained model, by sweeping the routing threshold tau.

    points = sweep(model, dev_data, labels, ["accuracy"], taus=[0.1, 0.3, 0.5, 0.7, 0.9])
    write_curves({"sharcs": points}, "runs/sst2/curve")   # curve.csv, curve.json, two PNG plots

Metrics and FLOPs are exact and cheap: every dev sample is run once at each width (batched results
equal per-sample results), and each routing rule then just picks one width's logits per sample.
Latency is measured for real: a batched pass over the dev set with that rule, against the full
model (`model.base`) timed in the same run.
"""

from __future__ import annotations

import csv
import json
import statistics
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from datasets import Dataset

from sharcs.bench import full_model_pass
from sharcs.data import compute_metrics
from sharcs.files import atomic_write_text
from sharcs.flops import average_flops
from sharcs.inference import predict
from sharcs.model import SharcsModel
from sharcs.router import choose_widths


def _predictions(logits: torch.Tensor) -> torch.Tensor:
    return logits.squeeze(-1) if logits.shape[-1] == 1 else logits.argmax(-1)


def _seconds_per_sample(run, repeats: int, num_samples: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times) / num_samples


def sweep(
    model: SharcsModel,
    data: Dataset,
    labels: Sequence,
    metric_names: Sequence[str],
    taus: Sequence[float] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9),
    batch_size: int = 64,
    repeats: int = 3,
    pad_token_id: int = 0,
    measure_latency: bool = True,
) -> list[dict]:
    """One point per routing rule (argmax, then each tau) plus one per forced width, full width last.

    Each point: rule, tau, metrics, flops_per_sample, flops_reduction, width_share and, when
    measured, seconds_per_sample (batched) and speedup against the full model.
    """
    widths = model.config.widths
    per_width = {w: predict(model, data, batch_size, width=w, pad_token_id=pad_token_id) for w in widths}
    router_logits = per_width[widths[0]].router_logits
    stacked = torch.stack([per_width[w].logits for w in widths])  # (widths, n, labels)
    lengths = [len(ids) for ids in data["input_ids"]]
    labels_array = torch.tensor(list(labels)).numpy()

    def point(rule: str, tau: float | None, choice: torch.Tensor) -> dict:
        logits = stacked[choice, torch.arange(len(choice))]
        chosen = [widths[i] for i in choice.tolist()]
        flops, full_flops = average_flops(model, chosen, lengths)
        return {
            "rule": rule,
            "tau": tau,
            "metrics": compute_metrics(metric_names, _predictions(logits).numpy(), labels_array),
            "flops_per_sample": flops,
            "flops_reduction": full_flops / flops,
            "width_share": {str(w): chosen.count(w) / len(chosen) for w in widths},
        }

    points = [point("argmax", None, choose_widths(router_logits, "argmax", 0.0))]
    points += [point("tau", float(t), choose_widths(router_logits, "tau", float(t))) for t in taus]
    points += [point(f"width={w:g}", None, torch.full((len(data),), i)) for i, w in enumerate(widths)]
    if measure_latency:
        _add_latency(model, data, points, batch_size, repeats, pad_token_id)
    return points


def _add_latency(
    model: SharcsModel, data: Dataset, points: list[dict], batch_size: int, repeats: int, pad_token_id: int
) -> None:
    # `predict` batches samples of similar length; give the full model the same batches
    order = sorted(range(len(data)), key=lambda i: len(data[i]["input_ids"]))
    full_pass = full_model_pass(model, data.select(order), batch_size, pad_token_id)
    full_pass()  # warm-up
    saved = (model.config.routing, model.config.tau)
    try:
        for p in points:
            if p["rule"].startswith("width="):
                width = float(p["rule"].removeprefix("width="))

                def run(w=width):
                    return predict(model, data, batch_size, width=w, pad_token_id=pad_token_id)
            else:
                model.config.routing, model.config.tau = p["rule"], p["tau"] if p["tau"] is not None else 0.5

                def run():
                    return predict(model, data, batch_size, pad_token_id=pad_token_id)

            run()  # warm-up (builds the sliced-weight cache)
            full = _seconds_per_sample(full_pass, repeats, len(data))
            p["seconds_per_sample"] = _seconds_per_sample(run, repeats, len(data))
            p["full_seconds_per_sample"] = full
            p["speedup"] = full / p["seconds_per_sample"]
    finally:
        model.config.routing, model.config.tau = saved


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
                    "rule": p["rule"],
                    "tau": "" if p["tau"] is None else p["tau"],
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
        fig, ax = plt.subplots(figsize=(6, 4))
        for name, points in curves.items():
            routed = sorted((p for p in points if not p["rule"].startswith("width=")), key=lambda p: p[key])
            ax.plot(
                [p[key] * scale for p in routed], [p["metrics"][metric] for p in routed], "o-", label=name
            )
            full = next(p for p in points if p["rule"] == "width=1")
            ax.plot(full[key] * scale, full["metrics"][metric], "k*", markersize=12)
        ax.plot([], [], "k*", label="full width")
        ax.set_xlabel(label)
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / filename, dpi=120)
        plt.close(fig)
        written.append(out / filename)
    return written
