"""Wall-clock measurement of a SHARCS model against the full-width model, side by side in one run.

    report = benchmark(model, dev_data, threads=2)   # -> dict, see `format_report` for the table

Every configuration runs on the same inputs, interleaved (full model, then SHARCS, per sample or
batch), after a warm-up, with the thread count pinned; figures are medians over repeats. The
"full-width model" is the wrapped Hugging Face model itself (`model.base`), i.e. what a user runs
without SHARCS.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from datasets import Dataset
from tqdm.auto import tqdm

from sharcs.adaptive import AdaptiveModel
from sharcs.collate import pad_batch
from sharcs.flops import average_flops
from sharcs.inference import MODEL_INPUTS
from sharcs.model import SharcsModel, has_router
from sharcs.router import choose_widths


@contextmanager
def pinned_threads(threads: int) -> Iterator[None]:
    """Run with `threads` torch threads (0: leave as is), restoring the previous count afterwards."""
    previous = torch.get_num_threads()
    if threads > 0:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _batches(data: Dataset, batch_size: int, pad_token_id: int) -> list[dict[str, torch.Tensor]]:
    inputs = data.select_columns([c for c in MODEL_INPUTS if c in data.column_names])
    return [pad_batch(inputs[i : i + batch_size], pad_token_id) for i in range(0, len(data), batch_size)]


def full_model_pass(
    model: AdaptiveModel, data: Dataset, batch_size: int, pad_token_id: int
) -> Callable[[], None]:
    """A closure that runs the full-width model over `data` in padded batches (inference mode)."""
    batches = _batches(data, batch_size, pad_token_id)

    @torch.inference_mode()
    def run() -> None:
        for batch in batches:
            model.base(**batch)

    return run


def _runners(model: AdaptiveModel, width: float | None) -> dict[str, Callable[[dict], object]]:
    forced = {} if width is None else {"width": width}
    return {
        "full": lambda batch: model.base(**batch),
        "sharcs": lambda batch: model(**batch, **forced),
    }


def machine_info() -> dict:
    return {
        "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }


@torch.inference_mode()
def latency(
    model: AdaptiveModel, data: Dataset, width: float | None, samples: int, repeats: int, pad_token_id: int
) -> dict[str, dict[str, float]]:
    """Batch-size-1 latency (seconds) per sample: mean, p50 and p90 for the full model and for SHARCS."""
    batches = _batches(data.select(range(min(samples, len(data)))), 1, pad_token_id)
    runners = _runners(model, width)
    times: dict[str, list[float]] = {name: [] for name in runners}
    for batch in batches[: min(10, len(batches))]:  # warm-up (and the pre-sliced weight cache)
        for run in runners.values():
            run(batch)
    for batch in tqdm(batches, desc="latency bs=1", leave=False):
        for name, run in runners.items():
            times[name].append(min(_timed(lambda r=run, b=batch: r(b)) for _ in range(repeats)))
    out = {}
    for name, values in times.items():
        ordered = sorted(values)
        out[name] = {
            "mean": statistics.fmean(ordered),
            "p50": statistics.median(ordered),
            "p90": ordered[int(0.9 * (len(ordered) - 1))],
        }
    return out


@torch.inference_mode()
def throughput(
    model: AdaptiveModel, data: Dataset, width: float | None, batch_size: int, repeats: int, pad_token_id: int
) -> dict[str, float]:
    """Samples per second over the whole set in batches of `batch_size` (median of `repeats` passes)."""
    batches = _batches(data, batch_size, pad_token_id)
    runners = _runners(model, width)
    for run in runners.values():  # warm-up
        run(batches[0])
    seconds: dict[str, list[float]] = {name: [] for name in runners}
    for _ in tqdm(range(repeats), desc=f"throughput bs={batch_size}", leave=False):
        for name, run in runners.items():
            seconds[name].append(_timed(lambda r=run: [r(b) for b in batches]))
    return {name: len(data) / statistics.median(values) for name, values in seconds.items()}


@torch.inference_mode()
def routing_overhead(model: SharcsModel, data: Dataset, samples: int, pad_token_id: int) -> float:
    """Median time of router + width choice + grouping at batch size 1, per sample (seconds)."""
    batches = _batches(data.select(range(min(samples, len(data)))), 1, pad_token_id)
    times = []
    for batch in batches:
        hidden = model.encode_prefix(batch["input_ids"], batch["attention_mask"], batch.get("token_type_ids"))

        def route(h=hidden, m=batch["attention_mask"]):
            choice = choose_widths(model.router(h, m), model.config.routing, model.config.tau)
            for index in choice.unique().tolist():
                rows = (choice == index).nonzero().squeeze(1)
                h[rows], m[rows]

        route()
        times.append(min(_timed(route) for _ in range(3)))
    return statistics.median(times)


@torch.inference_mode()
def routed_widths(model: AdaptiveModel, data: Dataset, width: float | None, pad_token_id: int) -> list[float]:
    """The route each sample takes (its width, or `width` for all; layers run for early exit)."""
    run = _runners(model, width)["sharcs"]
    return [r for batch in _batches(data, 128, pad_token_id) for r in run(batch).routes.tolist()]


def benchmark(
    model: AdaptiveModel,
    data: Dataset,
    threads: int = 0,
    latency_samples: int = 200,
    batch_sizes: tuple[int, ...] = (32, 128),
    repeats: int = 3,
    widths: tuple[float | None, ...] = (None,),
    pad_token_id: int = 0,
) -> dict:
    """Measure SHARCS (routed, and each forced width in `widths`) against the full model.

    Returns per mode: FLOPs per sample, predicted speed-up (full FLOPs / SHARCS FLOPs), batch-1
    latency p50/p90 and speed-up, throughput and speed-up per batch size, and efficiency =
    measured speed-up / predicted speed-up.
    """
    with pinned_threads(threads):
        model.eval()
        report: dict = {"machine": machine_info(), "num_samples": len(data), "modes": {}}
        for width in widths:
            widths_run = routed_widths(model, data, width, pad_token_id)
            lengths = [len(ids) for ids in data["input_ids"]]
            flops, full_flops = average_flops(model, widths_run, lengths, forced=width is not None)
            predicted = full_flops / flops
            lat = latency(model, data, width, latency_samples, repeats, pad_token_id)
            mode = {
                "width_share": model.route_share(widths_run),
                "flops_per_sample": flops,
                "full_flops_per_sample": full_flops,
                "predicted_speedup": predicted,
                "latency_bs1": lat,
                # mean, not median: with routing the median sample is a narrow one and would flatter SHARCS
                "latency_speedup_bs1": lat["full"]["mean"] / lat["sharcs"]["mean"],
                "throughput": {},
            }
            mode["efficiency_bs1"] = mode["latency_speedup_bs1"] / predicted
            for size in batch_sizes:
                tput = throughput(model, data, width, size, repeats, pad_token_id)
                speedup = tput["sharcs"] / tput["full"]
                mode["throughput"][str(size)] = {
                    **tput,
                    "speedup": speedup,
                    "efficiency": speedup / predicted,
                }
            report["modes"]["routed" if width is None else f"width={width:g}"] = mode
        if has_router(model):
            overhead = routing_overhead(model, data, min(latency_samples, 100), pad_token_id)
            first = next(iter(report["modes"].values()))
            report["routing_overhead"] = {
                "seconds": overhead,
                "fraction_of_full_latency": overhead / first["latency_bs1"]["full"]["mean"],
            }
        return report


def format_report(report: dict) -> str:
    """A Markdown table of a `benchmark` report."""
    sizes = list(next(iter(report["modes"].values()))["throughput"])
    header = ["mode", "narrowest share", "GFLOPs/sample", "predicted speed-up"]
    header += ["bs=1 ms mean (full / sharcs)", "bs=1 ms p50", "bs=1 ms p90", "speed-up bs=1"]
    header += [f"speed-up bs={s}" for s in sizes]
    header += ["efficiency bs=1"] + [f"efficiency bs={s}" for s in sizes]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, m in report["modes"].items():
        lat = m["latency_bs1"]
        pair = [f"{lat['full'][q] * 1e3:.2f} / {lat['sharcs'][q] * 1e3:.2f}" for q in ("mean", "p50", "p90")]
        row = [
            name,
            f"{next(iter(m['width_share'].values())):.2f}",
            f"{m['flops_per_sample'] / 1e9:.3f} (full {m['full_flops_per_sample'] / 1e9:.3f})",
            f"{m['predicted_speedup']:.2f}x",
            *pair,
            f"{m['latency_speedup_bs1']:.2f}x",
        ]
        row += [f"{m['throughput'][s]['speedup']:.2f}x" for s in sizes]
        row += [f"{m['efficiency_bs1']:.2f}"] + [f"{m['throughput'][s]['efficiency']:.2f}" for s in sizes]
        lines.append("| " + " | ".join(row) + " |")
    overhead = report.get("routing_overhead")
    if overhead is not None:
        lines.append("")
        lines.append(
            f"Routing overhead (router + choice + grouping, bs=1): {overhead['seconds'] * 1e3:.3f} ms = "
            f"{overhead['fraction_of_full_latency'] * 100:.1f}% of the full model's latency."
        )
    return "\n".join(lines)
