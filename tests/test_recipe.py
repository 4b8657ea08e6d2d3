"""The sandwich recipe (the default): its training invariants, the router fitted on held-out data, and
the FLOPs budget that calibration promises."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import GLUE_DIR, random_dataset, tiny_model

from sharcs import SharcsConfig, get_sharcs_model, load_model
from sharcs.data.collate import pad_batch
from sharcs.errors import SharcsError
from sharcs.measure.evaluation import evaluate_model
from sharcs.methods.sharcs import operating_points
from sharcs.methods.sharcs.calibration import calibrate, calibration_line, held_out_table, operating_point
from sharcs.methods.sharcs.operating_points import (
    choose_operating_point,
    drop_point,
    rule_point,
    threshold_point,
)
from sharcs.methods.sharcs.router import masked_mean
from sharcs.methods.sharcs.router_fit import fit_router, narrow_targets
from sharcs.modeling.losses import distillation_loss, task_loss
from sharcs.training.trainer import Trainer, TrainingArguments


def sandwich_model(seed: int = 0, num_labels: int = 2):
    return get_sharcs_model(
        tiny_model("bert", num_labels=num_labels, seed=seed), SharcsConfig(adaptive_layer=1)
    )


def trained(num_labels: int = 2, epochs: int = 2):
    model = sandwich_model(num_labels=num_labels)
    data = random_dataset(64, num_labels=max(num_labels, 2))
    if num_labels == 1:
        data = data.map(lambda row: {"labels": float(row["labels"]) * 2.0})
    args = TrainingArguments(
        epochs=epochs, batch_size=16, lr=1e-3, label_range=2.0 if num_labels == 1 else None
    )
    Trainer(model, data, args).train()
    return model


def test_every_sample_trains_at_full_width_and_the_router_is_left_alone():
    model = sandwich_model()
    trainer = Trainer(model, random_dataset(40), TrainingArguments(epochs=1, batch_size=8))
    steps, assignment = trainer.plan_epoch(0)
    assert trainer.hooks.sandwich and trainer.hooks.labeler is None
    assert assignment.tolist() == [1] * 40  # width index 1: full width, every sample
    assert sorted(i for step in steps for _, batch in step.batches for i in batch) == list(range(40))
    router = {k: v.clone() for k, v in model.router.state_dict().items()}
    backbone = model.base.bert.encoder.layer[0].attention.self.query.weight.clone()
    trainer.train()
    assert all(torch.equal(v, model.router.state_dict()[k]) for k, v in router.items())
    assert not torch.equal(backbone, model.base.bert.encoder.layer[0].attention.self.query.weight)


def first_sandwich_step(args: TrainingArguments, num_labels: int = 2, rows: int = 8):
    """A sandwich model, a Trainer on `rows` random rows, its first step, a reference copy of the model in
    train mode, and that step's batch without index and labels, and its labels."""
    data = random_dataset(rows)
    if num_labels == 1:
        data = data.map(lambda row: {"labels": float(row["labels"]) * 2.0})
    model = sandwich_model(num_labels=num_labels)
    trainer = Trainer(model, data, args)
    steps, _ = trainer.plan_epoch(0)
    reference = sandwich_model(num_labels=num_labels)
    reference.load_state_dict(model.state_dict())
    reference.train()
    batch = pad_batch(data[steps[0].batches[0][1]], 0)
    batch.pop("index")
    labels = batch.pop("labels")
    return model, trainer, steps[0], reference, batch, labels


@pytest.mark.parametrize(
    ("narrow_weight", "num_labels", "weight"),
    [(1.0, 2, 1.0), (0.25, 2, 0.25), (None, 2, 1.0), (None, 1, 0.25), (1.0, 1, 1.0)],
)
def test_a_sandwich_step_is_full_width_loss_plus_distillation_from_a_detached_teacher(
    narrow_weight: float | None, num_labels: int, weight: float
) -> None:
    """The full width's gradient is the plain fine-tuning one; the narrow path adds only its own
    distillation term (times --narrow-weight: by default 1 for classification, 0.25 for regression),
    whose teacher is a constant (no gradient flows back through the full logits)."""
    args = TrainingArguments(epochs=1, batch_size=8, max_grad_norm=0.0, lr=1e-3, narrow_weight=narrow_weight)
    assert args.narrow_loss_weight(regression=num_labels == 1) == weight
    model, trainer, step, reference, batch, labels = first_sandwich_step(args, num_labels)
    torch.manual_seed(5)
    full = reference(**batch, width=1.0).logits
    teacher = full.detach().clone()
    narrow = reference(**batch, width=0.25).logits
    narrow_loss = 0.5 * distillation_loss(narrow, teacher) + 0.5 * task_loss(narrow, labels)
    (task_loss(full, labels) + weight * narrow_loss).backward()  # narrow_label_weight 0.5, the default
    torch.manual_seed(5)
    model.train()
    trainer.optimizer.zero_grad()
    trainer.train_step(step, 0.0)  # learning rate factor 0: gradients computed, weights unchanged
    for (name, p), q in zip(model.named_parameters(), reference.parameters(), strict=True):
        if q.grad is None:
            assert p.grad is None or not p.grad.any(), name
        else:
            assert torch.allclose(p.grad, q.grad, atol=1e-6), name


def test_a_projected_sandwich_step_never_pulls_a_weight_tensor_against_the_full_widths_gradient() -> None:
    """--narrow-gradient project: the full width's gradient is kept whole; the narrow path's is added per
    parameter tensor, minus its component along the full width's where the two point apart."""
    args = TrainingArguments(epochs=1, batch_size=8, max_grad_norm=0.0, lr=1e-3, narrow_gradient="project")
    model, trainer, step, reference, batch, labels = first_sandwich_step(args)
    torch.manual_seed(5)
    full = reference(**batch, width=1.0).logits
    narrow = reference(**batch, width=0.25).logits
    narrow_loss = 0.5 * distillation_loss(narrow, full.detach()) + 0.5 * task_loss(narrow, labels)
    parameters = list(reference.parameters())
    g_full = torch.autograd.grad(task_loss(full, labels), parameters, allow_unused=True)
    g_narrow = torch.autograd.grad(narrow_loss, parameters, allow_unused=True)
    torch.manual_seed(5)
    model.train()
    trainer.optimizer.zero_grad()
    trainer.train_step(step, 0.0)
    projected = 0
    for (name, p), f, n in zip(model.named_parameters(), g_full, g_narrow, strict=True):
        if f is None or n is None:
            expected = f if n is None else n
        elif torch.sum(f * n) < 0:
            projected += 1
            expected = f + n - torch.sum(f * n) / torch.sum(f * f) * f
            assert torch.sum(p.grad * f) >= torch.sum(f * f) * (1 - 1e-4), name  # never against full width
        else:
            expected = f + n
        if expected is None:
            assert p.grad is None or not p.grad.any(), name
        else:
            assert torch.allclose(p.grad, expected, atol=1e-6), name
    assert projected > 0  # the narrow path did point against the full width somewhere, and was corrected
    with pytest.raises(SharcsError, match="narrow_gradient: must be sum or project"):
        TrainingArguments(narrow_gradient="mean")


def test_fitting_the_router_changes_only_the_router_and_learns_its_targets():
    model = trained()
    data = random_dataset(64, seed=3)
    before = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("router.")}
    router_before = {k: v.clone() for k, v in model.router.state_dict().items()}
    features = torch.stack(
        [
            masked_mean(model.encode_prefix(b["input_ids"], b["attention_mask"]), b["attention_mask"])[0]
            for b in (pad_batch(data[[i]], 0) for i in range(len(data)))
        ]
    ).detach()
    table = held_out_table(model, data)
    fit = fit_router(model, features, table, list(range(32)), list(range(32, 64)))
    after = model.state_dict()
    assert all(torch.equal(v, after[k]) for k, v in before.items())
    assert not all(torch.equal(v, model.router.state_dict()[k]) for k, v in router_before.items())
    assert fit["router_fit_samples"] == 32 and fit["router_fit_step"] > 0
    with pytest.raises(SharcsError, match="needs at least 2 rows to fit on"):
        fit_router(model, features, table, [0], [1])
    targets = narrow_targets(table)
    assert set(targets.tolist()) <= {0.0, 1.0}
    narrow, full = torch.tensor(table["prediction_narrow"]), torch.tensor(table["prediction_full"])
    labels = torch.tensor(table["labels"])
    assert targets.tolist() == (~((narrow != labels) & (full == labels))).float().tolist()


@pytest.mark.parametrize("budget", [0.45, 0.6, 0.8])
def test_the_calibrated_model_meets_the_budget_and_scores_what_the_table_says(budget):
    model = trained()
    data = random_dataset(60, seed=4)
    summary = calibrate(model, data, budget, "accuracy", seed=0, batch_size=7)
    chosen = summary["chosen"]
    assert chosen["met"] and chosen["cost"] <= budget + 1e-9
    assert {p["rule"] for p in summary["points"]} == {"tau", "cascade"}
    assert model.config.routing == chosen["rule"]
    rows = model.calibration["calibration_rows"]
    evaluation = evaluate_model(model, data.select(rows), ("accuracy",), batch_size=5)
    # the routed model does exactly what the table predicted on those rows: same metric, same FLOPs
    assert evaluation.metrics["accuracy"] == pytest.approx(chosen["metric"])
    assert 1.0 / evaluation.flops_reduction == pytest.approx(chosen["cost"], rel=1e-9)
    assert 1.0 / evaluation.flops_reduction <= budget + 1e-9
    assert evaluation.width_share["1.0"] == pytest.approx(chosen["full_share"])


def test_a_tighter_budget_sends_fewer_samples_to_full_width():
    model = trained()
    table = held_out_table(model, random_dataset(60, seed=4))
    for rule in ("tau", "cascade"):
        shares = [rule_point(table, rule, b, "accuracy").full_share for b in (0.3, 0.5, 0.7, 1.0)]
        assert shares == sorted(shares) and shares[-1] > shares[0]
    cheapest = rule_point(table, "tau", 0.01, "accuracy")
    assert not cheapest.met and cheapest.full_share == 0.0
    with pytest.raises(SharcsError, match="--flops-budget: must lie in"):
        choose_operating_point(table, 1.5, "accuracy")


def test_regression_calibrates_the_router_only():
    model = trained(num_labels=1)
    data = random_dataset(40, seed=2).map(lambda row: {"labels": float(row["labels"]) * 2.0})
    summary = calibrate(model, data, 0.5, "pearson", seed=1)
    assert [p["rule"] for p in summary["points"]] == ["tau"] and model.config.routing == "tau"
    targets = narrow_targets(model.calibration)
    assert targets.min() >= 0.0 and targets.max() <= 1.0 and len(set(targets.tolist())) > 2
    with pytest.raises(SharcsError, match="class probabilities"):
        rule_point(model.calibration, "cascade", 0.5, "pearson")


def test_the_table_is_saved_with_the_model_and_gives_operating_points_without_data(tmp_path: Path):
    model = trained()
    calibrate(model, random_dataset(60, seed=4), 0.5, "accuracy", seed=0)
    model.save_pretrained(tmp_path / "m")
    assert json.loads((tmp_path / "m" / "calibration.json").read_text())["version"] == 1
    loaded = load_model(tmp_path / "m")
    assert loaded.calibration == json.loads(json.dumps(model.calibration))
    assert loaded.config == model.config
    point = operating_point(loaded, 0.45)
    assert point.cost <= 0.45 and loaded.config == model.config  # arguments, not a changed config
    assert point.arguments() == {point.rule: point.threshold}
    batch = {k: torch.tensor(v) for k, v in random_dataset(1, seed=5)[:1].items() if k != "index"}
    with torch.no_grad():
        out = loaded.eval()(**batch, **point.arguments())
    assert out.routes.item() in (0.25, 1.0)
    (tmp_path / "m" / "calibration.json").write_text('{"version": 1, "labels": []}')
    broken = load_model(tmp_path / "m")
    with pytest.raises(SharcsError, match="calibration.json"):
        operating_point(broken, 0.5)
    plain = get_sharcs_model(tiny_model("bert"), SharcsConfig(adaptive_layer=1))
    with pytest.raises(SharcsError, match="no calibration table"):
        operating_point(plain, 0.5)


@pytest.mark.skipif(not (GLUE_DIR / "SST-2").is_dir(), reason="GLUE data not found")
def test_cli_default_recipe_budget_knob_and_plain_summary(tiny_dir, tmp_path: Path, capsys) -> None:
    from sharcs.cli import main as cli

    out = tmp_path / "run"
    args = ["train", "--model", tiny_dir, "--output-dir", out, "--task", "sst2", "--data-dir", GLUE_DIR]
    args += ["--max-train-samples", 80, "--max-eval-samples", 40, "--epochs", 1, "--max-seq-length", 32]
    args += ["--held-out-fraction", 0.3, "--router-hidden-size", 16]
    assert cli.main([str(a) for a in args]) == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    assert "saves nothing" not in printed
    assert (out / "model" / "calibration.json").is_file()
    results = json.loads((out / "results.json").read_text())
    assert results["flops_reduction"] > 1.2  # the default budget is half the full model's FLOPs
    # epochs compare on the calibration rows, not on the half of the held-out slice the router was fitted on
    history = json.loads((out / "history.json").read_text())
    assert results["selected_on"] == "calibration_accuracy"
    assert all(r["calibration_accuracy"] == r["calibration"]["chosen"]["metric"] for r in history)
    assert all(r["calibration_cost"] == r["calibration"]["chosen"]["cost"] for r in history)
    for budget in ("0.3", "0.8"):
        assert cli.main(["evaluate", str(out), "--json", "--flops-budget", budget]) == 0
        report = json.loads(capsys.readouterr().out)
        assert report["flops_budget"] == float(budget) and report["routing"] in ("tau", "cascade")
    # --max-drop: the cheapest routing within D of full width on the calibration rows
    table = json.loads((out / "model" / "calibration.json").read_text())
    full = choose_operating_point(table, 1.0, "accuracy", table["calibration_rows"])[0].metric
    assert cli.main(["evaluate", str(out), "--json", "--max-drop", "0.05"]) == 0
    report = json.loads(capsys.readouterr().out)
    point = operating_point(load_model(out / "model"), None, max_drop=0.05)
    assert report["max_drop"] == 0.05 and report["routing"] == point.rule
    assert point.max_drop == 0.05 and point.metric >= full - 0.05 - 1e-9
    assert cli.main(["evaluate", str(out), "--flops-budget", "0.5", "--tau", "0.3"]) == 2
    assert "one of --tau, --cascade, --flops-budget and --max-drop" in capsys.readouterr().err
    for bad in (["--flops-budget", "0.5", "--max-drop", "0.01"], ["--width", "0.25", "--max-drop", "0.01"]):
        assert cli.main(["evaluate", str(out), *bad]) == 2
        assert "give " in capsys.readouterr().err
    assert cli.main(["evaluate", str(out), "--flops-budget", "1.5"]) == 2
    assert "--flops-budget: must lie in (0, 1]" in capsys.readouterr().err
    assert cli.main(["predict", str(out), "--max-drop", "-0.1", "a fine film"]) == 2
    assert "--max-drop: must lie in [0, 1]" in capsys.readouterr().err

    # a cascade that re-runs every sample saves nothing, and the summary says so plainly
    args[4] = tmp_path / "nothing"
    assert cli.main([str(a) for a in args] + ["--method", "cascade", "--cascade-confidence", "1.0"]) == 0
    assert "this run saves nothing" in capsys.readouterr().out


def test_recipe_option_errors(tiny_dir, tmp_path: Path, capsys) -> None:
    from sharcs.cli import main as cli

    base = ["train", "--model", str(tiny_dir), "--output-dir", str(tmp_path / "x"), "--task", "sst2"]
    cases = [
        (["--recipe", "paper", "--epochs", "2", "--window", "2"], "the router only trains once"),
        (["--widths", "0.25,0.5,1.0", "--threshold", "0.9,0.7"], "routes between two widths"),
        (["--distill-narrow"], "are for --recipe paper"),
        (["--held-out-fraction", "0"], "--held-out-fraction must be above 0"),
        (["--data-dir", str(GLUE_DIR), "--max-train-samples", "20"], "it needs 4 or more"),
        (["--flops-budget", "0"], "--flops-budget: must lie in (0, 1]"),
        (["--max-drop", "1.5"], "--max-drop: must lie in [0, 1]"),
        (["--max-drop", "0.01", "--recipe", "paper"], "--max-drop calibrates the routing of --method sharcs"),
        (["--max-drop", "0.01", "--method", "full"], "--max-drop calibrates the routing of --method sharcs"),
        (["--narrow-gradient", "project", "--recipe", "paper"], "--narrow-gradient project is for --recipe"),
    ]
    for extra, message in cases:
        assert cli.main([*base, *extra]) == 2
        assert message in capsys.readouterr().err


def synthetic_table(router_score: list[float], narrow_confidence: list[float]) -> dict:
    """Ten samples: the narrow path is wrong on the first four, full width always right; both paths
    cost the same whatever the rule, so only the ranking decides."""
    n = 10
    return {
        "version": 1,
        "regression": False,
        "labels": [1.0] * n,
        "prediction_narrow": [0.0] * 4 + [1.0] * 6,
        "prediction_full": [1.0] * n,
        "full_model_flops": [10.0] * n,
        "flops": {"tau_narrow": [3.0] * n, "tau_full": [10.0] * n, "cascade_narrow": [3.0] * n,
                  "cascade_full": [10.0] * n},
        "router_score": router_score,
        "narrow_confidence": narrow_confidence,
    }  # fmt: skip


def test_the_cascade_is_kept_unless_the_router_is_clearly_better():
    # budget 0.65: 5 of 10 samples can go to full width (3 + 5 * 7 / 10 per sample <= 6.5)
    good = [0.1, 0.2, 0.3, 0.4, 0.9, 0.8, 0.7, 0.6, 0.95, 0.85]  # ranks the four wrong ones first
    poor = [0.1, 0.9, 0.8, 0.7, 0.2, 0.3, 0.4, 0.6, 0.95, 0.85]  # finds one of them
    confident_wrong = [0.1, 0.2, 0.3, 0.99, 0.4, 0.8, 0.7, 0.6, 0.95, 0.85]  # the cascade finds three
    chosen, points = choose_operating_point(synthetic_table(good, confident_wrong), 0.65, "accuracy")
    assert [p.metric for p in points] == [1.0, 0.9] and chosen.rule == "tau"  # better by 10 points
    chosen, points = choose_operating_point(synthetic_table(poor, confident_wrong), 0.65, "accuracy")
    assert points[0].metric < points[1].metric and chosen.rule == "cascade"
    chosen, _ = choose_operating_point(synthetic_table(good, good), 0.65, "accuracy")
    assert chosen.rule == "cascade"  # a tie keeps the cascade
    assert all(p.cost <= 0.65 for p in points)


def test_max_drop_keeps_the_cheapest_routing_within_the_drop_and_prefers_the_cascade_on_ties(monkeypatch):
    monkeypatch.setattr(operating_points, "DROP_Z", 0.0)  # the walk alone; the noise margin is tested below
    good = [0.1, 0.2, 0.3, 0.4, 0.9, 0.8, 0.7, 0.6, 0.95, 0.85]  # ranks the four wrong ones first
    confident_wrong = [0.1, 0.2, 0.3, 0.99, 0.4, 0.8, 0.7, 0.6, 0.95, 0.85]  # one wrong one ranked last
    table = synthetic_table(good, confident_wrong)
    # no drop allowed: the router sends exactly the four wrong ones to full width (4 x 10 + 6 x 3 FLOPs);
    # the cascade would answer its most confident (wrong) sample narrow first, so it keeps all at full
    chosen, (tau, cascade) = choose_operating_point(table, None, "accuracy", max_drop=0.0)
    assert (tau.full_share, tau.metric, tau.cost) == (0.4, 1.0, pytest.approx(0.58))
    assert (cascade.full_share, cascade.cost) == (1.0, 1.0) and chosen is tau
    assert chosen.max_drop == 0.0 and chosen.budget == chosen.cost and chosen.met
    # a 10-point drop: both reach 3 of 10 at full width (0.51 of the FLOPs); the tie keeps the cascade
    chosen, (tau, cascade) = choose_operating_point(table, None, "accuracy", max_drop=0.1)
    assert tau.cost == cascade.cost == pytest.approx(0.51) and chosen is cascade
    assert chosen.metric == pytest.approx(0.9)
    with pytest.raises(SharcsError, match="--max-drop: must lie in"):
        choose_operating_point(table, None, "accuracy", max_drop=-0.1)
    with pytest.raises(SharcsError, match="a --flops-budget or a --max-drop"):
        choose_operating_point(table, None, "accuracy")


def test_a_threshold_applied_to_a_table_reproduces_the_point_it_came_from():
    table = held_out_table(trained(), random_dataset(60, seed=4))
    for rule in ("tau", "cascade"):
        for budget in (0.4, 0.7):
            point = rule_point(table, rule, budget, "accuracy")
            again = threshold_point(table, rule, point.threshold, "accuracy")
            assert again.metric == point.metric and again.full_share == point.full_share
            assert again.cost == point.cost


def test_max_drop_stops_at_the_first_fall_below_the_floor(monkeypatch):
    """Walking from every sample at full width towards the cheap path, the point kept is the last one
    before the metric first drops below the floor, even when a cheaper point is above it again."""
    monkeypatch.setattr(operating_points, "DROP_Z", 0.0)
    table = synthetic_table([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95], [0.5] * 10)
    # the highest-scored sample is wrong on the narrow path; the next one is wrong at full width only
    table["prediction_narrow"] = [1.0] * 8 + [1.0, 0.0]
    table["prediction_full"] = [1.0] * 8 + [0.0, 1.0]
    point = drop_point(table, "tau", 0.05, "accuracy")
    assert point.full_share == 1.0  # one step down loses 10 points; two steps would recover them
    assert drop_point(table, "tau", 0.1, "accuracy").full_share == 0.0  # 0.8 (the floor), then 0.9


@pytest.mark.parametrize(("differing", "all_narrow"), [(4, True), (16, False)])
def test_max_drop_keeps_a_margin_for_the_noise_of_the_rows_the_narrow_answers_change(differing, all_narrow):
    """400 rows on which the narrow path is as accurate as full width but answers `differing` of them
    otherwise (half right, half wrong): every sample narrow drops nothing on these rows, and is kept
    within a 1-point drop only while 1.645 x sqrt(differing) / 400 stays below the point."""
    n = 400
    table = synthetic_table([i / n for i in range(n)], [0.5] * n)
    table = {**table, "labels": [1.0] * n, "prediction_full": [1.0] * n, "full_model_flops": [10.0] * n}
    table["flops"] = {k: [v[0]] * n for k, v in table["flops"].items()}
    # full width is wrong on rows 0, 2, ...; the narrow path is right there and wrong on rows 1, 3, ...
    half = differing // 2
    table["prediction_full"] = [0.0 if i < differing and i % 2 == 0 else 1.0 for i in range(n)]
    table["prediction_narrow"] = [0.0 if i < differing and i % 2 == 1 else 1.0 for i in range(n)]
    assert table["prediction_full"].count(0.0) == table["prediction_narrow"].count(0.0) == half
    point = drop_point(table, "tau", 0.01, "accuracy")
    assert (point.full_share == 0.0) == all_narrow
    assert point.metric == pytest.approx(1 - half / n)  # the walk never lost accuracy on these rows


@pytest.mark.parametrize("max_drop", [0.0, 0.05])
def test_a_model_calibrated_with_max_drop_scores_within_it_on_the_calibration_rows(max_drop):
    model = trained()
    data = random_dataset(60, seed=4)
    summary = calibrate(model, data, None, "accuracy", seed=0, batch_size=7, max_drop=max_drop)
    chosen = summary["chosen"]
    rows = model.calibration["calibration_rows"]
    full = evaluate_model(model, data.select(rows), ("accuracy",), batch_size=5, width=1.0)
    routed = evaluate_model(model, data.select(rows), ("accuracy",), batch_size=5)
    assert routed.metrics["accuracy"] == pytest.approx(chosen["metric"])
    assert routed.metrics["accuracy"] >= full.metrics["accuracy"] - max_drop - 1e-9
    assert 1.0 / routed.flops_reduction == pytest.approx(chosen["cost"], rel=1e-9)
    assert "--max-drop" in calibration_line(summary, "accuracy")


def test_train_options_record_the_narrow_weight_their_head_trains_with() -> None:
    """`sharcs train` resolves --narrow-weight's default from the labels' kind, so run_config.json names the
    weight used, and a run saved before the default depended on the head (weight 1.0 written) still
    resumes as a classifier."""
    from sharcs.cli.checks import check_resumable
    from sharcs.training.options import TrainOptions

    assert TrainOptions(output_dir="x", task="sst2").narrow_weight == 1.0
    assert TrainOptions(output_dir="x", task="stsb").narrow_weight == 0.25
    assert TrainOptions(output_dir="x", task="stsb", narrow_weight=1.0).narrow_weight == 1.0
    files = {"train_file": "t.csv", "validation_file": "v.csv"}
    assert TrainOptions(output_dir="x", regression=True, **files).narrow_weight == 0.25
    saved = TrainOptions(output_dir="x", task="sst2", narrow_weight=1.0)
    check_resumable(saved, TrainOptions(output_dir="x", task="sst2"), continuing=True)
    with pytest.raises(SharcsError, match="--narrow-weight is 0.25 here and 1.0"):
        check_resumable(
            TrainOptions(output_dir="x", task="stsb", narrow_weight=1.0),
            TrainOptions(output_dir="x", task="stsb"),
            continuing=True,
        )
