"""A study plan (benchmarks/plans/<study>.toml) and the `sharcs train` jobs it makes; shared by the scripts.

A plan has three tables (see plans/recipe.toml and plans/results.toml):

    [study]       name (runs/<name>/, docs/<name>.md), common (options of every run), and the study's
                  own settings (runner defaults `jobs` and `threads`, report settings)
    [tasks.KEY]   one GLUE task setup: task (default KEY), options, or the fields max_seq_length,
                  max_train_samples, epochs, save_every_steps; seeds (a run per seed); runs (only these)
    [runs.NAME]   one training run: method (default sharcs), options, tasks and seeds (only these),
                  epochs (instead of the task's), shares_from (take --width-shares from that run's
                  results), start_from (--model that finished run), reference (its full fine-tune)

Every job is `sharcs train --task T --data-dir GLUE --output-dir runs/<study>/<KEY>/<NAME>[-s<SEED>]`,
then the task's --epochs, --max-seq-length, the common options, --max-train-samples, --save-every-steps,
the task's options, --method, the run's options, the run's --epochs (last, so it wins), --width-shares,
--model and --seed, each where the plan has it.
"""

from __future__ import annotations

import json
import os
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
GLUE = REPO.parent / "shared" / "glue"
TASK_KEYS = {"task", "options", "seeds", "runs", "max_seq_length", "max_train_samples", "epochs"}
TASK_KEYS |= {"save_every_steps"}
RUN_KEYS = {"method", "options", "tasks", "seeds", "epochs", "shares_from", "start_from", "reference"}


@dataclass(frozen=True)
class Job:
    """One run of a plan: its folder, its `sharcs train` arguments and the runs it waits for."""

    task: str
    run: str
    seed: int | None
    out: Path
    arguments: tuple[str, ...]  # without --width-shares, --model and --seed
    shares_from: Path | None = None  # random routing: the width shares this finished run measured
    start_from: Path | None = None  # --model: this finished run

    @property
    def label(self) -> str:
        return f"{self.task}/{self.out.name}"

    @property
    def needs(self) -> tuple[Path, ...]:
        return tuple(p for p in (self.shares_from, self.start_from) if p is not None)

    def waiting_for(self) -> list[Path]:
        """The runs this one needs that have not finished (no results.json)."""
        return [p for p in self.needs if not finished(p)]

    def command(self, placeholder: bool = False) -> list[str] | None:
        """The `sharcs train` command line; None while a run it needs has not finished (`placeholder`:
        a stand-in for the width shares not measured yet instead)."""
        command = [sys.executable, "-m", "sharcs", "train", *self.arguments]
        if self.shares_from is not None:
            shares = random_shares(self.shares_from)
            if shares is None and not placeholder:
                return None
            command += ["--width-shares", shares or f"<width shares of {self.shares_from}>"]
        if self.start_from is not None:
            if not finished(self.start_from) and not placeholder:
                return None
            command += ["--model", str(self.start_from)]
        if self.seed is not None:
            command += ["--seed", str(self.seed)]
        return command


def finished(run: Path) -> bool:
    return (run / "results.json").is_file()


def trained_as_planned(job: Job) -> bool:
    """Whether the run folder was trained with the options the plan gives the run now: its saved options
    (run_config.json) against the plan's command parsed by `sharcs train`'s own parser, paths aside. A
    finished folder is never retrained, so one left from an earlier version of the plan is stale."""
    from sharcs.cli.main import train_options
    from sharcs.cli.parser import build_parser
    from sharcs.errors import SharcsError
    from sharcs.training.options import TrainOptions

    command = job.command()
    config = job.out / "run_config.json"
    if command is None or not config.is_file():
        return False
    try:
        planned = train_options(build_parser().parse_args(command[3:])).to_dict()
        saved = TrainOptions.from_dict(json.loads(config.read_text())["options"]).to_dict()
    except (SharcsError, ValueError, KeyError, TypeError):  # an option since removed, a broken file
        return False

    def comparable(options: dict[str, Any]) -> str:
        options = {k: v for k, v in options.items() if k not in ("output_dir", "data_dir")}
        if Path(str(options["model"])).is_dir():  # --model a finished run: the same folder however named
            options["model"] = str(Path(options["model"]).resolve())
        return json.dumps(options, sort_keys=True)

    return comparable(planned) == comparable(saved)


def random_shares(run: Path) -> str | None:
    """The dev width shares of a finished run, as --width-shares text (None while it is not finished)."""
    if not finished(run):
        return None
    share = json.loads((run / "results.json").read_text())["width_share"]
    return ",".join(f"{share[w]:.4f}" for w in share)


def load_plan(path: Path) -> dict[str, Any]:
    """The plan in `path`, checked: its three tables, known keys, and runs and tasks that exist."""
    with open(path, "rb") as f:
        plan = tomllib.load(f)
    for key in ("study", "tasks", "runs"):
        if key not in plan:
            raise SystemExit(f"{path}: no [{key}] section")
    problems = []
    for kind, known, names, other, refs in (
        ("tasks", TASK_KEYS, plan["tasks"], plan["runs"], ("runs",)),
        ("runs", RUN_KEYS, plan["runs"], plan["tasks"], ("tasks",)),
    ):
        for name, spec in names.items():
            problems += [f"[{kind}.{name}] has an unknown key {k!r}" for k in spec if k not in known]
            for ref in refs:
                problems += [
                    f"[{kind}.{name}] {ref}: no such entry {x!r}" for x in spec.get(ref, ()) if x not in other
                ]
    for name, spec in plan["runs"].items():
        for ref in ("shares_from", "start_from", "reference"):
            if ref in spec and spec[ref] not in plan["runs"]:
                problems.append(f"[runs.{name}] {ref}: no run {spec[ref]!r}")
    if problems:
        raise SystemExit(f"{path}: " + "; ".join(problems))
    return plan


def trains(task: str, spec: dict[str, Any], run: str, run_spec: dict[str, Any], seed: int | None) -> bool:
    """Whether the plan trains `run` on task `task` (and `seed`)."""
    return (
        task in run_spec.get("tasks", [task])
        and run in spec.get("runs", [run])
        and (seed is None or seed in run_spec.get("seeds", [seed]))
    )


def run_dir(runs: Path, plan: dict[str, Any], task: str, run: str, seed: int | None = None) -> Path:
    return runs / plan["study"]["name"] / task / (run if seed is None else f"{run}-s{seed}")


def arguments(plan: dict[str, Any], task: str, run: str, out: Path) -> tuple[str, ...]:
    spec, run_spec = plan["tasks"][task], plan["runs"][run]
    found = ["--task", spec.get("task", task), "--data-dir", str(GLUE), "--output-dir", str(out)]
    found += ["--epochs", str(spec["epochs"])] if spec.get("epochs") and not run_spec.get("epochs") else []
    found += ["--max-seq-length", str(spec["max_seq_length"])] if "max_seq_length" in spec else []
    found += plan["study"].get("common", [])
    found += ["--max-train-samples", str(spec["max_train_samples"])] if "max_train_samples" in spec else []
    found += ["--save-every-steps", str(spec["save_every_steps"])] if spec.get("save_every_steps") else []
    found += spec.get("options", [])
    method = run_spec.get("method", "sharcs")
    found += ["--method", method] if method != "sharcs" else []
    found += run_spec.get("options", [])
    # a run's own epochs come last, so they win over an --epochs in the common or the task's options
    return (*found, *(["--epochs", str(run_spec["epochs"])] if run_spec.get("epochs") else []))


def jobs(plan: dict[str, Any], runs: Path, tasks: list[str] | None = None) -> list[Job]:
    """Every (task, seed, run) of the plan (of `tasks` only, if given) in plan order, seeds outermost after
    the first: the first seed of every task comes first, so each task has a complete comparison early."""
    found = []
    for task, spec in plan["tasks"].items():
        if tasks is not None and task not in tasks:
            continue
        for order, seed in enumerate(spec.get("seeds", [None])):
            for run, run_spec in plan["runs"].items():
                if not trains(task, spec, run, run_spec, seed):
                    continue
                out = run_dir(runs, plan, task, run, seed)
                needs = {
                    key: run_dir(runs, plan, task, run_spec[key], seed) if key in run_spec else None
                    for key in ("shares_from", "start_from")
                }
                job = Job(task, run, seed, out, arguments(plan, task, run, out), **needs)
                found.append((order, job))
    return [job for _, job in sorted(found, key=lambda item: item[0])]


def in_use(out: Path) -> bool:
    """Whether another process (e.g. a second runner's `sharcs train`) trains into `out` now: the pid in
    its lock file (sharcs.storage.lock) is alive. Read only, so it never competes for the lock."""
    from sharcs.storage.lock import LOCK_NAME

    try:
        text = (out / LOCK_NAME).read_text().strip()
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
