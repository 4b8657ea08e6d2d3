"""SHARCS against what users run instead: ONNX Runtime fp32 / int8 and torch int8; docs/runtimes.{json,md}.

    python benchmarks/runtimes.py --threads 2                 # measure (about 10 min per task here)
    python benchmarks/runtimes.py --render-only               # docs/runtimes.md from docs/runtimes.json

For each task: the equal-budget full fine-tune (`full-s42` of the recipe study, benchmarks/plans/recipe.toml)
and the SHARCS run (`sandwich-s42`). The SHARCS operating point is the cheapest FLOPs budget (a sweep of
`--flops-budget`, each the calibrated router-or-cascade choice) whose dev metric is within 1 point of
the full fine-tune's; picked on dev, so it is an optimistic choice, and one seed. Timings come from one
`sharcs bench` of the SHARCS run at that point (sharcs.measure.runtimes): every runner side by side in
one process on the same inputs, threads pinned, a warm-up, medians with min-max over repeats. The full
model's runners time the same architecture whatever its weights; their metrics are the full
fine-tune's, scored in each runtime (its own export, fp32 and int8).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from sharcs.measure.report_text import RUNNERS

REPO = Path(__file__).resolve().parents[1]
TASKS = ("sst2", "mrpc")
BUDGETS = (0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.7, 0.8, 1.0)
FULL_RUNNERS = ("full", "torch_int8_full", "onnx_fp32_full", "onnx_int8_full")


def pick_point(run: Any, data: Any, metric: str, reference: float, pad: int) -> dict[str, Any]:
    """The cheapest budget whose dev metric is within 1 point of `reference` (else the best one)."""
    from sharcs.measure.evaluation import evaluate_model, routing_arguments

    points = []
    for budget in BUDGETS:
        setting = routing_arguments(run.model, budget=budget)
        evaluation = evaluate_model(run.model, data, [metric], 64, None, pad, setting=setting)
        points.append(
            {
                "budget": budget,
                "setting": setting,
                "metric": evaluation.metrics[metric],
                "flops_reduction": evaluation.flops_reduction,
                "width_share": evaluation.width_share,
            }
        )
        print(
            f"[runtimes]   budget {budget}: {metric} {points[-1]['metric']:.4f}, "
            f"{evaluation.flops_reduction:.2f}x",
            flush=True,
        )
    within = [p for p in points if p["metric"] >= reference - 0.01]
    chosen = (
        max(within, key=lambda p: p["flops_reduction"]) if within else max(points, key=lambda p: p["metric"])
    )
    return {**chosen, "within_1_point": bool(within), "sweep": points}


def measure_task(task: str, threads: int, samples: int, repeats: int) -> dict[str, Any]:
    from sharcs.measure.bench import benchmark, machine_info, pinned_threads
    from sharcs.measure.run_dirs import dev_data
    from sharcs.measure.runtimes import alternatives, onnx_exports, runner_scores
    from sharcs.modeling.pretrained import pad_id
    from sharcs.storage.saved_run import load_run

    study = REPO / "runs" / "recipe" / task
    full_run, sharcs_run = load_run(study / "full-s42", "cpu"), load_run(study / "sandwich-s42", "cpu")
    data, labels, info = dev_data(sharcs_run, None)
    metric, pad = info.metrics[0], pad_id(sharcs_run.tokenizer)
    with pinned_threads(threads), tempfile.TemporaryDirectory(prefix="sharcs-runtimes-") as scratch:
        print(f"[runtimes] {task}: the full fine-tune in each runtime", flush=True)
        full_extra = alternatives(full_run, onnx_exports(full_run, Path(scratch) / "full", threads))
        full_scores = runner_scores(full_run, full_extra, data, labels, [metric], {}, pad)
        reference = full_scores["full"][metric]
        print(f"[runtimes] {task}: operating points of the SHARCS run (full fine-tune {reference:.4f})")
        point = pick_point(sharcs_run, data, metric, reference, pad)
        extra = alternatives(sharcs_run, onnx_exports(sharcs_run, Path(scratch) / "sharcs", threads))
        print(f"[runtimes] {task}: timing at budget {point['budget']}", flush=True)
        report = benchmark(
            sharcs_run.model, data, threads=threads, latency_samples=samples, batch_sizes=(64,),
            repeats=repeats, pad_token_id=pad, setting=point["setting"], extra=extra,
        )  # fmt: skip
        scores = runner_scores(sharcs_run, extra, data, labels, [metric], point["setting"], pad)
    rows = report["modes"]["routed"]["runtimes"]
    for name, row in rows.items():
        row["metric"] = (full_scores if name in FULL_RUNNERS else scores).get(name, {}).get(metric)
    return {
        "task": task,
        "metric": metric,
        "samples": len(data),
        "full_fine_tune": reference,
        "point": {k: v for k, v in point.items() if k != "setting"} | {"setting": point["setting"]},
        "predicted_speedup": report["modes"]["routed"]["predicted_speedup"],
        "rows": rows,
        "machine": machine_info() | {"threads": threads},
    }


ORDER = (*FULL_RUNNERS, "own_full", "sharcs", "onnx_fp32_sharcs", "onnx_int8_sharcs")  # table rows


def render(results: dict[str, Any]) -> str:
    lines = [
        "# SHARCS against what users run instead",
        "",
        "<!-- generated by benchmarks/runtimes.py from docs/runtimes.json; do not edit -->",
        "",
        "A user who wants a cheaper BERT-style classifier on CPU would first export the full model to",
        "ONNX Runtime and quantize it. These tables put SHARCS beside those alternatives, measured side by",
        "side in one process (`sharcs bench`, which prints the same table for any run or export).",
        "",
        "How it was measured: " + " ".join((__doc__ or "").split("\n\n")[2].split()),
        "",
        "Each speed-up is the ratio of mean latencies (each sample's best repeat) or of median throughputs;",
        "the range beside it is the min-max of the same ratio taken repeat by repeat, so the value can lie",
        "just outside it. Metrics are single-seed: the recipe study's seed spread is 0.3-0.5 points on SST-2",
        "and 0.4-1.1 F1 on MRPC (docs/recipe.md).",
        "",
    ]
    for task in results["tasks"]:
        point, machine = task["point"], task["machine"]
        full_int8 = task["rows"]["onnx_int8_full"]
        best = task["rows"]["onnx_int8_sharcs"]
        lines += [
            f"## {task['task'].upper()} (MiniLM-L6, {task['samples']} dev samples, seed 42)",
            "",
            f"Operating point: budget {point['budget']:g} ({point['flops_reduction']:.2f}x fewer FLOPs, "
            f"{task['metric']} {point['metric']:.4f} against the full fine-tune's "
            f"{task['full_fine_tune']:.4f}"
            + (
                ""
                if point["within_1_point"]
                else "; **no budget stays within 1 point**, this is the best one"
            )
            + f"). {machine['threads']} threads, {machine['cpu_count']} cores, torch {machine['torch']}.",
            "",
            f"| runner | {task['metric']} | bs=1 ms | speed-up bs=1 | speed-up bs=64 |",
            "|---|---|---|---|---|",
        ]
        for name in ORDER:
            row = task["rows"].get(name)
            if row is None:
                continue
            tput, lat = row["throughput"]["64"], row["speedup_bs1_spread"]
            score = f"{row['metric']:.4f}" if row.get("metric") is not None else "-"
            lines.append(
                f"| {RUNNERS[name]} | {score} | {row['latency_bs1_ms']:.2f} | {row['speedup_bs1']:.2f}x "
                f"({lat['min']:.2f}-{lat['max']:.2f}) | {tput['speedup']:.2f}x "
                f"({tput['speedup_spread']['min']:.2f}-{tput['speedup_spread']['max']:.2f}) |"
            )
        bs1 = full_int8["latency_bs1_ms"] / best["latency_bs1_ms"]
        bs64 = best["throughput"]["64"]["samples_per_s"] / full_int8["throughput"]["64"]["samples_per_s"]
        lines += [
            "",
            "SHARCS on ONNX Runtime int8 against the full model on ONNX Runtime int8: "
            f"{bs1:.2f}x at batch 1, {bs64:.2f}x at batch 64 "
            "(target: not slower at batch 1, at least 1.3x at batch 64).",
            "",
        ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tasks", default=",".join(TASKS))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--latency-samples", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=str(REPO / "docs" / "runtimes"))
    parser.add_argument("--render-only", action="store_true", help="rewrite the .md from the .json")
    args = parser.parse_args()
    json_path, md_path = Path(args.out + ".json"), Path(args.out + ".md")
    if args.render_only:
        results = json.loads(json_path.read_text())
    else:
        tasks = [
            measure_task(t, args.threads, args.latency_samples, args.repeats) for t in args.tasks.split(",")
        ]
        results = {"tasks": tasks}
        json_path.write_text(json.dumps(results, indent=2) + "\n")
    md_path.write_text(render(results) + "\n")
    print(md_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
