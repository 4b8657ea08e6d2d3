"""Train every run of a study plan (benchmarks/plans/*.toml), a few processes at a time, resumably.

    python benchmarks/recipe_train.py benchmarks/plans/recipe.toml --jobs 2      # runs/<study>/...

Each run is `sharcs train` in its own process with one torch thread (one process per core). A finished
run (results.json) is skipped; every run is started with `sharcs train --continue`, so a started one
resumes from its newest checkpoint and a folder left before its first checkpoint starts again.
Output: runs/<study>/<task>/<run>-s<seed>/, and the process output beside it in <run>-s<seed>.out.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
GLUE = REPO.parent / "shared" / "glue"


@dataclass(frozen=True)
class Job:
    task: str
    run: str
    seed: int
    command: tuple[str, ...]
    out: Path

    @property
    def label(self) -> str:
        return f"{self.task}/{self.out.name}"


def load_plan(path: Path) -> dict:
    with open(path, "rb") as f:
        plan = tomllib.load(f)
    for key in ("study", "tasks", "runs"):
        if key not in plan:
            raise SystemExit(f"{path}: no [{key}] section")
    return plan


def run_dir(runs: Path, plan: dict, task: str, run: str, seed: int) -> Path:
    return runs / plan["study"]["name"] / task / f"{run}-s{seed}"


def jobs(plan: dict, runs: Path) -> list[Job]:
    """Every (task, seed, run) of the plan, seeds outermost after the first: the first seed of every task
    comes first, so each task has a complete comparison early."""
    found = []
    for task, spec in plan["tasks"].items():
        for order, seed in enumerate(spec["seeds"]):
            for run, run_spec in plan["runs"].items():
                if task not in run_spec.get("tasks", [task]) or seed not in run_spec.get("seeds", [seed]):
                    continue
                out = run_dir(runs, plan, task, run, seed)
                command = (
                    sys.executable,
                    "-m",
                    "sharcs",
                    "train",
                    "--task",
                    task,
                    "--data-dir",
                    str(GLUE),
                    "--output-dir",
                    str(out),
                    *plan["study"].get("common", ()),
                    *spec.get("options", ()),
                    *run_spec.get("options", ()),
                    "--seed",
                    str(seed),
                )
                found.append((order, Job(task, run, seed, command, out)))
    return [job for _, job in sorted(found, key=lambda item: item[0])]


def in_use(out: Path) -> bool:
    """Whether another process (e.g. a second runner's `sharcs train`) trains into `out` now: the pid in
    its lock file (sharcs.lock) is alive. Read only, so it never competes for the lock."""
    try:
        text = (out / ".sharcs.lock").read_text().strip()
    except OSError:
        return False
    if not text.isdigit():
        return False
    try:
        os.kill(int(text), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("plan", type=Path)
    parser.add_argument("--runs", type=Path, default=REPO / "runs", help="(default: runs/)")
    parser.add_argument("--jobs", type=int, default=2, help="processes at a time (default: 2)")
    parser.add_argument("--only", help="comma-separated task/run-sSEED labels to train")
    parser.add_argument("--first", help="comma-separated task/run-sSEED labels to train before the rest")
    args = parser.parse_args()
    plan = load_plan(args.plan)
    todo = [j for j in jobs(plan, args.runs) if not (j.out / "results.json").is_file()]
    if args.only:
        wanted = set(args.only.split(","))
        todo = [j for j in todo if j.label in wanted]
    if args.first:
        first = args.first.split(",")
        todo.sort(key=lambda j: first.index(j.label) if j.label in first else len(first))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}
    running: list[tuple[Job, subprocess.Popen, float]] = []
    failed = []
    every = jobs(plan, args.runs)
    while todo or running:
        mine = {job.out for job, _, _ in running}
        elsewhere = sum(in_use(j.out) for j in every if j.out not in mine)  # runs of another runner
        while todo and len(running) + elsewhere < args.jobs:
            job = todo.pop(0)
            if (job.out / "results.json").is_file():
                continue  # finished meanwhile (by another runner)
            if in_use(job.out):
                print(f"[recipe] skip {job.label}: another process is training it", flush=True)
                continue
            job.out.parent.mkdir(parents=True, exist_ok=True)
            # --continue starts the run, resumes it from its newest checkpoint, or restarts one killed
            # before its first checkpoint
            command = [*job.command, "--continue"]
            print(f"[recipe] start {job.label}: {' '.join(command[3:])}", flush=True)
            with open(job.out.parent / f"{job.out.name}.out", "a") as log:
                process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
            running.append((job, process, time.time()))
        time.sleep(5)
        for item in list(running):
            job, process, start = item
            if process.poll() is None:
                continue
            running.remove(item)
            minutes = (time.time() - start) / 60
            status = "done" if process.returncode == 0 else f"FAILED (exit {process.returncode})"
            if process.returncode != 0:
                failed.append(job.label)
            print(f"[recipe] {status} {job.label} in {minutes:.1f} min", flush=True)
    if failed:
        print(f"[recipe] failed: {', '.join(failed)}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
