"""docs/results.md from docs/results.json: the Pareto and target analysis of the measured runs, and the
page (its prose is the template benchmarks/templates/results.md; `$sections` takes the per-task part;
`$seeds_staged`, `$seeds_baseline`, `$seeds_headline` and `$seeds_equal_cost` take the recipe study's
seeded tables).
Used by benchmarks/results_report.py; `python benchmarks/results_report.py --render-only` runs it alone.
"""

from __future__ import annotations

import string
from pathlib import Path
from typing import Any

SHARCS_METHODS = ("sharcs", "cascade")  # routed SHARCS and its cascade-trained variant


def near_reference(r: dict, budget: float) -> bool:
    """Whether a run or curve point is within `budget` of its reference full fine-tune (when measured)."""
    return r["reference_metric"] is not None and r["metric"] >= r["reference_metric"] - budget


def best_sharcs_point(rows: list[dict], budget: float, method: str = "sharcs") -> dict | None:
    """The `method` curve point with the largest FLOPs reduction within `budget` of its reference."""
    ok = [r for r in rows if r["method"] == method and near_reference(r, budget)]
    return max(ok, key=lambda r: r["flops_reduction"], default=None)


def meets_target(runs: dict, study: dict[str, Any]) -> list[str]:
    """SHARCS runs, cascade-trained ones included (own setting), within 1 point of their reference
    full fine-tune at the study's FLOPs and measured speed-up targets."""
    speedup = study["target_speedup"]
    return [
        name
        for name, r in runs.items()
        if r["method"] in SHARCS_METHODS
        and near_reference(r, 0.01)
        and r["flops_reduction"] >= study["target_flops_reduction"]
        and r["latency_speedup_bs1"] >= speedup
        and r["throughput_speedup"] >= speedup
    ]


def dominated_share(rows: list[dict]) -> tuple[int, int]:
    """(baseline points some SHARCS point matches or beats on both metric and FLOPs, baseline points)."""
    sharcs = [r for r in rows if r["method"] == "sharcs"]
    others = [r for r in rows if r["method"] not in (*SHARCS_METHODS, "sharcs-cascade", "full")]
    beaten = sum(
        any(s["metric"] >= o["metric"] and s["flops_reduction"] >= o["flops_reduction"] for s in sharcs)
        for o in others
    )
    return beaten, len(others)


def frontiers(rows: list[dict]) -> dict[str, list[dict]]:
    """Per method, the curve points no other point of that method beats on both metric and FLOPs,
    in order of FLOPs reduction."""
    found: dict[str, list[dict]] = {}
    for method in dict.fromkeys(r["method"] for r in rows):
        points = [r for r in rows if r["method"] == method]
        found[method] = sorted(
            (
                p
                for p in points
                if not any(
                    q["metric"] >= p["metric"]
                    and q["flops_reduction"] >= p["flops_reduction"]
                    and (q["metric"], q["flops_reduction"]) != (p["metric"], p["flops_reduction"])
                    for q in points
                )
            ),
            key=lambda p: p["flops_reduction"],
        )
    return found


def frontier_plot(rows: list[dict], metric: str, full_metric: float | None, path: Path) -> Path:
    """One line per method through its best points (all its runs together): metric vs FLOPs reduction,
    with the full fine-tune's score minus one point (the issue's accuracy budget) dotted."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for method, points in frontiers(rows).items():
        style = "o-" if method.startswith("sharcs") else "s--"
        x, y = [p["flops_reduction"] for p in points], [p["metric"] for p in points]
        ax.plot(x, y, style, label=method, lw=2 if method.startswith("sharcs") else 1, ms=4)
    if full_metric is not None:
        ax.axhline(full_metric - 0.01, color="grey", ls=":", lw=1, label="full - 1 point")
    ax.set_xlabel("FLOPs reduction (x, higher is cheaper)")
    ax.set_ylabel(metric)
    ax.set_title("best points of each method over all its runs and settings", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _reference(r: dict) -> str:
    return f"{r['reference']}, {r['reference_metric']:.4f}"


def _pct(share: dict) -> str:
    return ", ".join(f"{k}: {100 * v:.0f}%" for k, v in share.items() if v > 0)


def measured_on(machines: dict[str, dict]) -> str:
    """One line on where a task's runs were timed: cores, torch threads, and the machine's load."""
    first = next(iter(machines.values()))
    threads = sorted({m["threads"] for m in machines.values()})
    loads = [x for m in machines.values() for x in m.get("load_average", [])]
    load = f"1-minute load average {min(loads):.1f}-{max(loads):.1f}" if loads else "load not recorded (idle)"
    return (
        f"Timed on {first['processor']} ({first['cpu_count']} cores), torch {first['torch']}, "
        f"{'/'.join(map(str, threads))} torch thread(s), {load}."
    )


def summary_lines(t: dict, study: dict[str, Any]) -> list[str]:
    """The sentences under a task's table: references, the best points, the target, the baselines beaten."""
    metric, batch = t["metric"], study["throughput_batch"]
    lines = []
    others = [f"{name} against {r['reference']}" for name, r in t["runs"].items() if r["reference"] != "full"]
    if others:
        lines.append(f"Runs judged against a full fine-tune with their training budget: {', '.join(others)}.")
    best = t["best_sharcs_within_1pt"]
    if best is not None:
        lines.append(
            f"Best SHARCS point within 1 point of its full fine-tune ({_reference(best)}): "
            f"{best['run']} `{best['setting']}`, {metric} {best['metric']:.4f} at "
            f"{best['flops_reduction']:.2f}x fewer FLOPs."
        )
    elif t["full_metric"] is not None and any(r["method"] == "sharcs" for r in t["curve"]):
        lines.append(f"No SHARCS point is within 1 point of the full fine-tune ({t['full_metric']:.4f}).")
    cascade = t.get("best_cascade_within_1pt")
    if cascade is not None:
        lines.append(
            f"Cascade inference of a trained SHARCS model (beyond the paper, `sharcs-cascade` rows) "
            f"within 1 point of its full fine-tune ({_reference(cascade)}): "
            f"{cascade['run']} `{cascade['setting']}`, {metric} {cascade['metric']:.4f} at "
            f"{cascade['flops_reduction']:.2f}x fewer FLOPs, {cascade['batched_speedup']:.2f}x measured "
            f"at batch {batch}."
        )
    if t["full_metric"] is not None:
        met = meets_target(t["runs"], study)
        lines.append(
            f"Target (at most 1 point below its full fine-tune, >= {study['target_flops_reduction']}x fewer "
            f"FLOPs, >= {study['target_speedup']}x batch-1 latency and batch-{batch} throughput speed-ups): "
            + (f"met by {', '.join(met)}." if met else "not met by any SHARCS run.")
        )
    beaten, total = t["baseline_points_matched_by_sharcs"]
    if total:
        lines.append(
            f"Baseline curve points that some SHARCS point matches or beats on both {metric} and "
            f"FLOPs: {beaten} of {total}."
        )
    return lines


def task_lines(task: str, t: dict, study: dict[str, Any]) -> list[str]:
    """One task's section: the runs' table, the summary, where it was timed, the plots, every point."""
    metric = t["metric"]
    lines = [f"## {task.upper()} ({metric})", ""]
    lines.append(
        f"| run | method | dev {metric} | GFLOPs/sample | FLOPs reduction | share per route | "
        "speed-up bs=1 | speed-up bs=64 |"
    )
    lines.append("|---|---|---|---|---|---|---|---|")
    for name, r in t["runs"].items():
        lines.append(
            f"| {name} | {r['method']} | {r['metric']:.4f} | {r['flops_per_sample'] / 1e9:.3f} | "
            f"{r['flops_reduction']:.2f}x | {_pct(r['share'])} | {r['latency_speedup_bs1']:.2f}x | "
            f"{r['throughput_speedup']:.2f}x |"
        )
    lines.append("")
    lines += summary_lines(t, study)
    if t["missing_runs"]:
        lines.append(f"Not yet trained or measured: {', '.join(t['missing_runs'])}.")
    lines.append(measured_on(t["machine"]))
    if t.get("cascade_machine"):
        timing = measured_on(t["cascade_machine"])
        lines.append(f"Cascade points: {timing[0].lower()}{timing[1:]}")
    lines.append("")
    for plot in t["plots"]:
        lines.append(f"![{task} {Path(plot).stem}]({plot})")
    lines.append("")
    lines.append("<details><summary>Every curve point</summary>")
    lines.append("")
    lines.append(f"| run | setting | {metric} | FLOPs reduction | share per route | batched speed-up |")
    lines.append("|---|---|---|---|---|---|")
    for r in t["curve"]:
        speed = f"{r['batched_speedup']:.2f}x" if r["batched_speedup"] else "-"
        lines.append(
            f"| {r['run']} | `{r['setting']}` | {r['metric']:.4f} | {r['flops_reduction']:.2f}x | "
            f"{_pct(r['share'])} | {speed} |"
        )
    lines += ["", "</details>", ""]
    return lines


def render(results: dict, template: str) -> str:
    """The page from the results dict and the template (generated: edit the template, not the page).
    Each section carries its study's settings; sections written before they did are the page's own
    study's (results["plan"]["study"])."""
    lines = []
    plans = [(results.get("plan"), "")] + [(p, f"{n}-") for n, p in results.get("studies", {}).items()]
    keys = [prefix + (t["name"] or t["task"]) for p, prefix in plans if p for t in p["tasks"]]
    waiting = [key.upper() for key in keys if key not in results["tasks"]]
    if waiting:
        lines += [f"Not yet trained or measured: {', '.join(waiting)}.", ""]
    own = (results.get("plan") or {}).get("study", {})
    order = {key: i for i, key in enumerate(keys)}  # the plans' order; sections no plan has go last
    for task, t in sorted(results["tasks"].items(), key=lambda item: order.get(item[0], len(order))):
        lines += task_lines(task, t, t.get("study", own))
    seeds = results.get("seeds", {})
    absent = "(not measured: docs/recipe.json is missing)"
    return string.Template(template).substitute(
        sections="\n".join(lines),
        seeds_staged=seeds.get("staged", absent),
        seeds_baseline=seeds.get("baseline", absent),
        seeds_headline=seeds.get("headline", absent),
        seeds_equal_cost=seeds.get("equal_cost", absent),
    )
