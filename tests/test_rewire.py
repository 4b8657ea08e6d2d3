"""Importance rewiring (sharcs.modeling.rewire): permutations that keep the function and put the most
important heads and FFN units, and the most energetic residual channels, first, on every registered
architecture."""

from __future__ import annotations

import pytest
import torch
from conftest import random_batch, random_dataset, tiny_model
from torch import nn

from sharcs import SharcsConfig, get_sharcs_model
from sharcs.errors import SharcsError
from sharcs.modeling.architectures import find_layout, get_module
from sharcs.modeling.rewire import (
    Importance,
    order_of,
    order_residual,
    order_residual_on_data,
    residual_energy,
    rewire,
    rewire_on_data,
    score_importance,
)


def labelled_batches(n: int = 2, num_labels: int = 3) -> list[dict[str, torch.Tensor]]:
    batches = []
    for seed in range(n):
        batch = random_batch(batch=6, length=12, seed=seed + 1)
        batch["labels"] = torch.arange(6) % num_labels
        batches.append(batch)
    return batches


def test_rewiring_keeps_the_function_and_changes_the_narrow_width(model_type):
    base = tiny_model(model_type, num_labels=3)
    model = get_sharcs_model(base, SharcsConfig(adaptive_layer=1)).eval()
    batch = random_batch()

    def narrow_states() -> torch.Tensor:  # the last layer at width 0.25 (the logits of a random model are ~0)
        return model(**batch, width=0.25, output_hidden_states=True).hidden_states[-1]

    with torch.no_grad():
        before, narrow_before = base(**batch).logits, narrow_states()
    g = torch.Generator().manual_seed(0)
    layout, dims = model.layout, model.dims
    scores = Importance(
        [torch.rand(dims.heads, generator=g) for _ in range(dims.layers)],
        [torch.rand(dims.ffn, generator=g) for _ in range(dims.layers)],
    )
    orders = rewire(base, layout, scores)
    assert all(not torch.equal(o, torch.arange(dims.heads)) for o in orders.heads)
    with torch.no_grad():
        assert (base(**batch).logits - before).abs().max() <= 1e-5
        assert (model(**batch, width=1.0).logits - before).abs().max() <= 1e-5
        assert (narrow_states() - narrow_before).abs().max() > 1e-4  # 0 if nothing had moved


def test_rewired_scores_are_descending(model_type):
    base = tiny_model(model_type, num_labels=3)
    layout = get_sharcs_model(base, SharcsConfig(adaptive_layer=1)).layout
    importance = score_importance(base, layout, labelled_batches())
    assert all(s.gt(0).all() for s in importance.heads + importance.units)
    orders = rewire(base, layout, importance)
    again = score_importance(base, layout, labelled_batches())
    for before, order, after in zip(importance.units, orders.units, again.units, strict=True):
        assert torch.allclose(after, before[order], rtol=1e-3, atol=1e-7)  # units moved with their scores
        assert bool((after[:-1] >= after[1:] - 1e-6 * after.max()).all())
    for before, order, after in zip(importance.heads, orders.heads, again.heads, strict=True):
        assert torch.allclose(after, before[order], rtol=1e-3, atol=1e-7)
    if layout.head_bias is None:  # each layer's heads in its own order, most important first
        assert all(bool((s[:-1] >= s[1:] - 1e-6 * s.max()).all()) for s in again.heads)
    else:  # one order for all layers (a shared per-head bias): by the importance summed over layers
        assert len({tuple(o.tolist()) for o in orders.heads}) == 1
        total = torch.stack(again.heads).sum(0)
        assert bool((total[:-1] >= total[1:] - 1e-6 * total.max()).all())


def test_score_importance_leaves_the_model_as_it_was():
    base = tiny_model("bert").train()
    state = {k: v.clone() for k, v in base.state_dict().items()}
    layout = get_sharcs_model(base, SharcsConfig(adaptive_layer=1)).layout
    score_importance(base, layout, labelled_batches(num_labels=2))
    assert base.training and all(p.grad is None for p in base.parameters())
    assert all(torch.equal(v, state[k]) for k, v in base.state_dict().items())


def test_rewire_on_data_summarises_what_the_narrow_width_keeps():
    model = get_sharcs_model(tiny_model("bert"), SharcsConfig(adaptive_layer=1))
    query = get_module(model.base.base_model, "encoder.layer.1.attention.self.query").weight.clone()
    line = rewire_on_data(model, random_dataset(40), samples=24, batch_size=8, pad_id=0)
    assert line.startswith("rewired heads and FFN units by importance on 24 training samples: width 0.25")
    assert "of the head importance" in line and "% before)" in line
    assert not torch.equal(
        query, get_module(model.base.base_model, "encoder.layer.1.attention.self.query").weight
    )


def trained_like(model_type: str) -> torch.nn.Module:
    """A tiny model whose norms and biases are not the fresh 1 and 0, so that a reordering which missed
    one would change the function (as it would on a pretrained model)."""
    base = tiny_model(model_type, num_labels=3)
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for parameter in base.parameters():
            if parameter.dim() == 1:
                parameter.copy_(parameter + 0.3 * torch.randn(parameter.shape, generator=g))
    return base


def test_residual_ordering_keeps_the_function_and_changes_the_narrow_width(model_type):
    base, untouched = trained_like(model_type), trained_like(model_type)
    layout, batch = find_layout(base), random_batch()
    d = getattr(base.config, layout.hidden_size)
    order = torch.randperm(d, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        before = base(**batch).logits
    order_residual(base, layout, order, random_batch(seed=3))
    config = SharcsConfig(adaptive_layer=1, keep_residual=False)
    model = get_sharcs_model(base, config).eval()  # wrapped after: its per-width norms copy the new order
    reference = get_sharcs_model(untouched, config).eval()

    def narrow(m) -> torch.Tensor:  # the last layer at width 0.25
        return m(**batch, width=0.25, output_hidden_states=True).hidden_states[-1]

    with torch.no_grad():
        assert (base(**batch).logits - before).abs().max() <= 1e-5
        assert (model(**batch, width=1.0).logits - before).abs().max() <= 1e-5
        assert (narrow(model) - narrow(reference)).abs().max() > 1e-4  # 0 if nothing had moved


def test_ordered_residual_energy_is_descending(model_type):
    base = trained_like(model_type)
    layout = find_layout(base)
    energy = residual_energy(base, layout, labelled_batches())
    assert energy.shape == (getattr(base.config, layout.hidden_size),)
    assert torch.isclose(energy.sum(), torch.tensor(float(base.config.num_hidden_layers + 1)), rtol=1e-4)
    order = order_of(energy)
    order_residual(base, layout, order, random_batch())
    again = residual_energy(base, layout, labelled_batches())
    assert torch.allclose(again, energy[order], rtol=1e-3, atol=1e-7)  # the channels moved with their energy
    assert bool((again[:-1] >= again[1:] - 1e-6 * again.max()).all())


class _ChannelScale(nn.Module):
    """A per-channel scale the reordering does not know about."""

    def __init__(self, size: int):
        super().__init__()
        self.scale = nn.Parameter(torch.linspace(0.5, 2.0, size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale


def test_a_residual_stream_the_reordering_does_not_know_is_refused_and_left_as_it_was():
    base = trained_like("bert")
    layout = find_layout(base)
    norm = base.bert.embeddings.LayerNorm
    base.bert.embeddings.LayerNorm = nn.Sequential(norm, _ChannelScale(norm.normalized_shape[0]))
    state = {k: v.clone() for k, v in base.state_dict().items()}
    order = torch.randperm(base.config.hidden_size, generator=torch.Generator().manual_seed(0))
    with pytest.raises(SharcsError, match="--rewire-residual: reordering the residual channels"):
        order_residual(base, layout, order, random_batch())
    assert all(torch.equal(v, state[k]) for k, v in base.state_dict().items())


def test_order_residual_on_data_summarises_what_the_narrow_width_keeps():
    base = tiny_model("bert")
    line = order_residual_on_data(base, find_layout(base), random_dataset(40), 24, 8, 0, 0.25)
    assert line.startswith("ordered the residual channels by energy on 24 training samples: width 0.25's 8")
    kept, before = (float(x.split("%")[0]) for x in (line.split("carry ")[1], line.split("(")[1]))
    assert kept >= before
