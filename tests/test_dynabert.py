"""DynaBertModel on tiny random bert/roberta/distilbert: exactness, FLOPs, training, save/load, errors."""

from __future__ import annotations

import pytest
import torch
from conftest import assert_gradient_only_in, projection_grads, random_batch, random_dataset, tiny_model

from sharcs import load_model
from sharcs.data.collate import pad_batch
from sharcs.errors import SharcsError
from sharcs.methods.dynabert import DynaBertConfig, DynaBertModel
from sharcs.modeling.flops import measure_flops

WIDTHS = (0.25, 0.5, 0.75, 1.0)


def test_full_width_reproduces_the_base_model(model_type):
    base = tiny_model(model_type, num_labels=3)
    model = DynaBertModel(base).eval()
    batch = random_batch()
    with torch.no_grad():
        expected = base(**batch).logits
        out = model(**batch, width=1.0)
    assert (out.logits - expected).abs().max() <= 1e-5
    assert out.routes.tolist() == [1.0] * 5


def test_batched_equals_per_sample_at_every_width(model_type):
    model = DynaBertModel(tiny_model(model_type, num_labels=3)).eval()
    batch = random_batch(batch=4, length=10)
    with torch.no_grad():
        for width in WIDTHS:
            together = model(**batch, width=width)
            assert together.routes.tolist() == [width] * 4
            for i in range(4):
                real = int(batch["attention_mask"][i].sum())
                alone = model(batch["input_ids"][i : i + 1, :real], width=width)
                assert (alone.logits[0] - together.logits[i]).abs().max() <= 1e-5


def test_narrow_widths_differ_and_the_default_is_the_config_width():
    batch = random_batch()
    model = DynaBertModel(tiny_model("bert"), DynaBertConfig(width=0.5)).eval()
    with torch.no_grad():
        logits = {w: model(**batch, width=w).logits for w in WIDTHS}
        default = model(**batch)
    assert all((logits[w] - logits[1.0]).abs().max() > 1e-4 for w in WIDTHS[:-1])
    assert torch.equal(default.logits, logits[0.5]) and default.routes.tolist() == [0.5] * 5
    narrowest = DynaBertModel(tiny_model("bert")).eval()
    with torch.no_grad():
        assert narrowest(**batch).routes.tolist() == [0.25] * 5


def test_measured_flops_equal_the_analytic_count(model_type):
    model = DynaBertModel(tiny_model(model_type, num_labels=3))
    ids = torch.randint(3, 60, (1, 11))
    counts = [measure_flops(model, ids, width=w) for w in WIDTHS]
    assert counts == [model.sample_flops(w, 11) for w in WIDTHS]
    assert counts == sorted(counts) and counts[-1] == model.full_flops(11)


def training_batch(num_labels: int = 2) -> dict[str, torch.Tensor]:
    data = random_dataset(n=8, num_labels=num_labels)
    return pad_batch(data.select_columns(["input_ids", "attention_mask", "labels"])[:], pad_token_id=0)


@pytest.mark.parametrize(("num_labels", "distill"), [(2, True), (2, False), (1, True)])
def test_training_step_over_all_widths_changes_the_weights(model_type, num_labels, distill):
    model = DynaBertModel(tiny_model(model_type, num_labels=num_labels), DynaBertConfig(distill=distill))
    model.train()
    batch = training_batch(num_labels)
    if num_labels == 1:
        batch["labels"] = batch["labels"].float()
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    out = model(**batch)
    assert out.routes.tolist() == [1.0] * 8 and out.logits.shape == (8, num_labels)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    out.loss.backward()
    optimizer.step()
    changed = [name for name, p in model.named_parameters() if not torch.equal(p, before[name])]
    assert any("classifier" in name for name in changed)
    assert sum("layer" in name for name in changed) > 20


def test_training_loss_sums_widths_and_distillation():
    model = DynaBertModel(tiny_model("bert"), DynaBertConfig(widths=(0.5, 1.0)))
    batch = training_batch()
    labels = batch.pop("labels")
    with torch.no_grad():
        full = model(**batch, labels=labels, width=1.0)
        half = model(**batch, labels=labels, width=0.5)
        both = model(**batch, labels=labels)
    teacher, student = full.logits.softmax(-1), half.logits.log_softmax(-1)
    kl = (teacher * (teacher.log() - student)).sum(-1).mean()
    assert torch.allclose(both.loss, full.loss + half.loss + kl, atol=1e-6)
    assert torch.equal(both.logits, full.logits)


@pytest.mark.parametrize("width", [0.25, 1.0])
def test_gradients_reach_only_the_slices_a_forced_width_uses(model_type, width):
    model = DynaBertModel(tiny_model(model_type)).train()
    batch = training_batch()
    model(**batch, width=width).loss.backward()
    attention, ffn = model.dims.at(width)
    shapes = {"q": (attention, None), "k": (attention, None), "v": (attention, None)}
    shapes |= {"attn_out": (None, attention), "ffn_in": (ffn, None), "ffn_out": (None, ffn)}
    for p in model.layer_parts:
        for kind, grad in projection_grads(p):
            assert_gradient_only_in(grad, *shapes[kind])
        norms = [*p.attn_norm.parameters(), *p.ffn_norm.parameters()]  # none in an nn.Identity
        assert norms and all(n.grad.abs().sum() > 0 for n in norms)


def test_save_load_round_trip_is_bit_identical(model_type, tmp_path):
    config = DynaBertConfig(widths=(0.5, 1.0), width=1.0, distill=False)
    model = DynaBertModel(tiny_model(model_type, num_labels=3), config).eval()
    model.save_pretrained(tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    assert isinstance(loaded, DynaBertModel) and loaded.config == config
    assert isinstance(DynaBertModel.from_pretrained(tmp_path / "m"), DynaBertModel)
    batch = random_batch()
    with torch.no_grad():
        for width in (None, 0.5, 1.0):
            a, b = model(**batch, width=width), loaded(**batch, width=width)
            assert torch.equal(a.logits, b.logits) and torch.equal(a.routes, b.routes)


def test_interface():
    model = DynaBertModel(tiny_model("bert"))
    assert model.route_values == WIDTHS
    assert [s.name for s in model.curve_settings()] == ["width=0.25", "width=0.5", "width=0.75", "width=1"]
    assert [s.kwargs for s in model.curve_settings()] == [{"width": w} for w in WIDTHS]
    assert [model.width_index(w) for w in WIDTHS] == [0, 1, 2, 3]
    with pytest.raises(SharcsError, match=r"not one of this model's widths \[0.25, 0.5, 0.75, 1.0\]"):
        model.width_index(0.3)
    with pytest.raises(SharcsError, match="not one of this model's widths"):
        model(**random_batch(), width=0.6)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        (dict(widths=()), "widths"),
        (dict(widths=(0.25, 0.5)), "widths"),
        (dict(widths=(0.5, 0.25, 1.0)), "widths"),
        (dict(widths=(0.0, 1.0)), "widths"),
        (dict(widths=(0.5, 0.5, 1.0)), "widths"),
        (dict(width=0.3), "width"),
        (dict(distill="yes"), "distill"),
    ],
)
def test_invalid_configs_name_the_field(kwargs, field):
    with pytest.raises(SharcsError, match=f"^{field}:"):
        DynaBertConfig(**kwargs)


def test_config_from_dict_and_model_fit():
    config = DynaBertConfig.from_dict({"widths": [0.5, 1], "width": 1})
    assert config.widths == (0.5, 1.0) and config.width == 1.0
    with pytest.raises(SharcsError, match="unknown field"):
        DynaBertConfig.from_dict({"widths": [1.0], "adaptive_layer": 2})
    with pytest.raises(SharcsError, match="^widths:.*whole number"):
        DynaBertModel(tiny_model("bert"), DynaBertConfig(widths=(0.3, 1.0)))
