"""EarlyExitModel (DeeBERT, PABEE) on tiny random bert/roberta/distilbert: exactness, per-sample exits,
FLOPs, the two training schemes, save/load and errors."""

from __future__ import annotations

import pytest
import torch
from conftest import random_batch, tiny_model

from sharcs import SharcsError, load_model
from sharcs.methods.early_exit import EarlyExitConfig, EarlyExitModel
from sharcs.modeling.adaptive import embed
from sharcs.modeling.flops import flop_counter

ENTROPY_THRESHOLDS = (0.1, 0.3, 0.5, 0.7, 0.9)
PATIENCES = (1, 2)


def spread_model(model_type: str, config: EarlyExitConfig, batch: dict[str, torch.Tensor]) -> EarlyExitModel:
    """Large random weights and exit classifiers centred on `batch`, so that its samples exit at
    different layers: the first of a few seeds whose model sends the batch's samples (under the rule's
    settings) out at three or more layers."""
    for seed in range(10):
        model = _spread_model(model_type, config, batch, seed)
        with torch.no_grad():
            routes = {r for kwargs in settings(config.rule) for r in model(**batch, **kwargs).routes.tolist()}
        if len(routes) >= 3:
            break
    return model


def _spread_model(
    model_type: str, config: EarlyExitConfig, batch: dict[str, torch.Tensor], seed: int
) -> EarlyExitModel:
    base = tiny_model(model_type, num_labels=3, seed=seed)
    with torch.no_grad():
        for module in base.modules():
            if isinstance(module, torch.nn.Linear):
                module.weight.normal_(0.0, 0.15)
    model = EarlyExitModel(base, config).eval()
    with torch.no_grad():
        hidden = embed(model, batch["input_ids"], None)
        for index, (weights, head) in enumerate(zip(model.layer_weights(), model.exits, strict=True)):
            hidden = model.run_layer(hidden, batch["attention_mask"], index, weights)
            pooled = head.features(hidden[:, 0])
            spread = (pooled - pooled.mean(0)).norm(dim=1).mean()
            head.classifier.weight.normal_(0.0, 1.0 / float(spread))
            head.classifier.bias.copy_(-head.classifier.weight @ pooled.mean(0))
    return model


def settings(rule: str) -> list[dict]:
    if rule == "entropy":
        return [{"entropy_threshold": t} for t in ENTROPY_THRESHOLDS]
    return [{"patience": p} for p in PATIENCES]


@pytest.mark.parametrize("config", [EarlyExitConfig(patience=4), EarlyExitConfig("entropy", 0.0)])
def test_without_early_exits_the_model_is_the_base_model(model_type, config):
    base = tiny_model(model_type, num_labels=3)
    model = EarlyExitModel(base, config).eval()
    batch = random_batch()
    with torch.no_grad():
        expected = base(**batch).logits
        out = model(**batch)
    assert (out.logits - expected).abs().max() <= 1e-5
    assert out.routes.tolist() == [4.0] * 5


@pytest.mark.parametrize("rule", ["entropy", "patience"])
def test_batched_exits_equal_per_sample_exits(model_type, rule):
    batch = random_batch(batch=8, length=14)
    model = spread_model(model_type, EarlyExitConfig(rule), batch)
    exit_layers = set()
    with torch.no_grad():
        for kwargs in settings(rule):
            together = model(**batch, **kwargs)
            exit_layers |= set(together.routes.tolist())
            for i in range(8):
                real = int(batch["attention_mask"][i].sum())
                alone = model(batch["input_ids"][i : i + 1, :real], **kwargs)
                assert alone.routes.item() == together.routes[i].item()
                assert (alone.logits[0] - together.logits[i]).abs().max() <= 1e-5
    assert len(exit_layers) >= 3, "the test needs samples leaving at several layers"


@pytest.mark.parametrize("rule", ["entropy", "patience"])
def test_measured_flops_equal_the_analytic_count_of_the_route_taken(model_type, rule):
    batch = random_batch(batch=4, length=11)
    model = spread_model(model_type, EarlyExitConfig(rule), batch)
    routes = set()
    for kwargs in settings(rule):
        for i in range(4):
            real = int(batch["attention_mask"][i].sum())
            with torch.inference_mode(), flop_counter() as counter:
                route = model(batch["input_ids"][i : i + 1, :real], **kwargs).routes.item()
            assert counter.get_total_flops() == model.sample_flops(route, real)
            routes.add(route)
    assert len(routes) >= 3, "the test needs several routes"
    assert model.sample_flops(4.0, 11) == model.full_flops(11) + 3 * model.full_flops(0), "three extra exits"


def changed(before: dict[str, torch.Tensor], model: torch.nn.Module, prefix: str) -> set[bool]:
    """For each parameter under `prefix`: whether the step changed it."""
    return {
        not torch.equal(before[name], param)
        for name, param in model.named_parameters()
        if name.startswith(prefix)
    }


def train_step(model: EarlyExitModel, labels: torch.Tensor) -> dict[str, torch.Tensor]:
    """One AdamW step on a random batch; returns the parameters from before it."""
    before = {name: param.detach().clone() for name, param in model.named_parameters()}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    out = model(**random_batch(), labels=labels)
    assert out.logits.shape == (5, model.num_labels) and out.routes.tolist() == [4.0] * 5
    out.loss.backward()
    optimizer.step()
    return before


def test_pabee_training_changes_every_parameter():
    model = EarlyExitModel(tiny_model("bert"), EarlyExitConfig())
    before = train_step(model, torch.tensor([0, 1, 0, 1, 1]))
    assert changed(before, model, "") == {True}
    assert model.schedule_starts(1) == (0,)


def test_deebert_trains_in_two_stages(model_type):
    model = EarlyExitModel(tiny_model(model_type), EarlyExitConfig("entropy"))
    labels = torch.tensor([0, 1, 0, 1, 1])
    assert model.schedule_starts(3) == (0, 2)
    model.start_epoch(0, 3)
    before = train_step(model, labels)
    assert changed(before, model, "base.") == {True}
    assert changed(before, model, "exit_") == {False}, "stage 1 trains the final exit only"
    model.start_epoch(2, 3)
    before = train_step(model, labels)
    assert changed(before, model, "base.") == {False}, "stage 2 freezes the backbone and the final head"
    assert changed(before, model, "exit_") == {True}
    model.start_epoch(1, 3)  # a run resumed in stage 1 trains everything again
    assert all(p.requires_grad for p in model.parameters())
    with pytest.raises(SharcsError, match="^epochs:"):
        model.schedule_starts(1)


@pytest.mark.parametrize("config", [EarlyExitConfig(patience=1), EarlyExitConfig("entropy", 0.5)])
def test_save_load_round_trip_is_bit_identical(config, tmp_path):
    batch = random_batch()
    model = spread_model("roberta", config, batch)
    model.save_pretrained(tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    assert isinstance(loaded, EarlyExitModel) and loaded.config == model.config
    with torch.no_grad():
        for kwargs in settings(config.rule):
            a, b = model(**batch, **kwargs), loaded(**batch, **kwargs)
            assert torch.equal(a.logits, b.logits) and torch.equal(a.routes, b.routes)


def test_pabee_regression_runs_inference():
    model = EarlyExitModel(tiny_model("bert", num_labels=1), EarlyExitConfig(regression_tolerance=1e3)).eval()
    with torch.no_grad():
        out = model(**random_batch(), patience=1)
    assert out.logits.shape == (5, 1)
    assert out.routes.tolist() == [2.0] * 5, "with a huge tolerance every pair agrees"
    out = model.train()(**random_batch(), labels=torch.rand(5))
    assert out.loss.ndim == 0


def test_interface():
    pabee = EarlyExitModel(tiny_model("bert", num_labels=3), EarlyExitConfig())
    assert pabee.route_values == (1.0, 2.0, 3.0, 4.0)
    assert pabee.route_label(3.0) == "exit 3"
    assert [s.name for s in pabee.curve_settings()] == ["patience=1", "patience=2", "patience=3"]
    deebert = EarlyExitModel(tiny_model("bert", num_labels=3), EarlyExitConfig("entropy"))
    first = deebert.curve_settings()[0]
    assert len(deebert.curve_settings()) == 9
    assert first.name == "entropy<0.0549" and first.kwargs["entropy_threshold"] == pytest.approx(
        0.05493, 1e-3
    )


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        (dict(rule="confidence"), "rule"),
        (dict(entropy_threshold=-0.1), "entropy_threshold"),
        (dict(patience=0), "patience"),
        (dict(patience=1.5), "patience"),
        (dict(regression_tolerance=0.0), "regression_tolerance"),
    ],
)
def test_invalid_configs_name_the_field(kwargs, field):
    with pytest.raises(SharcsError, match=f"^{field}:"):
        EarlyExitConfig(**kwargs)


def test_misuse_is_explained():
    with pytest.raises(SharcsError, match="^rule:.*regression"):
        EarlyExitModel(tiny_model("bert", num_labels=1), EarlyExitConfig("entropy"))
    with pytest.raises(SharcsError, match="unknown field"):
        EarlyExitConfig.from_dict({"rule": "patience", "threshold": 0.5})
    model = EarlyExitModel(tiny_model("bert"), EarlyExitConfig()).eval()
    with pytest.raises(SharcsError, match="^entropy_threshold:"):
        model(**random_batch(), entropy_threshold=0.5)
    with pytest.raises(SharcsError, match="^patience:"):
        model(**random_batch(), patience=0)
