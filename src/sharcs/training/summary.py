"""What a training run tells its user in words: the line per epoch, and the warnings when the numbers
say something is off (a budget calibrated on few rows, a collapsed narrow path, a run that saves nothing).

Each function takes the figures a run already has and returns a sentence, or None when there is nothing
to say; `sharcs.training.run` decides where the sentence goes (train.log, results.json, the terminal).
"""

from __future__ import annotations

from typing import Any

from sharcs.data.prepare import TaskInfo
from sharcs.measure.evaluation import reduction_text, share_text
from sharcs.training.options import TrainOptions

FEW_CALIBRATION_ROWS = 100  # fewer held-out rows than this make the calibrated budget a rough guess
COLLAPSED_TOP_CLASS_SHARE = 0.98  # the narrow path answering one class this often has collapsed
NOTHING_SAVED = 1.05  # a FLOPs reduction below this is reported as saving nothing
LARGE_DROP = 0.02  # a calibrated budget costing more than this below full width (held out) is reported


def epoch_line(epoch: int, record: dict[str, Any], info: TaskInfo) -> str:
    """One epoch's losses, held-out and dev scores, cost and routes, for the log."""
    main = info.main_metric
    parts = [f"epoch {epoch}: train loss {record['train_loss']:.4f}"]
    if f"calibration_{main}" in record:  # the half of the held-out slice the router was not fitted on
        parts.append(f"held-out {main} {record[f'calibration_{main}']:.4f} (calibration half)")
    elif f"heldout_{main}" in record:
        parts.append(f"held-out {main} {record[f'heldout_{main}']:.4f}")
    if f"heldout_narrowest_{main}" in record:
        parts.append(f"held-out at narrowest width {main} {record[f'heldout_narrowest_{main}']:.4f}")
    parts.append(f"dev {main} {record[f'dev_{main}']:.4f}")
    parts.append(f"FLOPs {reduction_text(record['flops_reduction'])} fewer")
    parts.append(f"dev routes {share_text(record['dev_width_share'])}")
    return " | ".join(parts)


def few_calibration_note(calibration: dict[str, Any]) -> str | None:
    """A warning when the router was fitted and the budget calibrated on too few held-out rows."""
    if calibration["calibration_samples"] >= FEW_CALIBRATION_ROWS:
        return None
    return (
        f"the router is fitted on {calibration['router_fit_samples']} and the budget calibrated on "
        f"{calibration['calibration_samples']} held-out samples: on new data the cost and accuracy "
        "will differ from these; more training data or a larger --held-out-fraction helps"
    )


def collapsed_note(top_class_share: float | None, narrowest: float) -> str | None:
    """A warning when the narrowest width gives (almost) every held-out sample the same class."""
    if top_class_share is None or top_class_share < COLLAPSED_TOP_CLASS_SHARE:
        return None
    return (
        f"at width {narrowest} the model gives one class to {100 * top_class_share:.1f}% of held-out "
        "samples: the narrow path has collapsed, so whatever routes samples there decides their class (it "
        "may recover in later epochs; else try more data or epochs, --keep-residual where it is off, or a "
        "wider narrowest width; see docs/notes/recipe-findings.md)"
    )


def drop_note(calibration: dict[str, Any] | None, metric: str, out: str) -> str | None:
    """A warning when the routing calibrated to --flops-budget scores far (LARGE_DROP) below the model's
    own full width on the held-out calibration rows, with what --max-drop 0.01 would cost instead."""
    if calibration is None or "full_width_metric" not in calibration:
        return None
    chosen, full = calibration["chosen"], calibration["full_width_metric"]
    if chosen.get("max_drop") is not None or full - chosen["metric"] <= LARGE_DROP:
        return None
    one = calibration["one_point_drop"]
    return (
        f"at --flops-budget {chosen['budget']:g} the routed model's held-out {metric} is "
        f"{chosen['metric']:.4f}, {100 * (full - chosen['metric']):.1f} points below its full width's "
        f"{full:.4f}: on this task the narrow path cannot answer that many samples well. Within 1 point of "
        f"full width it saves "
        f"{1 / one['cost']:.2f}x: `sharcs evaluate {out} --max-drop 0.01` (or train with --max-drop 0.01)"
    )


def savings_note(results: dict[str, Any], options: TrainOptions) -> str | None:
    """A plain sentence when a SHARCS run saves (almost) nothing on dev, with the likely reason and what
    to try; None otherwise (and for the baselines that are not meant to save)."""
    if options.method not in ("sharcs", "cascade") or results["flops_reduction"] >= NOTHING_SAVED:
        return None
    full = 100 * results["width_share"].get("1.0", 0.0)
    head = (
        f"this run saves nothing: {results['flops_reduction']:.2f}x fewer FLOPs, {full:.0f}% of dev samples "
        "ran at full width"
    )
    if options.method == "cascade":
        return (
            f"{head}, because the narrowest width's confidence is below --cascade-confidence "
            f"{options.cascade_confidence:g} for them; try a lower --cascade-confidence, or --method sharcs "
            "with a --flops-budget"
        )
    if options.recipe == "paper":
        return (
            f"{head}, because the paper recipe labelled those samples hard (their confidence did not stay "
            f"above --threshold over --window {options.window} epochs); try the default --recipe sandwich "
            "with --flops-budget 0.5, a lower --threshold, or more epochs"
        )
    narrowest = min(options.widths)
    check = f"check that the narrowest width learns the task (sharcs evaluate RUN --width {narrowest:g})"
    if options.max_drop is not None:
        return (
            f"{head}: no cheaper routing kept the held-out metric within --max-drop {options.max_drop:g} of "
            f"full width; {check}, allow a larger --max-drop, or set a cost with --flops-budget (accepting "
            "the drop it brings)"
        )
    return (
        f"{head} at --flops-budget {options.flops_budget:g}; lower the budget (e.g. --flops-budget 0.5) "
        f"or {check}"
    )
