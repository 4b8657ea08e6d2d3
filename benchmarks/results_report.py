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

from plan import REPO, arguments, jobs, load_plan, trained_as_planned, trains
from results_render import SHARCS_METHODS, best_sharcs_point, dominated_share, frontier_plot, render

# the study settings a section's summary reads (results_render.summary_lines), stored with each section
STUDY_KEYS = ("name", "throughput_batch", "target_flops_reduction", "target_speedup")


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
        "study": {k: plan["study"][k] for k in STUDY_KEYS},
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


def section(plan: dict, key: str) -> str:
    """The section a plan's task has on its page: the task key, prefixed with the study's name when the
    study writes onto another study's page (plans/mpnet.toml: MPNET-SST2 on docs/results.md)."""
    study = plan["study"]
    return key if study.get("page", study["name"]) == study["name"] else f"{study['name']}-{key}"


def record_path(out: Path, plan: dict, key: str, name: str) -> Path:
    """Where a run's measurements are kept with the docs, so that a machine without the run folder (a
    later session) still reports them: docs/results/<section>/measured/<run>.json."""
    return out / "results" / section(plan, key) / "measured" / f"{name}.json"


def run_arguments(plan: dict, key: str, name: str) -> list[str]:
    """The run's `sharcs train` options, without this machine's paths: a stored record is only used
    while the plan still trains the run this way."""
    found = list(arguments(plan, key, name, Path("<run>")))
    found[found.index("--data-dir") + 1] = "<glue>"
    start = plan["runs"][name].get("start_from")
    return found + (["--model", f"<run {start}>"] if start else [])


def measure_task(
    plan: dict, key: str, runs: Path, out: Path, args: argparse.Namespace, only: set[str] | None
) -> tuple:
    """The measurements (measure.json) and cascade measurements (cascade.json) of one task's runs: of
    the run folders here that were trained as the plan says, else of the records stored with the docs
    (`record_path`) while their options are the plan's."""
    from sharcs.storage.files import atomic_write_text

    study = plan["study"]
    batch = study["throughput_batch"]
    planned = {job.run: job for job in jobs(plan, runs, [key]) if job.seed is None}
    measured, cascades = {}, {}
    for name, job in planned.items():
        path, record = job.out, record_path(out, plan, key, name)
        options = run_arguments(plan, key, name)
        stored = json.loads(record.read_text()) if record.is_file() else None
        if stored is not None and stored.get("options") != options:
            print(f"[results] {key}/{name}: its record has other options than the plan's", flush=True)
            stored = None
        wanted = not args.measured_only and (only is None or name in only)
        here = (path / "results.json").is_file() and ((path / "measure.json").is_file() or wanted)
        if here and not trained_as_planned(job):
            kept = "its record is reported" if stored is not None else "left out"
            print(f"[results] {key}/{name}: {path} was trained with other options; {kept}", flush=True)
            here = False
        if here:
            print(f"[results] measuring {key}/{name}", flush=True)
            measured[name] = measure_run(path, args.threads, args.latency_samples, args.repeats, batch)
            cascades_too = measured[name]["method"] in SHARCS_METHODS  # the baselines have none
            if cascades_too and ((path / "cascade.json").is_file() or wanted):
                shares = study["cascade_shares"]
                cascades[name] = measure_cascade(path, args.threads, args.repeats, shares, batch)
            elif stored is not None and stored["measure"] == measured[name]:  # the same run, measured earlier
                cascades[name] = stored.get("cascade")
            kept_record = {"options": options, "measure": measured[name], "cascade": cascades.get(name)}
            record.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(record, json.dumps(kept_record, indent=1) + "\n")
        elif stored is not None:
            print(f"[results] {key}/{name}: measured earlier ({record.relative_to(out)})", flush=True)
            measured[name] = stored["measure"]
            cascades[name] = stored.get("cascade")
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
    folder = out / "results" / section(plan, key)
    plots = [frontier_plot(rows, metric, full_metric, folder / "frontiers.png")]
    plots += write_curves(curves, folder, metric)
    spec = plan["tasks"][key]
    study = plan["study"]
    return {
        "study": {k: study[k] for k in STUDY_KEYS},
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


def with_seeds(everything: dict, out: Path) -> dict:
    """The page's results with the seeded study of the default recipe (docs/recipe.json, written by
    recipe_report.py) as the template's seed tables."""
    recipe = out / "recipe.json"
    if recipe.is_file():
        from recipe_report import tables

        study = json.loads(recipe.read_text())
        everything["seeds"] = {
            "source": "docs/recipe.json",
            **tables(study["summary"], study["plan"]["runs"]),
        }
    return everything


def write_page(page: str, results: dict, out: Path) -> None:
    from sharcs.storage.files import atomic_write_text

    template = (REPO / "benchmarks" / "templates" / f"{page}.md").read_text()
    atomic_write_text(out / f"{page}.md", render(results, template))


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
    page = plan["study"].get("page", name)
    page_json = args.out / f"{page}.json"
    if args.render_only:
        everything = json.loads(page_json.read_text())
        write_page(page, with_seeds(everything, args.out), args.out)
        print(f"[results] wrote {args.out / page}.md from {page_json}")
        return 0
    tasks = args.tasks.split(",") if args.tasks else list(plan["tasks"])
    unknown = sorted(set(tasks) - set(plan["tasks"]))
    if unknown:
        parser.error(f"--tasks: unknown task(s) {unknown}")
    tasks = [key for key in plan["tasks"] if key in tasks]
    only = set(args.run_names.split(",")) if args.run_names else None
    # the page keeps what is not measured now: other studies' sections and tasks left out of --tasks
    everything = json.loads(page_json.read_text()) if page_json.is_file() else {"plan": None, "tasks": {}}
    if page == name:
        everything["plan"] = plan_record(plan, list(plan["tasks"]))
    else:
        page_plan = load_plan(REPO / "benchmarks" / "plans" / f"{page}.toml")
        everything["plan"] = plan_record(page_plan, list(page_plan["tasks"]))
        everything.setdefault("studies", {})[name] = plan_record(plan, list(plan["tasks"]))
    for key in tasks:
        measured, cascades = measure_task(plan, key, args.runs, args.out, args, only)
        if measured:
            everything["tasks"][section(plan, key)] = task_report(plan, key, measured, cascades, args.out)
        elif everything["tasks"].pop(section(plan, key), None) is not None:
            print(f"[results] {section(plan, key)}: nothing measured as the plan says now, section removed")
    with_seeds(everything, args.out)
    from sharcs.storage.files import atomic_write_text

    atomic_write_text(page_json, json.dumps(everything, indent=2) + "\n")
    write_page(page, everything, args.out)
    print(f"[results] wrote {args.out / page}.md and {page_json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
