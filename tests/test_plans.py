"""The study plans (benchmarks/plans/*.toml): every job they make is a valid `sharcs train` command line,
and a run's own `epochs` is the one it trains for, whatever --epochs the study or task options carry."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from sharcs.cli.parser import build_parser

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))
from plan import jobs, load_plan  # noqa: E402

PLANS = sorted((BENCHMARKS / "plans").glob("*.toml"))


@pytest.mark.parametrize("path", PLANS, ids=[p.stem for p in PLANS])
def test_every_job_of_a_plan_parses_and_trains_for_its_runs_epochs(path: Path, tmp_path: Path) -> None:
    plan = load_plan(path)
    found = jobs(plan, tmp_path)
    assert found, f"{path.name} makes no jobs"
    parser = build_parser()
    for job in found:
        args = parser.parse_args(job.command(placeholder=True)[3:])  # after `python -m sharcs`
        assert args.command == "train"
        epochs = plan["runs"][job.run].get("epochs")
        if epochs is not None:
            assert args.epochs == epochs, f"{job.label} trains {args.epochs} epochs, its run says {epochs}"


def test_the_recipe_plan_holds_the_case_a_runs_epochs_must_win(tmp_path: Path) -> None:
    """A study-wide --epochs and a run with epochs of its own, so the test above checks the precedence."""
    plan = load_plan(BENCHMARKS / "plans" / "recipe.toml")
    assert "--epochs" in plan["study"]["common"]
    assert any(plan["runs"][job.run].get("epochs") for job in jobs(plan, tmp_path))
