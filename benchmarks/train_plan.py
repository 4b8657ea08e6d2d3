"""Train every run of a study plan (benchmarks/plans/*.toml), a few processes at a time, resumably.

    python benchmarks/train_plan.py benchmarks/plans/recipe.toml --jobs 2       # runs/recipe/...
    python benchmarks/train_plan.py benchmarks/plans/results.toml               # runs/results/...
    python benchmarks/train_plan.py benchmarks/plans/results.toml --tasks sst2 --run-names full,pabee
    python benchmarks/train_plan.py benchmarks/plans/results.toml --dry-run     # print the commands

Each run is `sharcs train` in its own process: the plan's [study] `jobs` processes at a time (default 2)
with `threads` torch threads each (default 1; plans/results.toml: 1 and 2). A finished run
(results.json) is skipped; every run is started with `sharcs train --continue`, so a started one resumes
from its newest checkpoint and a folder left before its first checkpoint starts again. A run with
`shares_from` or `start_from` waits until that run has finished. The `jobs` limit counts the study's
runs that another runner is training, so a second runner of the same study waits for a free slot
rather than overloading the cores: to train more at once, restart one runner with a larger --jobs. Output:
runs/<study>/<task>/<run>[-s<seed>]/, and the process output beside it in <run>[-s<seed>].out.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

from plan import REPO, Job, finished, in_use, jobs, load_plan


def dry_run(every: list[Job]) -> None:
    """Every job's command line, with what it waits for; nothing runs."""
    for job in every:
        waiting = ", ".join(str(p) for p in job.waiting_for())
        state = "finished" if finished(job.out) else f"waits for {waiting}" if waiting else "to train"
        print(f"{job.label} ({state}): {shlex.join([*job.command(placeholder=True), '--continue'])}")


def train(todo: list[Job], every: list[Job], processes: int, threads: int, tag: str) -> list[str]:
    """Train the jobs of `todo`, `processes` at a time (counting those another runner trains); the labels
    of the failed ones. A job starts once the runs it needs have finished."""
    env = {**os.environ, "TQDM_DISABLE": "1"}
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    running: list[tuple[Job, subprocess.Popen, float]] = []
    failed: list[str] = []
    while todo or running:
        mine = {job.out for job, _, _ in running}
        elsewhere = sum(in_use(j.out) for j in every if j.out not in mine)  # runs of another runner
        pending = mine | {j.out for j in todo}
        for job in list(todo):
            if len(running) + elsewhere >= processes:
                break
            if finished(job.out):
                todo.remove(job)  # finished meanwhile (by another runner)
                continue
            waiting = job.waiting_for()
            if any(p in pending or in_use(p) for p in waiting):
                continue  # it starts once they have finished
            todo.remove(job)
            if waiting:
                print(f"[{tag}] {job.label}: waiting for {', '.join(map(str, waiting))}", flush=True)
                continue
            if in_use(job.out):
                print(f"[{tag}] skip {job.label}: another process is training it", flush=True)
                continue
            job.out.parent.mkdir(parents=True, exist_ok=True)
            # --continue starts the run, resumes it from its newest checkpoint, or restarts one killed
            # before its first checkpoint
            command = [*job.command(), "--continue"]
            print(f"[{tag}] start {job.label}: {' '.join(command[3:])}", flush=True)
            with open(job.out.parent / f"{job.out.name}.out", "a") as log:
                process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
            running.append((job, process, time.time()))
        if not running and not elsewhere and todo:
            for job in todo:  # nothing left can finish what they wait for
                print(f"[{tag}] {job.label}: waiting for {', '.join(map(str, job.waiting_for()))}")
            break
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
            print(f"[{tag}] {status} {job.label} in {minutes:.1f} min", flush=True)
    return failed


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("plan", type=Path)
    parser.add_argument("--runs", type=Path, default=REPO / "runs", help="(default: runs/)")
    parser.add_argument("--jobs", type=int, help="processes at a time (default: the plan's, else 2)")
    parser.add_argument("--threads", type=int, help="torch threads per process (default: the plan's, else 1)")
    parser.add_argument("--tasks", help="comma-separated task keys of the plan to train")
    parser.add_argument("--run-names", help="comma-separated run names of the plan to train")
    parser.add_argument("--only", help="comma-separated task/run[-sSEED] labels to train")
    parser.add_argument("--first", help="comma-separated task/run[-sSEED] labels to train before the rest")
    parser.add_argument("--dry-run", action="store_true", help="print every command; run nothing")
    args = parser.parse_args()
    plan = load_plan(args.plan)
    study = plan["study"]
    tasks = args.tasks.split(",") if args.tasks else None
    unknown = sorted(set(tasks or ()) - set(plan["tasks"]))
    unknown += sorted(set(args.run_names.split(",") if args.run_names else ()) - set(plan["runs"]))
    if unknown:
        parser.error(f"not in the plan: {', '.join(unknown)}")
    every = jobs(plan, args.runs, tasks)
    todo = every
    if args.run_names:
        todo = [j for j in todo if j.run in args.run_names.split(",")]
    if args.only:
        todo = [j for j in todo if j.label in args.only.split(",")]
    if args.dry_run:
        dry_run(todo)
        return 0
    done = [j for j in todo if finished(j.out)]
    todo = [j for j in todo if not finished(j.out)]
    if args.first:
        first = args.first.split(",")
        todo.sort(key=lambda j: first.index(j.label) if j.label in first else len(first))
    processes = args.jobs or study.get("jobs", 2)
    threads = study.get("threads", 1) if args.threads is None else args.threads
    tag = study["name"]
    failed = train(list(todo), jobs(plan, args.runs), processes, threads, tag)
    left = [j.label for j in todo if not finished(j.out) and j.label not in failed]
    print(f"[{tag}] {len(done)} finished before, {len(failed)} failed: {failed}; not trained: {left}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
