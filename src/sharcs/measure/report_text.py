"""Markdown text of a `sharcs.measure.bench.benchmark` report, for `sharcs bench` and the benchmark scripts.

print(format_report(report))      # speed-ups per mode, then the spread of every timing
print(format_runtimes(report))    # against what users run instead (sharcs.measure.runtimes)
"""

from __future__ import annotations

from typing import Any

RUNNERS = {  # runner -> how the runtimes table names it (sharcs.measure.runtimes makes the extra ones)
    "full": "full model, PyTorch eager (Hugging Face)",
    "own_full": "sharcs at width 1, PyTorch",
    "sharcs": "sharcs, PyTorch",
    "torch_int8_full": "full model, PyTorch dynamic int8",
    "onnx_fp32_full": "full model, ONNX Runtime fp32",
    "onnx_int8_full": "full model, ONNX Runtime int8",
    "onnx_fp32_sharcs": "sharcs, ONNX Runtime fp32",
    "onnx_int8_sharcs": "sharcs, ONNX Runtime int8",
}


def spread_text(stats: dict[str, float], scale: float = 1.0, digits: int = 2) -> str:
    """A spread as "median [p25-p75] (min-max)"."""
    values = [stats[key] * scale for key in ("median", "p25", "p75", "min", "max")]
    median, p25, p75, low, high = (f"{v:.{digits}f}" for v in values)
    return f"{median} [{p25}-{p75}] ({low}-{high})"


def speedup_text(value: float, stats: dict[str, float] | None) -> str:
    """A speed-up with the min-max of its repeats: "1.12x (1.08-1.15)"."""
    return f"{value:.2f}x" + (f" ({stats['min']:.2f}-{stats['max']:.2f})" if stats else "")


def format_report(report: dict) -> str:
    """Markdown tables of a `benchmark` report: speed-ups, then the spread of every timing."""
    sizes = list(next(iter(report["modes"].values()))["throughput"])
    header = ["mode", "narrowest share", "GFLOPs/sample", "predicted speed-up"]
    header += ["bs=1 ms mean (full / sharcs)", "bs=1 ms p50", "bs=1 ms p90", "speed-up bs=1"]
    header += [f"speed-up bs={s}" for s in sizes]
    header += ["vs own full bs=1"] + [f"vs own full bs={s}" for s in sizes]
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
            speedup_text(m["latency_speedup_bs1"], m.get("latency_speedup_bs1_spread")),
        ]
        spreads = m.get("throughput_spread", {})
        row += [speedup_text(m["throughput"][s]["speedup"], spreads.get(s, {}).get("speedup")) for s in sizes]
        own = m.get("own_full")
        if own:
            row.append(speedup_text(own["latency_speedup_bs1"], own["latency_speedup_bs1_spread"]))
            row += [
                speedup_text(own["throughput"][s]["speedup"], own["throughput"][s]["speedup_spread"])
                for s in sizes
            ]
        else:
            row += ["n/a"] * (1 + len(sizes))
        row += [f"{m['efficiency_bs1']:.2f}"] + [f"{m['throughput'][s]['efficiency']:.2f}" for s in sizes]
        lines.append("| " + " | ".join(row) + " |")
    first = next(iter(report["modes"].values()))
    own = first.get("own_full")
    lines.append("")
    if own:
        code = ", ".join(
            [f"{own['code_speedup_bs1']:.2f}x at bs=1"]
            + [f"{own['throughput'][s]['code_speedup']:.2f}x at bs={s}" for s in sizes]
        )
        lines.append(
            f"`vs own full`: against this model at its own full width ({own['setting']}), same code, so "
            f"only the width counts. The code alone (own full width vs the Hugging Face model): {code}."
        )
    else:
        lines.append(f"`vs own full`: {first.get('own_full_note', 'n/a')}.")
    lines.append("Speed-ups: value (min-max over repeats).")
    overhead = report.get("routing_overhead")
    if overhead is not None:
        lines.append("")
        lines.append(
            f"Routing overhead (router + choice + grouping, bs=1): {overhead['seconds'] * 1e3:.3f} ms = "
            f"{overhead['fraction_of_full_latency'] * 100:.1f}% of the full model's latency."
        )
    if all("mean_by_repeat" in m["latency_bs1"]["full"] for m in report["modes"].values()):
        lines += ["", _spread_table(report, sizes)]
    return "\n".join(lines)


_RUNNER_NAMES = {"full": "full (HF eager)", "own_full": "own full width", "sharcs": "sharcs"}


def _spread_table(report: dict, sizes: list[str]) -> str:
    """Every timing of a report as median [p25-p75] (min-max)."""
    runners = [r for r in _RUNNER_NAMES if r in next(iter(report["modes"].values()))["latency_bs1"]]
    header = ["mode", "timing", *(_RUNNER_NAMES[r] for r in runners)]
    lines = [
        "Timings: median [p25-p75] (min-max).",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for name, m in report["modes"].items():
        lat = m["latency_bs1"]
        per_sample = [spread_text({**lat[r], "median": lat[r]["p50"]}, 1e3) for r in runners]  # best repeats
        lines.append(f"| {name} | bs=1 ms per sample, over samples | " + " | ".join(per_sample) + " |")
        by_repeat = [spread_text(lat[r]["mean_by_repeat"], 1e3) for r in runners]
        lines.append(f"| {name} | bs=1 ms mean, over repeats | " + " | ".join(by_repeat) + " |")
        for size in sizes:
            tput = m["throughput_spread"][size]
            cells = [spread_text(tput[r], digits=0) for r in runners]
            lines.append(f"| {name} | bs={size} samples/s, over repeats | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def format_runtimes(report: dict[str, Any]) -> str:
    """One markdown table per mode: every runner's metric, batch-1 latency and speed-ups."""
    lines = []
    for mode_name, mode in report["modes"].items():
        rows = mode.get("runtimes")
        if not rows:
            continue
        sizes = list(next(iter(rows.values()))["throughput"])
        scores = mode.get("scores", {})
        metric = next(iter(next(iter(scores.values())))) if scores else None
        header = ["runner", metric or "metric", "bs=1 ms", "speed-up bs=1"]
        header += [f"speed-up bs={s}" for s in sizes]
        lines += [
            f"Against what users run instead ({mode_name}); speed-ups against the first row, "
            "value (min-max over repeats):",
            "",
        ]
        lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for name, row in rows.items():
            score = scores.get(name, {}).get(metric) if metric else None
            cells = [
                RUNNERS.get(name, name),
                f"{score:.4f}" if score is not None else "-",
                f"{row['latency_bs1_ms']:.2f}",
                speedup_text(row["speedup_bs1"], row["speedup_bs1_spread"]),
                *(
                    speedup_text(row["throughput"][s]["speedup"], row["throughput"][s]["speedup_spread"])
                    for s in sizes
                ),
            ]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)
