"""SharcsModel on tiny random bert/roberta/distilbert: exactness, routing, gradients, save/load, errors."""

from __future__ import annotations

import re

import pytest
import torch
from conftest import assert_gradient_only_in, projection_grads, random_batch, tiny_config, tiny_model
from transformers import AutoModelForSequenceClassification, GPT2Config, GPT2ForSequenceClassification

from sharcs import SharcsConfig, SharcsError, SharcsModel, get_sharcs_model
from sharcs.methods.sharcs.config import width_key
from sharcs.methods.sharcs.flops import sharcs_flops
from sharcs.modeling.architectures import LAYOUTS, get_module
from sharcs.modeling.flops import layer_flops, measure_flops
from sharcs.modeling.losses import hidden_distillation_loss


@pytest.mark.parametrize("keep_residual", [False, True])
@pytest.mark.parametrize("k", [0, 1, 2, 3])
def test_full_width_reproduces_the_base_model(model_type, k, keep_residual):
    base = tiny_model(model_type, num_labels=3)
    batch = random_batch()
    model = get_sharcs_model(base, SharcsConfig(adaptive_layer=k, keep_residual=keep_residual)).eval()
    with torch.no_grad():
        expected = base(**batch).logits
        out = model(**batch, width=1.0)
    assert (out.logits - expected).abs().max() <= 1e-5
    assert out.widths.tolist() == [1.0] * 5
    assert out.router_logits.shape == (5, 2)


@pytest.mark.parametrize("keep_residual", [False, True])
def test_full_width_base_computes_the_trained_full_width(model_type, keep_residual):
    base = tiny_model(model_type)
    model = get_sharcs_model(base, SharcsConfig(adaptive_layer=1, keep_residual=keep_residual)).eval()
    pretrained = {k: v.clone() for k, v in base.state_dict().items()}
    key = width_key(1.0)
    norms = [n for layer in model.adaptive_layers for n in (layer.attn_norms[key], layer.ffn_norms[key])]
    norms += [model.final_norms[key]] if model.final_norms else []  # pre-LN encoders' final norm
    with torch.no_grad():  # what training does: the full-width norms move away from the pretrained ones
        for parameter in (p for norm in norms for p in norm.parameters()):
            parameter.normal_(float(parameter.mean()), 0.3)
    batch = random_batch()
    with torch.no_grad():
        expected = model(**batch, width=1.0).logits
        plain = model.full_width_base().eval()
        assert (plain(**batch).logits - expected).abs().max() <= 1e-5
        assert (base(**batch).logits - expected).abs().max() > 1e-3  # the wrapped model is left as it was
    assert all(torch.equal(v, pretrained[k]) for k, v in base.state_dict().items())


def make_mixed_router(model: SharcsModel, batch: dict) -> None:
    """Shift the router's bias so that about half the batch picks each width under argmax."""
    with torch.no_grad():
        last = model.router.mlp[-1]
        last.weight.normal_(0, 3.0)
        logits = model.router(
            model.encode_prefix(batch["input_ids"], batch["attention_mask"]), batch["attention_mask"]
        )
        gap = (logits[:, 0] - logits[:, 1]).sort().values
        middle = len(gap) // 2  # the boundary halfway between the two middle samples, away from both
        last.bias[0] -= (gap[middle - 1] + gap[middle]) / 2


@pytest.mark.parametrize("keep_residual", [False, True])
@pytest.mark.parametrize(("rule", "k"), [("argmax", 2), ("tau", 2), ("argmax", 0)])
def test_batched_routing_equals_per_sample(model_type, rule, k, keep_residual):
    base = tiny_model(model_type, num_labels=3)
    batch = random_batch(batch=6, length=14)
    config = SharcsConfig(adaptive_layer=k, routing=rule, keep_residual=keep_residual)
    model = get_sharcs_model(base, config).eval()
    make_mixed_router(model, batch)
    if rule == "tau":  # put tau at the median probability of the narrow width
        with torch.no_grad():
            logits = model(**batch).router_logits
        scores = torch.sigmoid(logits[:, 0]).sort().values
        model.config.tau = float((scores[2] + scores[3]) / 2)  # halfway between the two middle samples
    with torch.no_grad():
        together = model(**batch)
        assert set(together.widths.tolist()) == {0.25, 1.0}, "the test needs both widths in one batch"
        for i in range(6):
            real = int(batch["attention_mask"][i].sum())
            alone = model(batch["input_ids"][i : i + 1, :real])
            assert alone.widths.item() == together.widths[i].item()
            assert (alone.logits[0] - together.logits[i]).abs().max() <= 1e-5


@pytest.mark.parametrize("k", [0, 1])
def test_forced_narrow_width_cuts_measured_adaptive_flops_as_predicted(model_type, k):
    model = get_sharcs_model(tiny_model(model_type), SharcsConfig(adaptive_layer=k))
    ids = torch.randint(3, 60, (1, 11))
    for width in (0.25, 1.0):
        assert measure_flops(model, ids, width=width) == sharcs_flops(model, width, 11)
    # the adaptive layers alone: difference between the two widths, against method.md §5
    adaptive_cut = measure_flops(model, ids, width=1.0) - measure_flops(model, ids, width=0.25)
    layers = model.dims.layers - k
    predicted = layers * (layer_flops(model.dims, 1.0, 11) - layer_flops(model.dims, 0.25, 11))
    head_cut = 2 * model.dims.hidden * (model.dims.hidden - model.dims.at(0.25)[0])
    assert abs(adaptive_cut - head_cut - predicted) <= 0.02 * predicted


@pytest.mark.parametrize("keep_residual", [False, True])
def test_hidden_states_are_the_layer_outputs_of_a_forced_width(model_type, keep_residual):
    model = get_sharcs_model(
        tiny_model(model_type), SharcsConfig(adaptive_layer=1, keep_residual=keep_residual)
    )
    batch = random_batch(batch=4, length=12)
    batch["attention_mask"][:, 9:] = 0  # positions 9..11 are padding in every row: trimmed
    with torch.no_grad():
        for width in (0.25, 1.0):
            out = model(**batch, width=width, output_hidden_states=True)
            channels = model.dims.hidden if keep_residual or width == 1.0 else model.dims.at(width)[0]
            assert [tuple(s.shape) for s in out.hidden_states] == [(4, 9, channels)] * (model.dims.layers - 1)
            assert torch.equal(out.logits, model(**batch, width=width).logits)
            assert model(**batch, width=width).hidden_states is None
    with pytest.raises(SharcsError, match="needs a forced width"):
        model(**batch, output_hidden_states=True)
    with pytest.raises(SharcsError, match="not one of this model's widths"):
        model(**batch, width=0.5, output_hidden_states=True)


def test_hidden_distillation_loss_compares_the_kept_channels_of_real_tokens():
    teacher = [torch.randn(2, 5, 8), torch.randn(2, 5, 8)]
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 0]])  # position 4 is padding everywhere: trimmed
    student = [t[:, :4, :2].clone() for t in teacher]  # a student keeping 2 of 8 channels
    assert hidden_distillation_loss(student, [t[:, :4] for t in teacher], mask) == 0
    student[0][0, 3] += 5.0  # a padded position of row 0: ignored
    assert hidden_distillation_loss(student, [t[:, :4] for t in teacher], mask) == 0
    student[1][1, 0, 0] += 2.0  # a real token: (2^2) / (7 tokens * 2 channels), averaged over 2 layers
    loss = hidden_distillation_loss(student, [t[:, :4] for t in teacher], mask)
    assert loss == pytest.approx(4 / 14 / 2)


def test_k0_narrows_from_the_embeddings(model_type):
    base = tiny_model(model_type)
    model = get_sharcs_model(base, SharcsConfig(adaptive_layer=0))
    assert len(model.adaptive_layers) == model.dims.layers
    if model.layout.pre_norm:  # pre-LN layers normalize their own inputs: a narrow width only slices
        assert len(model.entry_norms) == 0
        return
    size = model.dims.at(0.25)[0]
    entry = model.entry_norms[width_key(0.25)]
    embedding_norm = get_module(base.base_model, model.layout.embedding_norm)
    assert torch.equal(entry.weight, embedding_norm.weight[:size])
    assert torch.equal(entry.bias, embedding_norm.bias[:size])


def test_keep_residual_narrows_only_heads_and_ffn(model_type):
    """Measured FLOPs equal the analytic count, and gradient reaches exactly the kept heads/FFN units."""
    config = SharcsConfig(adaptive_layer=1, widths=(0.25, 0.5, 1.0), threshold=(0.8, 0.5), keep_residual=True)
    model = get_sharcs_model(tiny_model(model_type), config)
    assert len(model.entry_norms) == 0, "no down-projection: the residual stream stays d wide"
    ids = torch.randint(3, 60, (1, 11))
    for width in (0.25, 0.5, 1.0):
        assert measure_flops(model, ids, width=width) == sharcs_flops(model, width, 11)
    full_layer = layer_flops(model.dims, 1.0, 11)
    assert layer_flops(model.dims, 0.25, 11, keep_residual=True) == pytest.approx(full_layer / 4, rel=0.01)
    model.train()
    model(**random_batch(), width=0.5, labels=torch.tensor([0, 1, 0, 1, 1])).loss.backward()
    d = model.dims.hidden
    attention, ffn = model.dims.at(0.5)
    shapes = {"q": (attention, d), "k": (attention, d), "v": (attention, d), "attn_out": (d, attention)}
    shapes |= {"ffn_in": (ffn, d), "ffn_out": (d, ffn)}
    for layer in model.adaptive_layers:
        for kind, grad in projection_grads(layer.parts):
            assert_gradient_only_in(grad, *shapes[kind])
        assert layer.ffn_norms[width_key(0.5)].weight.shape == (d,)


def test_router_loss_reaches_layers_before_k(model_type):
    base = tiny_model(model_type)
    model = get_sharcs_model(base, SharcsConfig(adaptive_layer=2)).train()
    batch = random_batch()
    targets = torch.tensor([[1.0, 0.0]] * 5)
    model(**batch, width=0.25, router_targets=targets).loss.backward()
    first = model.full_layers[0]
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in first.parameters())
    assert all(p.grad is not None for p in model.router.parameters())


@pytest.mark.parametrize("width", [0.25, 1.0])
def test_task_loss_reaches_every_weight_the_width_uses(model_type, width):
    base = tiny_model(model_type)
    model = get_sharcs_model(base, SharcsConfig(adaptive_layer=2)).train()
    batch = random_batch()
    model(**batch, width=width, labels=torch.tensor([0, 1, 0, 1, 1])).loss.backward()
    hidden, ffn = model.dims.at(width)
    key = width_key(width)
    shapes = {"q": (hidden, hidden), "k": (hidden, hidden), "v": (hidden, hidden)}
    shapes |= {"attn_out": (hidden, hidden), "ffn_in": (ffn, hidden), "ffn_out": (hidden, ffn)}
    for layer in model.adaptive_layers:
        for kind, grad in projection_grads(layer.parts):
            assert_gradient_only_in(grad, *shapes[kind])
        for norm in (layer.attn_norms[key], layer.ffn_norms[key]):
            assert all(p.grad.abs().sum() > 0 for p in norm.parameters())
    if model.final_norms:  # pre-LN: the width's own final norm
        assert all(p.grad.abs().sum() > 0 for p in model.final_norms[key].parameters())
    if width < 1.0 and not model.layout.pre_norm:
        assert model.entry_norms[key].weight.grad.abs().sum() > 0
    for layer in model.full_layers:
        assert all(prm.grad is not None for prm in layer.parameters())


@pytest.mark.parametrize("keep_residual", [False, True])
def test_save_load_round_trip_is_bit_identical(model_type, tmp_path, keep_residual):
    model = get_sharcs_model(
        tiny_model(model_type, num_labels=3),
        SharcsConfig(
            adaptive_layer=2, widths=(0.25, 0.5, 1.0), threshold=(0.8, 0.5), keep_residual=keep_residual
        ),
    ).eval()
    with torch.no_grad():  # make the per-width norms differ from their initial copies
        for param in model.adaptive_layers.parameters():
            param.add_(torch.randn_like(param) * 0.1)
    batch = random_batch()
    model.save_pretrained(tmp_path / "m")
    loaded = SharcsModel.from_pretrained(tmp_path / "m")
    assert loaded.config == model.config
    with torch.no_grad():
        for width in (None, 0.25, 0.5, 1.0):
            a, b = model(**batch, width=width), loaded(**batch, width=width)
            assert torch.equal(a.logits, b.logits) and torch.equal(a.widths, b.widths)


def test_load_errors_are_clear(tmp_path):
    model = get_sharcs_model(tiny_model("bert"), SharcsConfig(adaptive_layer=2))
    with pytest.raises(SharcsError, match="is missing"):
        SharcsModel.from_pretrained(tmp_path / "nowhere")
    model.save_pretrained(tmp_path / "m")
    weights = tmp_path / "m" / "model.safetensors"
    good = weights.read_bytes()
    weights.write_bytes(good[: len(good) // 2])
    with pytest.raises(SharcsError, match="corrupt"):
        SharcsModel.from_pretrained(tmp_path / "m")
    # weights of another model (distilbert) under this model's configs
    other = get_sharcs_model(tiny_model("distilbert"), SharcsConfig(adaptive_layer=2))
    other.save_pretrained(tmp_path / "other")
    weights.write_bytes((tmp_path / "other" / "model.safetensors").read_bytes())
    with pytest.raises(SharcsError, match="belongs to another model"):
        SharcsModel.from_pretrained(tmp_path / "m")


def test_save_is_atomic_and_keeps_the_old_copy_on_failure(tmp_path, monkeypatch):
    model = get_sharcs_model(tiny_model("bert"), SharcsConfig(adaptive_layer=2))
    model.save_pretrained(tmp_path / "m")
    before = (tmp_path / "m" / "model.safetensors").read_bytes()

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("sharcs.modeling.adaptive.save_model", broken)
    with pytest.raises(OSError):
        model.save_pretrained(tmp_path / "m")
    assert (tmp_path / "m" / "model.safetensors").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m"], "no scratch folder left behind"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        (dict(widths=(0.25, 0.5)), "widths"),
        (dict(widths=(0.5, 0.25, 1.0)), "widths"),
        (dict(widths=(0.0, 1.0)), "widths"),
        (dict(adaptive_layer=-1), "adaptive_layer"),
        (dict(window=0), "window"),
        (dict(threshold=(0.5, 0.3)), "threshold"),
        (dict(threshold=1.5), "threshold"),
        (dict(intervals=((0.5, 1.0), (0.2, 0.5))), "intervals"),
        (dict(norm_init="zeros"), "norm_init"),
        (dict(routing="nearest"), "routing"),
        (dict(tau=2.0), "tau"),
        (dict(routing="fixed"), "fixed_width"),
        (dict(routing="fixed", fixed_width=0.5), "fixed_width"),
        (dict(width_shares=(0.5, 0.6)), "width_shares"),
        (dict(width_shares=(1.0,)), "width_shares"),
        (dict(keep_residual="yes"), "keep_residual"),
    ],
)
def test_invalid_configs_name_the_field(kwargs, field):
    with pytest.raises(ValueError, match=f"^{field}:"):
        SharcsConfig(**kwargs)


def test_config_must_fit_the_model():
    with pytest.raises(SharcsError, match="adaptive_layer"):
        get_sharcs_model(tiny_model("bert"), SharcsConfig(adaptive_layer=4))
    with pytest.raises(SharcsError, match="whole number"):
        get_sharcs_model(tiny_model("bert"), SharcsConfig(widths=(0.3, 1.0)))
    model = get_sharcs_model(tiny_model("bert"), SharcsConfig(adaptive_layer=2))
    with pytest.raises(SharcsError, match="not one of this model's widths"):
        model(**random_batch(), width=0.5)


def test_unsupported_model_type_is_named():
    gpt2 = GPT2ForSequenceClassification(GPT2Config(n_layer=2, n_embd=32, n_head=4, vocab_size=64))
    with pytest.raises(SharcsError, match="'gpt2'.*" + re.escape(", ".join(sorted(LAYOUTS)))):
        get_sharcs_model(gpt2, SharcsConfig(adaptive_layer=1))


@pytest.mark.parametrize(
    ("model_type", "change", "reason"),
    [
        ("modernbert", {"classifier_pooling": "mean"}, "classifier_pooling 'mean'"),
        ("deberta-v2", {"share_att_key": False}, "share_att_key false"),
        ("deberta-v2", {"conv_kernel_size": 3}, "conv_kernel_size"),
        ("deberta-v2", {"pooler_hidden_size": 16}, "pooler_hidden_size 16"),
        ("bert", {"position_embedding_type": "relative_key"}, "position_embedding_type 'relative_key'"),
    ],
)
def test_a_config_a_layout_cannot_run_exactly_is_refused(model_type, change, reason):
    config = tiny_config(model_type)
    for name, value in change.items():
        setattr(config, name, value)
    base = AutoModelForSequenceClassification.from_config(config)
    with pytest.raises(SharcsError, match=f"'{model_type}': {re.escape(reason)}"):
        get_sharcs_model(base, SharcsConfig(adaptive_layer=1))


def test_width_one_is_exact_at_every_length(model_type):
    """Unpadded single samples from 1 token to past the tiny models' sliding window (ModernBERT) and
    position span (DeBERTa: its window of position rows is clipped below at short lengths)."""
    base = tiny_model(model_type)
    model = get_sharcs_model(base, SharcsConfig(adaptive_layer=1)).eval()
    ids = random_batch(batch=1, length=12)["input_ids"]
    with torch.no_grad():
        for length in (1, 2, 3, 5, 8, 12):
            sample = ids[:, :length]
            assert (model(sample, width=1.0).logits - base(sample).logits).abs().max() <= 1e-5, length


def test_the_tiny_modernbert_window_is_shorter_than_the_test_sequences():
    """The exactness tests are not vacuous: without its sliding window the tiny ModernBERT computes
    another function on the test batch."""
    batch = random_batch()
    wide = tiny_config("modernbert")
    wide.local_attention = 64
    with torch.no_grad():
        narrow = tiny_model("modernbert")
        other = AutoModelForSequenceClassification.from_config(wide).eval()
        other.load_state_dict(narrow.state_dict())
        assert (other(**batch).logits - narrow(**batch).logits).abs().max() > 1e-4


def test_inference_cache_follows_weight_updates():
    model = get_sharcs_model(tiny_model("bert"), SharcsConfig(adaptive_layer=2)).eval()
    batch = random_batch()
    with torch.no_grad():
        before = model(**batch, width=0.25).logits
        model.base.bert.pooler.dense.weight.mul_(50.0)  # sliced and cached as the head
        after = model(**batch, width=0.25).logits
    with torch.enable_grad():
        live = model(**batch, width=0.25).logits
    assert (before - after).abs().max() > 1e-3
    assert torch.allclose(after, live, atol=1e-6)
