"""Routing "cascade": the narrowest width first, a second pass at full width below a confidence."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from conftest import random_batch, random_dataset, tiny_model

from sharcs import SharcsConfig, get_sharcs_model
from sharcs.errors import SharcsError
from sharcs.inference.predict import predict
from sharcs.measure.curve import cascade_settings, sweep
from sharcs.measure.evaluation import check_width, evaluate_model, routing_arguments
from sharcs.methods.sharcs.config import width_key
from sharcs.methods.sharcs.flops import sharcs_flops
from sharcs.modeling.flops import layer_flops, measure_flops, router_flops
from sharcs.training.trainer import Trainer, TrainingArguments


def cascade_model(model_type: str = "bert", keep_residual: bool = False, confidence: float = 0.5, k: int = 2):
    """A model whose own routing is the cascade (as `--method cascade` trains it)."""
    config = SharcsConfig(
        adaptive_layer=k, keep_residual=keep_residual, routing="cascade", cascade_confidence=confidence
    )
    return get_sharcs_model(tiny_model(model_type), config).eval()


def narrow_confidence(model, batch) -> torch.Tensor:
    with torch.no_grad():
        logits = model(**batch, width=model.config.widths[0]).logits
    return torch.softmax(logits, -1).amax(-1)


@pytest.mark.parametrize("k", [0, 2])
@pytest.mark.parametrize("keep_residual", [False, True])
def test_cascade_reruns_exactly_the_unconfident_samples_at_full_width(model_type, keep_residual, k):
    model = cascade_model(model_type, keep_residual, k=k)
    batch = random_batch(batch=6)
    confidence = narrow_confidence(model, batch)
    threshold = float(confidence.median())  # about half the samples below it
    config = model.config
    with torch.no_grad():
        out = model(**batch, cascade=threshold)  # this call's confidence; the config is not changed
        narrow = model(**batch, width=0.25).logits
        full = model(**batch, width=1.0).logits
        routed = get_sharcs_model(tiny_model(model_type), dataclasses.replace(config, routing="argmax"))
        as_argument = routed.eval()(**batch, cascade=threshold)  # a routed model run as a cascade
    assert model.config is config
    rerun = confidence < threshold
    assert 0 < int(rerun.sum()) < len(rerun)
    assert torch.equal(out.routes, torch.where(rerun, 1.0, 0.25))
    expected = torch.where(rerun[:, None], full, narrow)
    torch.testing.assert_close(out.logits, expected, atol=1e-5, rtol=1e-4)
    assert out.router_logits is None  # the router is not run
    assert torch.equal(as_argument.routes, out.routes)
    torch.testing.assert_close(as_argument.logits, out.logits)


@pytest.mark.parametrize("k", [0, 2])
@pytest.mark.parametrize(("confidence", "route"), [(0.0, 0.25), (1.0, 1.0)])
def test_cascade_flops_count_both_passes_of_a_rerun_sample(confidence, route, k):
    model = cascade_model(confidence=confidence, k=k)  # 0: nothing is re-run; 1: everything is
    routed = get_sharcs_model(tiny_model("bert"), SharcsConfig(adaptive_layer=k)).eval()
    ids = torch.randint(3, 60, (1, 11))
    assert model(ids).routes.item() == route
    measured, analytic = measure_flops(model, ids), sharcs_flops(model, route, 11)
    assert abs(measured - analytic) <= 0.02 * analytic
    router = router_flops(routed.dims.hidden, routed.config.router_hidden_size, 2)
    prefix = k * layer_flops(routed.dims, 1.0, 11) + router
    narrow = sharcs_flops(routed, 0.25, 11) - router
    assert sharcs_flops(model, 0.25, 11) == narrow
    assert sharcs_flops(model, 1.0, 11) == narrow + sharcs_flops(routed, 1.0, 11) - prefix
    forced_full = sharcs_flops(model, 1.0, 11, forced=True)  # width=1.0 given: no cascade runs
    assert forced_full == sharcs_flops(routed, 1.0, 11) - router == measure_flops(model, ids, width=1.0)


def test_cascade_settings_rerun_the_requested_shares_as_arguments():
    model = get_sharcs_model(tiny_model("bert"), SharcsConfig(adaptive_layer=2)).eval()
    config = model.config
    data = random_dataset(40)
    settings = cascade_settings(model, data, shares=(0.25, 0.5, 0.75))
    assert all(set(s.kwargs) == {"cascade"} for s in settings)
    points = sweep(model, data, ["accuracy"], settings, measure_latency=False)
    assert [p["width_share"]["1.0"] for p in points] == pytest.approx([0.25, 0.5, 0.75], abs=0.03)
    assert model.config is config  # a setting is arguments, never a swapped config
    setting = routing_arguments(model, None, 1.0)
    assert setting == {"cascade": 1.0}
    assert bool((predict(model, data, setting=setting).routes == 1.0).all())
    flops = evaluate_model(model, data, ["accuracy"], setting=setting).flops_per_sample
    lengths = [len(ids) for ids in data["input_ids"]]
    both_passes = [sharcs_flops(model, 1.0, n, rule="cascade") for n in lengths]
    assert flops == pytest.approx(sum(both_passes) / len(lengths))


def test_forced_widths_of_a_cascade_are_single_passes_in_evaluation_and_curves():
    model = cascade_model(confidence=0.9)
    data = random_dataset(12)
    settings = model.curve_settings()
    assert [s.name for s in settings] == ["cascade=0.9", "width=0.25", "width=1"]
    forced = evaluate_model(model, data, ["accuracy"], width=1.0)
    points = sweep(model, data, ["accuracy"], settings, measure_latency=False)
    full_point = points[-1]
    assert (
        forced.flops_per_sample
        == full_point["flops_per_sample"]
        == pytest.approx(forced.full_flops_per_sample, rel=0.01)
    )


def test_cascade_errors():
    with pytest.raises(SharcsError, match="cascade_confidence: must lie in"):
        SharcsConfig(routing="cascade", cascade_confidence=1.5)
    model = get_sharcs_model(tiny_model("bert"), SharcsConfig(adaptive_layer=2))
    with pytest.raises(SharcsError, match="one of --tau, --cascade"):
        routing_arguments(model, 0.5, 0.9)
    with pytest.raises(SharcsError, match="--cascade: must lie in"):
        routing_arguments(model, None, -0.1)
    with pytest.raises(SharcsError, match="--width or --cascade"):
        check_width(model, 0.25, 0.9)
    one_width = SharcsConfig(widths=(1.0,), threshold=(), routing="fixed", fixed_width=1.0)
    full = get_sharcs_model(tiny_model("bert"), one_width)
    with pytest.raises(SharcsError, match="two or more widths"):
        routing_arguments(full, None, 0.9)
    regression = get_sharcs_model(tiny_model("bert", num_labels=1), SharcsConfig(adaptive_layer=2))
    with pytest.raises(SharcsError, match="regression"):
        routing_arguments(regression, None, 0.9)
    regression.config = dataclasses.replace(regression.config, routing="cascade")  # set directly
    with pytest.raises(SharcsError, match="regression head"):
        regression(**random_batch())
    with pytest.raises(SharcsError, match="needs two or more widths"):
        SharcsConfig(widths=(1.0,), threshold=(), routing="cascade")
    fixed_config = SharcsConfig(adaptive_layer=2, routing="fixed", fixed_width=0.25)
    with pytest.raises(SharcsError, match="--cascade: a fixed-width model"):
        routing_arguments(get_sharcs_model(tiny_model("bert"), fixed_config), None, 0.9)
    with pytest.raises(SharcsError, match="always distil"):
        Trainer(cascade_model(), random_dataset(8), TrainingArguments(distill_narrow=True))


def test_cascade_training_runs_every_sample_at_full_width_and_distils_the_narrow_path():
    model = cascade_model(confidence=0.9)
    args = TrainingArguments(epochs=1, batch_size=8, lr=1e-3)
    trainer = Trainer(model, random_dataset(24), args)
    steps, assignment = trainer.plan_epoch(0)
    assert bool((assignment == 1).all()) and [w for w, _ in steps[0].batches] == [1]
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    trainer.train_step(steps[0], 1.0)
    changed = {name for name, p in model.named_parameters() if not torch.equal(before[name], p.detach())}
    assert f"entry_norms.{width_key(0.25)}.weight" in changed  # the narrow path learns (distilled)
    assert not any(name.startswith("router") for name in changed)  # there is no router to train
