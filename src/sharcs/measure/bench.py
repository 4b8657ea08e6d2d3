"""Wall-clock measurement of a SHARCS model against the full-width model, side by side in one run.

    report = benchmark(model, dev_data, threads=2)   # -> dict; report_text.format_report: its tables

Every configuration runs on the same inputs, interleaved (full model, the model's own full width,
then SHARCS, per sample or batch), after a warm-up, with the thread count pinned; figures are medians
over repeats, each with its spread (`spread`: min, p25, median, p75, max, IQR). The "full-width model"
is the wrapped Hugging Face model itself (`model.base`, eager attention), i.e. what a user runs without
SHARCS. The "own full width" is the same sharcs model run at its full width through the same layer code
(`own_full_setting`: SHARCS and DynaBERT forced to width 1, early exit with exits that never fire), so
a speed-up splits into the code's share (full / own full) and the width's share (own full / SHARCS).
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from datasets import Dataset
from tqdm.auto import tqdm

from sharcs.data.collate import pad_batch
from sharcs.inference.predict import MODEL_INPUTS
from sharcs.methods.early_exit import EarlyExitModel
from sharcs.methods.sharcs.model import SharcsModel, has_router
from sharcs.methods.sharcs.router import choose_widths
from sharcs.modeling.adaptive import AdaptiveModel
from sharcs.modeling.flops import average_flops


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


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def spread(values: Sequence[float]) -> dict[str, float]:
    """min, p25, median, p75, max and iqr (p75 - p25) of `values`; quartiles interpolate between values
    (with one value all six are that value, iqr 0)."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("spread of no values")
    if len(ordered) == 1:
        p25 = p75 = ordered[0]
    else:
        p25, _, p75 = statistics.quantiles(ordered, n=4, method="inclusive")
    return {
        "min": ordered[0],
        "p25": p25,
        "median": statistics.median(ordered),
        "p75": p75,
        "max": ordered[-1],
        "iqr": p75 - p25,
    }


def own_full_setting(model: AdaptiveModel) -> tuple[str, dict[str, Any]] | None:
    """(name, forward keyword arguments) that run `model` at its own full width through its own code:
    the widest width for width models (SHARCS, DynaBERT), exits that never fire for early exit (their
    exit heads still run); None for a model with no such path."""
    if model.route_name == "width":
        widest = max(model.route_values)
        return f"width={widest:g}", {"width": widest}
    if isinstance(model, EarlyExitModel):
        if model.config.rule == "entropy":
            return "no early exit (entropy<0)", {"entropy_threshold": 0.0}
        return f"no early exit (patience={model.dims.layers})", {"patience": model.dims.layers}
    return None


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


Alternative = Callable[[dict[str, torch.Tensor], dict[str, Any]], torch.Tensor]  # (batch, kwargs) -> logits


def _runners(
    model: AdaptiveModel, kwargs: dict[str, Any], extra: dict[str, Alternative] | None = None
) -> dict[str, Callable[[dict], Any]]:
    """ "full" (the Hugging Face model), "own_full" (when `own_full_setting` has one), "sharcs" (the
    model under the inference keywords `kwargs`: a forced width, a tau, a cascade, or {} for its rule)
    and each `extra` runner (another runtime of the model, or of the full model: sharcs.measure.runtimes)."""
    runners: dict[str, Callable[[dict], Any]] = {"full": lambda batch: model.base(**batch)}
    own = own_full_setting(model)
    if own is not None:
        runners["own_full"] = lambda batch, kwargs=own[1]: model(**batch, **kwargs)
    runners["sharcs"] = lambda batch: model(**batch, **kwargs)
    for name, run in (extra or {}).items():
        runners[name] = lambda batch, run=run: run(batch, kwargs)
    return runners


def machine_info() -> dict:
    return {
        "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }


def _latency_timings(
    model: AdaptiveModel,
    data: Dataset,
    kwargs: dict,
    samples: int,
    repeats: int,
    pad_token_id: int,
    extra: dict[str, Alternative] | None = None,
) -> dict[str, list[list[float]]]:
    """Batch-size-1 seconds per runner, per sample, per repeat: times[name][sample][repeat]."""
    batches = _batches(data.select(range(min(samples, len(data)))), 1, pad_token_id)
    runners = _runners(model, kwargs, extra)
    times: dict[str, list[list[float]]] = {name: [] for name in runners}
    with torch.inference_mode():
        for batch in batches[: min(10, len(batches))]:  # warm-up (and the pre-sliced weight cache)
            for run in runners.values():
                run(batch)
        for batch in tqdm(batches, desc="latency bs=1", leave=False):
            for name, run in runners.items():
                times[name].append([timed(lambda r=run, b=batch: r(b)) for _ in range(repeats)])
    return times


def _latency_stats(per_sample: list[list[float]]) -> dict[str, Any]:
    """mean, p50 and p90 of each sample's best repeat; their spread over samples (min, p25, p75, max,
    iqr); and the spread over repeats of the mean latency (`mean_by_repeat`)."""
    best = sorted(min(repeats) for repeats in per_sample)
    over_samples = spread(best)
    by_repeat = [statistics.fmean(repeats[r] for repeats in per_sample) for r in range(len(per_sample[0]))]
    return {
        "mean": statistics.fmean(best),
        "p50": over_samples["median"],
        "p90": best[int(0.9 * (len(best) - 1))],
        **{key: over_samples[key] for key in ("min", "p25", "p75", "max", "iqr")},
        "mean_by_repeat": spread(by_repeat),
    }


def _ratio_by_repeat(numerator: list[list[float]], denominator: list[list[float]]) -> dict[str, float]:
    """Spread over repeats of mean(numerator) / mean(denominator), each repeat's pass over the samples."""
    repeats = len(numerator[0])
    ratios = [
        statistics.fmean(n[r] for n in numerator) / statistics.fmean(d[r] for d in denominator)
        for r in range(repeats)
    ]
    return spread(ratios)


def latency(
    model: AdaptiveModel, data: Dataset, kwargs: dict, samples: int, repeats: int, pad_token_id: int
) -> dict[str, dict[str, Any]]:
    """Batch-size-1 latency (seconds) per sample for the full model, the model's own full width (when it
    has one) and SHARCS: mean, p50 and p90 (each sample's best of `repeats`), with their spread."""
    times = _latency_timings(model, data, kwargs, samples, repeats, pad_token_id)
    return {name: _latency_stats(values) for name, values in times.items()}


def _throughput_seconds(
    model: AdaptiveModel,
    data: Dataset,
    kwargs: dict,
    batch_size: int,
    repeats: int,
    pad_token_id: int,
    extra: dict[str, Alternative] | None = None,
) -> dict[str, list[float]]:
    """Seconds of each repeat's pass over the whole set, per runner."""
    batches = _batches(data, batch_size, pad_token_id)
    runners = _runners(model, kwargs, extra)
    seconds: dict[str, list[float]] = {name: [] for name in runners}
    with torch.inference_mode():
        for run in runners.values():  # warm-up
            run(batches[0])
        for _ in tqdm(range(repeats), desc=f"throughput bs={batch_size}", leave=False):
            for name, run in runners.items():
                seconds[name].append(timed(lambda r=run: [r(b) for b in batches]))
    return seconds


def throughput(
    model: AdaptiveModel, data: Dataset, kwargs: dict, batch_size: int, repeats: int, pad_token_id: int
) -> dict[str, float]:
    """Samples per second over the whole set in batches of `batch_size` (median of `repeats` passes)."""
    seconds = _throughput_seconds(model, data, kwargs, batch_size, repeats, pad_token_id)
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
        times.append(min(timed(route) for _ in range(3)))
    return statistics.median(times)


@torch.inference_mode()
def routed_widths(model: AdaptiveModel, data: Dataset, kwargs: dict, pad_token_id: int) -> list[float]:
    """The route each sample takes under the inference keywords `kwargs` (its width; layers run for
    early exit)."""
    run = _runners(model, kwargs)["sharcs"]
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
    setting: dict[str, Any] | None = None,
    extra: dict[str, Alternative] | None = None,
) -> dict:
    """Measure SHARCS (routed by its rule, or under the inference keywords `setting`; and each forced
    width in `widths`) against the full model, and against each `extra` runner (other runtimes: a mode's
    "runtimes" then holds every runner's timings and speed-ups against the Hugging Face model).

    Returns per mode: FLOPs per sample, predicted speed-up (full FLOPs / SHARCS FLOPs), batch-1
    latency p50/p90 and speed-up, throughput and speed-up per batch size, and efficiency =
    measured speed-up / predicted speed-up; with the spread of every timing and speed-up over repeats
    ("latency_speedup_bs1_spread", "throughput_spread"); and "own_full": the speed-ups against the
    model's own full width (`own_full_setting`), or None with "own_full_note" when it has none.
    """
    with pinned_threads(threads):
        model.eval()
        report: dict = {"machine": machine_info(), "num_samples": len(data), "modes": {}}
        for width in widths:
            kwargs = dict(setting or {}) if width is None else {"width": width}
            widths_run = routed_widths(model, data, kwargs, pad_token_id)
            lengths = [len(ids) for ids in data["input_ids"]]
            flops, full_flops = average_flops(model, widths_run, lengths, width is not None, kwargs)
            predicted = full_flops / flops
            times = _latency_timings(model, data, kwargs, latency_samples, repeats, pad_token_id, extra)
            lat = {name: _latency_stats(values) for name, values in times.items()}
            mode: dict[str, Any] = {
                "width_share": model.route_share(widths_run),
                "flops_per_sample": flops,
                "full_flops_per_sample": full_flops,
                "predicted_speedup": predicted,
                "latency_bs1": lat,
                # mean, not median: with routing the median sample is a narrow one and would flatter SHARCS
                "latency_speedup_bs1": lat["full"]["mean"] / lat["sharcs"]["mean"],
                "latency_speedup_bs1_spread": _ratio_by_repeat(times["full"], times["sharcs"]),
                "throughput": {},
                "throughput_spread": {},
            }
            mode["efficiency_bs1"] = mode["latency_speedup_bs1"] / predicted
            own = own_full_setting(model)
            if own is not None:
                mode["own_full"] = {
                    "setting": own[0],
                    "latency_speedup_bs1": lat["own_full"]["mean"] / lat["sharcs"]["mean"],
                    "latency_speedup_bs1_spread": _ratio_by_repeat(times["own_full"], times["sharcs"]),
                    "code_speedup_bs1": lat["full"]["mean"] / lat["own_full"]["mean"],
                    "throughput": {},
                }
            else:
                mode["own_full"] = None
                mode["own_full_note"] = f"n/a: a {model.method} model has no own full-width path"
            by_size = {}
            for size in batch_sizes:
                seconds = _throughput_seconds(model, data, kwargs, size, repeats, pad_token_id, extra)
                by_size[str(size)] = seconds
                tput = {name: len(data) / statistics.median(values) for name, values in seconds.items()}
                speedup = tput["sharcs"] / tput["full"]
                mode["throughput"][str(size)] = {
                    "full": tput["full"],
                    "sharcs": tput["sharcs"],
                    "speedup": speedup,
                    "efficiency": speedup / predicted,
                }
                paired = zip(seconds["full"], seconds["sharcs"], strict=True)
                mode["throughput_spread"][str(size)] = {
                    **{name: spread([len(data) / t for t in values]) for name, values in seconds.items()},
                    "speedup": spread([full / sharcs for full, sharcs in paired]),
                }
                if own is not None:
                    paired = zip(seconds["own_full"], seconds["sharcs"], strict=True)
                    mode["own_full"]["throughput"][str(size)] = {
                        "own_full": tput["own_full"],
                        "speedup": tput["sharcs"] / tput["own_full"],
                        "speedup_spread": spread([own_full / sharcs for own_full, sharcs in paired]),
                        "code_speedup": tput["own_full"] / tput["full"],
                    }
            if extra:
                mode["runtimes"] = runtime_rows(times, by_size, len(data))
            report["modes"]["routed" if width is None else f"width={width:g}"] = mode
        if has_router(model):
            overhead = routing_overhead(model, data, min(latency_samples, 100), pad_token_id)
            first = next(iter(report["modes"].values()))
            report["routing_overhead"] = {
                "seconds": overhead,
                "fraction_of_full_latency": overhead / first["latency_bs1"]["full"]["mean"],
            }
        return report


def runtime_rows(
    times: dict[str, list[list[float]]], by_size: dict[str, dict[str, list[float]]], samples: int
) -> dict[str, dict[str, Any]]:
    """Every runner's batch-1 mean latency and batched throughput, each with its speed-up against the
    Hugging Face model ("full") and that speed-up's spread over repeats."""
    full_mean = _latency_stats(times["full"])["mean"]
    rows = {}
    for name, per_sample in times.items():
        mean = _latency_stats(per_sample)["mean"]
        row: dict[str, Any] = {
            "latency_bs1_ms": mean * 1e3,
            "speedup_bs1": full_mean / mean,
            "speedup_bs1_spread": _ratio_by_repeat(times["full"], per_sample),
            "throughput": {},
        }
        for size, seconds in by_size.items():
            paired = zip(seconds["full"], seconds[name], strict=True)
            row["throughput"][size] = {
                "samples_per_s": samples / statistics.median(seconds[name]),
                "speedup": statistics.median(seconds["full"]) / statistics.median(seconds[name]),
                "speedup_spread": spread([full / own for full, own in paired]),
            }
        rows[name] = row
    return rows
