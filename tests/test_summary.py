"""The sentences a training run gives its user (sharcs.training.summary): each speaks exactly when its
figures say something is off, and names the option to try."""

from __future__ import annotations

import pytest

from sharcs.training.options import TrainOptions
from sharcs.training.summary import (
    COLLAPSED_TOP_CLASS_SHARE,
    FEW_CALIBRATION_ROWS,
    LARGE_DROP,
    NOTHING_SAVED,
    collapsed_note,
    drop_note,
    epoch_line,
    few_calibration_note,
    savings_note,
)


def _results(reduction: float, full_share: float) -> dict:
    return {"flops_reduction": reduction, "width_share": {"0.25": 1 - full_share, "1.0": full_share}}


@pytest.mark.parametrize(
    ("fields", "names"),
    [
        ({}, "--flops-budget 0.5"),
        ({"recipe": "paper"}, "--window 2"),
        ({"method": "cascade"}, "--cascade-confidence"),
        ({"max_drop": 0.01}, "within --max-drop 0.01 of full width"),
    ],
)
def test_a_run_that_saves_nothing_says_so_with_what_to_try(fields: dict[str, str], names: str) -> None:
    options = TrainOptions(output_dir="x", task="sst2", flops_budget=0.5, **fields)
    note = savings_note(_results(1.0, 1.0), options)
    assert note is not None and note.startswith("this run saves nothing: 1.00x fewer FLOPs, 100% of dev")
    assert names in note
    assert savings_note(_results(NOTHING_SAVED, 0.9), options) is None  # it saved something


def test_baselines_that_are_not_meant_to_save_get_no_savings_note() -> None:
    assert savings_note(_results(1.0, 1.0), TrainOptions(output_dir="x", task="sst2", method="full")) is None


def test_collapse_and_few_calibration_rows_are_warned_at_their_thresholds() -> None:
    assert collapsed_note(None, 0.25) is None  # regression: no classes
    assert collapsed_note(COLLAPSED_TOP_CLASS_SHARE - 0.01, 0.25) is None
    note = collapsed_note(1.0, 0.25)
    assert note is not None and "at width 0.25 the model gives one class to 100.0%" in note
    enough = {"router_fit_samples": 100, "calibration_samples": FEW_CALIBRATION_ROWS}
    assert few_calibration_note(enough) is None
    note = few_calibration_note({"router_fit_samples": 40, "calibration_samples": 40})
    assert note is not None and "fitted on 40 and the budget calibrated on 40" in note


def test_a_budget_far_below_full_width_on_held_out_rows_is_reported_with_the_one_point_cost() -> None:
    def calibration(routed: float, max_drop: float | None = None) -> dict:
        chosen = {"budget": 0.5, "metric": routed, "max_drop": max_drop}
        return {"chosen": chosen, "full_width_metric": 0.8, "one_point_drop": {"cost": 0.8}}

    note = drop_note(calibration(0.635), "accuracy", "runs/x")
    assert note is not None and "16.5 points below its full width's 0.8000" in note
    assert "saves 1.25x: `sharcs evaluate runs/x --max-drop 0.01`" in note
    assert drop_note(calibration(0.8 - LARGE_DROP / 2), "accuracy", "runs/x") is None  # close enough
    assert drop_note(calibration(0.6, max_drop=0.2), "accuracy", "runs/x") is None  # asked for it
    assert drop_note(None, "accuracy", "runs/x") is None  # not calibrated (baselines, the paper recipe)


def test_the_epoch_line_shows_a_calibrated_runs_held_out_score_on_its_calibration_half() -> None:
    from sharcs.data.prepare import TaskInfo

    info = TaskInfo("sst2", ("sentence",), "label", ("0", "1"), ("accuracy",), "dev", 64)
    record = {"train_loss": 0.5, "heldout_accuracy": 0.715, "dev_accuracy": 0.63, "flops_reduction": 2.0}
    record["dev_width_share"] = {"0.25": 0.75, "1.0": 0.25}
    assert "held-out accuracy 0.7150 |" in epoch_line(1, record, info)
    line = epoch_line(1, {**record, "calibration_accuracy": 0.6}, info)
    assert "held-out accuracy 0.6000 (calibration half)" in line and "0.7150" not in line
