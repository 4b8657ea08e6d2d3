"""Measure the finished runs of the results study and write docs/results.md, docs/results.json and plots.

    python benchmarks/train_plan.py benchmarks/plans/results.toml        # first: train (resumable)
    python benchmarks/results_report.py benchmarks/plans/results.toml    # measure what is new, report
    python benchmarks/results_report.py benchmarks/plans/results.toml --tasks sst2 --run-names full,pabee
    python benchmarks/results_report.py benchmarks/plans/results.toml --measured-only  # measure nothing
    python benchmarks/results_report.py benchmarks/plans/results.toml --render-only    # docs/results.json

Per run (cached in <runs>/results/<task>/<run>/measure.json): every curve point (with the batched
speed-up) and the batch-1 / batched speed-ups of the run's own setting, against the plain Hugging Face
model in the same process; for SHARCS classifiers, cascade curve points too (cascade.json). The report
adds the Pareto analysis (results_render.py); its prose is the template benchmarks/templates/results.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from plan import REPO, load_plan, run_dir, trains
from results_render import SHARCS_METHODS, best_sharcs_point, dominated_share, frontier_plot, render


def measure_run(path: Path, threads: int, latency_samples: int, repeats: int, batch: int) -> dict:
    """Curve points (every setting, batched speed-up) and batch-1 / batched speed-ups of the run's own
    setting, against the full model in the same process; cached in path/measure.json."""
    from sharcs.measure.bench import benchmark, pinned_threads
    from sharcs.measure.curve import settings_for, sweep
    from sharcs.measure.run_dirs import dev_data
    from sharcs.modeling.pretrained import pad_id
    from sharcs.storage.files import atomic_write_text
    from sharcs.storage.saved_run import load_run

    cache = path / "measure.json"
    if cache.is_file():
        return json.loads(cache.read_text())
    run = load_run(path, "cpu")
    data, _, info = dev_data(run, None)
    pad = pad_id(run.tokenizer)
    model = run.model
    settings = settings_for(model, data, pad_token_id=pad)  # SHARCS: taus sending 10%..90% below full
    load_before = os.getloadavg()[0]  # other processes on the machine (1-minute load average)
    with pinned_threads(threads):
        points = sweep(model, data, info.metrics, settings, 64, repeats, pad)
        speed = benchmark(model, data, threads, latency_samples, (batch,), repeats, (None,), pad)
    own = speed["modes"]["routed"]
    results = json.loads((path / "results.json").read_text())
    options = json.loads((path / "run_config.json").read_text())["options"]
    measured = {
        "method": options.get("method", "sharcs"),  # runs from before --method existed are SHARCS
        "route": model.route_name,
        "main_metric": info.main_metric,
        "results": results,
        "curve": points,
        "own": {
            "latency_speedup_bs1": own["latency_speedup_bs1"],
            "throughput_speedup": own["throughput"][str(batch)]["speedup"],
            "latency_bs1_ms": {k: v["mean"] * 1e3 for k, v in own["latency_bs1"].items()},
        },
        "machine": {**speed["machine"], "load_average": [load_before, os.getloadavg()[0]]},
    }
    atomic_write_text(cache, json.dumps(measured, indent=2) + "\n")
    return measured


def measure_cascade(path: Path, threads: int, repeats: int, shares: list[float], batch: int) -> dict | None:
    """Cascade curve points (`sharcs curve --cascade-shares`) of a SHARCS classifier that can cascade
    (routed or cascade-trained), batched speed-up against the full model in the same process; cached in
    path/cascade.json. None for other runs."""
    from sharcs.measure.bench import machine_info, pinned_threads
    from sharcs.measure.curve import cascade_settings, sweep
    from sharcs.measure.run_dirs import dev_data
    from sharcs.methods.sharcs.model import cascade_problem
    from sharcs.modeling.pretrained import pad_id
    from sharcs.storage.files import atomic_write_text
    from sharcs.storage.saved_run import load_run

    cache = path / "cascade.json"
    if cache.is_file():
        return json.loads(cache.read_text())
    run = load_run(path, "cpu")
    if cascade_problem(run.model) is not None:
        return None
    data, _, info = dev_data(run, None)
    pad = pad_id(run.tokenizer)
    load_before = os.getloadavg()[0]
    with pinned_threads(threads):
        settings = cascade_settings(run.model, data, shares, pad_token_id=pad)
        points = sweep(run.model, data, info.metrics, settings, batch, repeats, pad)
        machine = {**machine_info(), "load_average": [load_before, os.getloadavg()[0]]}
    measured = {"curve": points, "machine": machine}
    atomic_write_text(cache, json.dumps(measured, indent=2) + "\n")
    return measured


def plan_record(plan: dict[str, Any], tasks: list[str]) -> dict:
    """The plan as docs/results.json records it (one entry per task with every field filled in)."""
    from sharcs.measure.curve import SHARES

    def task_entry(key: str) -> dict:
        spec = plan["tasks"][key]
        task = spec.get("task", key)
        fields = {"task": task, "max_train_samples": spec.get("max_train_samples")}
        fields |= {"max_seq_length": spec["max_seq_length"], "epochs": spec.get("epochs", 3)}
        fields |= {"name": "" if key == task else key, "runs": spec.get("runs")}
        return fields | {"save_every_steps": spec.get("save_every_steps", 0)}

    return {
        "tasks": [task_entry(key) for key in tasks],
        "common_options": list(plan["study"].get("common", [])),
        "runs": [
            {
                "name": name,
                "method": r.get("method", "sharcs"),
                "options": r.get("options", []),
                "tasks": r.get("tasks"),
            }
            for name, r in plan["runs"].items()
        ],
        "tau_shares_below_full_width": list(SHARES),
        "batch_size_for_throughput": plan["study"]["throughput_batch"],
    }


def measure_task(plan: dict, key: str, runs: Path, args: argparse.Namespace, only: set[str] | None) -> tuple:
    """The measurements (measure.json) and cascade measurements (cascade.json) of one task's runs."""
    study = plan["study"]
    batch = study["throughput_batch"]
    measured, cascades = {}, {}
    for name in plan["runs"]:
        path = run_dir(runs, plan, key, name)
        wanted = not args.measured_only and (only is None or name in only)
        if (path / "results.json").is_file() and ((path / "measure.json").is_file() or wanted):
            print(f"[results] measuring {key}/{name}", flush=True)
            measured[name] = measure_run(path, args.threads, args.latency_samples, args.repeats, batch)
            cascades_too = measured[name]["method"] in SHARCS_METHODS  # the baselines have none
            if cascades_too and ((path / "cascade.json").is_file() or wanted):
                shares = study["cascade_shares"]
                cascades[name] = measure_cascade(path, args.threads, args.repeats, shares, batch)
    return measured, {name: c for name, c in cascades.items() if c is not None}


def task_report(plan: dict, key: str, measured: dict, cascades: dict, out: Path) -> dict:
    """One task's entry of docs/results.json (and its plots): runs, curve points and the analysis."""
    from sharcs.measure.curve import write_curves

    metric = next(iter(measured.values()))["main_metric"]
    reference = {}  # each run's reference full fine-tune: its name and dev metric (None: not measured)
    for name, spec in plan["runs"].items():
        ref = spec.get("reference", "full")
        reference[name] = (ref, measured[ref]["results"]["metrics"][metric] if ref in measured else None)
    cascade_runs = {name: {**c, "method": "sharcs-cascade"} for name, c in cascades.items()}
    rows = [
        {
            "run": name,
            "method": m["method"],
            "setting": p["setting"],
            "metric": p["metrics"][metric],
            "flops_per_sample": p["flops_per_sample"],
            "flops_reduction": p["flops_reduction"],
            "share": p["width_share"],
            "batched_speedup": p.get("speedup"),
            "reference": reference[name][0],
            "reference_metric": reference[name][1],
        }
        for name, m in [*measured.items(), *cascade_runs.items()]
        for p in m["curve"]
    ]
    full = measured.get("full")
    full_metric = full["results"]["metrics"][metric] if full else None
    curves = {name: m["curve"] for name, m in measured.items()}
    curves |= {f"{name} cascade": c["curve"] for name, c in cascades.items()}
    plots = [frontier_plot(rows, metric, full_metric, out / "results" / key / "frontiers.png")]
    plots += write_curves(curves, out / "results" / key, metric)
    spec = plan["tasks"][key]
    return {
        "metric": metric,
        "full_metric": full_metric,
        "runs": {
            name: {
                "method": m["method"],
                "metric": m["results"]["metrics"][metric],
                "metrics": m["results"]["metrics"],
                "flops_per_sample": m["results"]["flops_per_sample"],
                "flops_reduction": m["results"]["flops_reduction"],
                "share": m["results"]["width_share"],
                "reference": reference[name][0],
                "reference_metric": reference[name][1],
                **m["own"],
            }
            for name, m in measured.items()
        },
        "curve": rows,
        "best_sharcs_within_1pt": best_sharcs_point(rows, 0.01),
        "best_cascade_within_1pt": best_sharcs_point(rows, 0.01, "sharcs-cascade"),
        "baseline_points_matched_by_sharcs": dominated_share(rows),
        "plots": [str(p.relative_to(out)) for p in plots if p.suffix == ".png"],
        "machine": {name: m["machine"] for name, m in measured.items()},
        "cascade_machine": {name: c["machine"] for name, c in cascades.items()},
        "missing_runs": [  # not trained, or (with --measured-only) not measured yet
            name
            for name, r in plan["runs"].items()
            if trains(key, spec, name, r, None) and name not in measured
        ],
    }


def write_page(plan: dict, results: dict, out: Path) -> None:
    from sharcs.storage.files import atomic_write_text

    name = plan["study"]["name"]
    template = (REPO / "benchmarks" / "templates" / f"{name}.md").read_text()
    atomic_write_text(out / f"{name}.md", render(results, plan["study"], template))


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("plan", type=Path, nargs="?", default=REPO / "benchmarks" / "plans" / "results.toml")
    parser.add_argument("--runs", type=Path, default=REPO / "runs", help="(default: runs/)")
    parser.add_argument("--tasks", help="comma-separated task keys of the plan (default: all)")
    parser.add_argument(
        "--run-names",
        help="measure only these runs, e.g. full,pabee (others measured earlier are reported too)",
    )
    parser.add_argument("--threads", type=int, default=2, help="torch threads for timing")
    parser.add_argument("--out", type=Path, default=REPO / "docs", help="where results.md/.json and plots go")
    parser.add_argument("--latency-samples", type=int, default=150, help="batch-1 samples timed per run")
    parser.add_argument("--repeats", type=int, default=3, help="timing repeats (medians)")
    parser.add_argument(
        "--measured-only", action="store_true", help="report only the runs measured so far (measure.json)"
    )
    parser.add_argument(
        "--render-only",
        action="store_true",
        help="rewrite results.md from --out's results.json; no runs read",
    )
    args = parser.parse_args()
    plan = load_plan(args.plan)
    name = plan["study"]["name"]
    if args.render_only:
        write_page(plan, json.loads((args.out / f"{name}.json").read_text()), args.out)
        print(f"[results] wrote {args.out / name}.md from {args.out / name}.json")
        return 0
    tasks = args.tasks.split(",") if args.tasks else list(plan["tasks"])
    unknown = sorted(set(tasks) - set(plan["tasks"]))
    if unknown:
        parser.error(f"--tasks: unknown task(s) {unknown}")
    tasks = [key for key in plan["tasks"] if key in tasks]
    only = set(args.run_names.split(",")) if args.run_names else None
    everything: dict = {"plan": plan_record(plan, tasks), "tasks": {}}
    for key in tasks:
        measured, cascades = measure_task(plan, key, args.runs, args, only)
        if measured:
            everything["tasks"][key] = task_report(plan, key, measured, cascades, args.out)
    from sharcs.storage.files import atomic_write_text

    atomic_write_text(args.out / f"{name}.json", json.dumps(everything, indent=2) + "\n")
    write_page(plan, everything, args.out)
    print(f"[results] wrote {args.out / name}.md and {args.out / name}.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
