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
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
GLUE = REPO.parent / "shared" / "glue"


@dataclass(frozen=True)
class TaskPlan:
    """How one GLUE task is trained: a fixed training subset, truncation length and epochs."""

    task: str
    max_train_samples: int | None
    max_seq_length: int
    epochs: int = 3


@dataclass(frozen=True)
class RunPlan:
    """One training run: a name, the method and its extra `sharcs train` options."""

    name: str
    method: str
    options: tuple[str, ...] = ()
    tasks: tuple[str, ...] | None = None  # None: every task
    shares_from: str | None = None  # random routing: take the width shares of this run


TAUS = (0.05, 0.2, 0.35, 0.5, 0.65, 0.8, 0.95)
BATCH = 64  # the batched-throughput batch size
COMMON = ("--lr", "1e-4", "--router-lr", "1e-3", "--window", "1", "--batch-size", "32", "--seed", "42")
TASKS = (
    TaskPlan("sst2", 4000, 64),
    TaskPlan("mrpc", None, 128),
    TaskPlan("rte", None, 128),
    TaskPlan("cola", 4000, 64),
    TaskPlan("stsb", 4000, 128),
)
PLAN = (
    RunPlan("full", "full"),
    RunPlan("sharcs-k1", "sharcs", ("--adaptive-layer", "1", "--threshold", "0.8")),
    RunPlan("sharcs-k2", "sharcs", ("--adaptive-layer", "2", "--threshold", "0.8")),
    RunPlan("sharcs-k3", "sharcs", ("--adaptive-layer", "3", "--threshold", "0.8")),
    RunPlan("fixed-k2-w0.25", "fixed", ("--adaptive-layer", "2", "--fixed-width", "0.25")),
    RunPlan("random-k2", "random", ("--adaptive-layer", "2"), shares_from="sharcs-k2"),
    RunPlan("dynabert", "dynabert", ("--widths", "0.25,0.5,0.75,1.0")),
    RunPlan("deebert", "deebert", ()),
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
    command = [sys.executable, "-m", "sharcs", "train", "--task", task.task, "--data-dir", str(GLUE)]
    command += ["--output-dir", str(out), "--epochs", str(task.epochs)]
    command += ["--max-seq-length", str(task.max_seq_length), *COMMON]
    if task.max_train_samples is not None:
        command += ["--max-train-samples", str(task.max_train_samples)]
    if run.method != "sharcs":
        command += ["--method", run.method]
    command += list(run.options)
    if run.shares_from is not None:
        shares = random_shares(runs_dir / task.task / run.shares_from)
        if shares is None:
            return None
        command += ["--width-shares", shares]
    if (out / "run_config.json").is_file():
        command.append("--resume")
    return command


def train_all(tasks: list[TaskPlan], runs_dir: Path, threads: int) -> Outcome:
    """Train every planned run that has no results.json yet, in plan order (task by task)."""
    outcome = Outcome()
    env_threads = {"OMP_NUM_THREADS": str(threads)} if threads else {}
    import os

    env = {**os.environ, **env_threads, "TQDM_DISABLE": "1"}
    for task in tasks:
        for run in PLAN:
            if run.tasks is not None and task.task not in run.tasks:
                continue
            out = runs_dir / task.task / run.name
            label = f"{task.task}/{run.name}"
            if (out / "results.json").is_file():
                outcome.finished.append(label)
                continue
            command = train_command(task, run, out, runs_dir)
            if command is None:
                print(f"[results] {label}: waiting for {run.shares_from}", flush=True)
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
    from sharcs.curve import sweep
    from sharcs.files import atomic_write_text
    from sharcs.measure_runs import dev_data
    from sharcs.model import SharcsModel
    from sharcs.saved_run import load_run

    cache = run_dir / "measure.json"
    if cache.is_file():
        return json.loads(cache.read_text())
    run = load_run(run_dir, "cpu")
    data, _, info = dev_data(run, None)
    pad = pad_id(run.tokenizer)
    model = run.model
    routed = isinstance(model, SharcsModel) and model.config.uses_router
    settings = model.curve_settings(TAUS) if routed else model.curve_settings()
    with pinned_threads(threads):
        points = sweep(model, data, info.metrics, settings, 64, repeats, pad)
        speed = benchmark(model, data, threads, latency_samples, (BATCH,), repeats, (None,), pad)
    own = speed["modes"]["routed"]
    results = json.loads((run_dir / "results.json").read_text())
    measured = {
        "method": json.loads((run_dir / "run_config.json").read_text())["options"]["method"]
        if "method" in json.loads((run_dir / "run_config.json").read_text())["options"]
        else "sharcs",
        "route": model.route_name,
        "main_metric": info.main_metric,
        "results": results,
        "curve": points,
        "own": {
            "latency_speedup_bs1": own["latency_speedup_bs1"],
            "throughput_speedup": own["throughput"][str(BATCH)]["speedup"],
            "latency_bs1_ms": {k: v["mean"] * 1e3 for k, v in own["latency_bs1"].items()},
        },
        "machine": speed["machine"],
    }
    atomic_write_text(cache, json.dumps(measured, indent=2) + "\n")
    return measured


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs-dir", default=str(REPO / "runs" / "results"))
    parser.add_argument("--tasks", default=",".join(t.task for t in TASKS))
    parser.add_argument("--only", choices=("train", "report"))
    parser.add_argument("--threads", type=int, default=2, help="torch threads for training and timing")
    args = parser.parse_args()
    wanted = args.tasks.split(",")
    unknown = sorted(set(wanted) - {t.task for t in TASKS})
    if unknown:
        parser.error(f"--tasks: unknown task(s) {unknown}")
    tasks = [t for t in TASKS if t.task in wanted]
    runs_dir = Path(args.runs_dir)
    if args.only != "report":
        outcome = train_all(tasks, runs_dir, args.threads)
        print(
            f"[results] {len(outcome.finished)} runs finished, {len(outcome.failed)} failed: {outcome.failed}"
        )


if __name__ == "__main__":
    main()
