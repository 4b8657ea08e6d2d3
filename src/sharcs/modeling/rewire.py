"""Importance rewiring: each layer's heads and FFN units reordered, most important first (docs/method.md §8).

A width keeps the leading w*H heads and w*f FFN units of every layer it narrows. Rewiring puts there
the ones the task loss depends on most, as DynaBERT does and the SHARCS paper adopts:

    importance = score_importance(base, layout, batches)   # on training data
    rewire(base, layout, importance)                       # in place; the same function as before

A head's importance is |dL/dm| for a mask m scaling its output, summed over batches (absolute per
batch); an FFN unit's likewise. Scaling a head's output by m scales the columns of the attention output
projection that read it, so dL/dm at m = 1 is sum(W * dL/dW) over those columns: the scores come from
ordinary parameter gradients, with no hooks into the model. Reordering is a permutation of the rows of
the query, key and value projections (and of the FFN input projection; a gated FFN's value and gate
units together) with the matching columns of the output projections, so the model computes exactly
the same function. A per-head bias shared by all layers (MPNet's relative position bias) forces one
head order for every layer, by the importance summed over layers, and is permuted with it.

Where the residual stream itself narrows (the paper's slicing, no --keep-residual), a width also keeps
only the leading w*d residual channels. 12-layer encoders carry a few outlier channels with 50-100x the
median energy (all-mpnet-base-v2: channels 555, 461, 756 and 568), mostly beyond the first quarter, and a
narrow LayerNorm that loses them normalizes by the wrong statistics. `order_residual` puts the channels
carrying most of the stream's energy first, before the model is wrapped (the per-width norms are copied
from the reordered ones):

    energy = residual_energy(base, layout, batches)    # on training inputs; no labels
    order_residual(base, layout, order_of(energy), batch)  # in place; same function, checked on batch
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from transformers import PreTrainedModel

from sharcs.data.collate import pad_batch
from sharcs.errors import SharcsError
from sharcs.modeling.architectures import Layout, get_module
from sharcs.modeling.layers import LayerParts
from sharcs.modeling.losses import task_loss

if TYPE_CHECKING:
    from sharcs.modeling.adaptive import AdaptiveModel


MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


@dataclass
class Importance:
    """Per layer: each head's and each FFN unit's importance (shapes (H,) and (f,))."""

    heads: list[torch.Tensor]
    units: list[torch.Tensor]


def _layer_parts(base: PreTrainedModel, layout: Layout) -> list[LayerParts]:
    return [LayerParts.find(layer, layout) for layer in get_module(base.base_model, layout.layers)]


def score_importance(
    base: PreTrainedModel, layout: Layout, batches: Iterable[dict[str, torch.Tensor]]
) -> Importance:
    """Head and FFN-unit importance of `base` on labelled `batches` (model inputs and "labels"), in eval
    mode (no dropout); the model's weights and gradients are left as they were."""
    parts = _layer_parts(base, layout)
    heads = getattr(base.config, layout.num_heads)
    watched = [p.attn_out.weight for p in parts] + [p.ffn_out.weight for p in parts]
    head_scores = [torch.zeros(heads) for _ in parts]
    unit_scores = [torch.zeros(p.ffn_out.weight.shape[1]) for p in parts]
    was_training = base.training
    base.eval()
    names = MODEL_INPUTS if layout.uses_token_types else MODEL_INPUTS[:2]
    try:
        for batch in batches:
            inputs = {name: batch[name] for name in names if name in batch}
            loss = task_loss(base(**inputs).logits, batch["labels"])
            grads = torch.autograd.grad(loss, watched)
            for i, p in enumerate(parts):
                attn = (p.attn_out.weight * grads[i]).detach().sum(0)  # per input column of W_o
                head_scores[i] += attn.view(heads, -1).sum(1).abs().cpu()
                ffn = (p.ffn_out.weight * grads[len(parts) + i]).detach().sum(0)
                unit_scores[i] += ffn.abs().cpu()
    finally:
        base.train(was_training)
    return Importance(head_scores, unit_scores)


def order_of(scores: torch.Tensor) -> torch.Tensor:
    """Indices by descending score; ties keep their original order."""
    return torch.sort(scores, descending=True, stable=True).indices


def _blocks(order: torch.Tensor, size: int) -> torch.Tensor:
    """Row indices that move whole blocks of `size` rows (a head's) in `order`."""
    return (order[:, None] * size + torch.arange(size)).reshape(-1)


@torch.no_grad()
def _take_rows(linear: nn.Linear, rows: torch.Tensor) -> None:
    linear.weight.copy_(linear.weight[rows])
    if linear.bias is not None:
        linear.bias.copy_(linear.bias[rows])


@torch.no_grad()
def _take_columns(linear: nn.Linear, columns: torch.Tensor) -> None:
    linear.weight.copy_(linear.weight[:, columns])


def rewire(base: PreTrainedModel, layout: Layout, importance: Importance) -> Importance:
    """Reorder every layer's heads and FFN units of `base` in place by descending importance; returns
    the orders applied (a permutation per layer). The model computes the same function as before."""
    parts = _layer_parts(base, layout)
    heads = len(importance.heads[0])
    shared_bias = get_module(base.base_model, layout.head_bias) if layout.head_bias else None
    if shared_bias is not None:  # one order for all layers, since they all add the same per-head bias
        shared = order_of(torch.stack(importance.heads).sum(0))
        head_orders = [shared] * len(parts)
        with torch.no_grad():
            shared_bias.weight.copy_(shared_bias.weight[:, shared])
    else:
        head_orders = [order_of(scores) for scores in importance.heads]
    unit_orders = [order_of(scores) for scores in importance.units]
    for p, head_order, unit_order in zip(parts, head_orders, unit_orders, strict=True):
        head_size = p.attn_out.weight.shape[1] // heads
        rows = _blocks(head_order, head_size)
        if len(p.qkv) == 1:  # one fused matrix: q | k | v, each reordered alike
            attention = p.attn_out.weight.shape[1]
            _take_rows(p.qkv[0], torch.cat([rows + i * attention for i in range(3)]))
        else:
            for linear in p.qkv:
                _take_rows(linear, rows)
        _take_columns(p.attn_out, rows)
        units = len(unit_order)
        if p.gated:  # value units | gate units: both halves by the same order
            _take_rows(p.ffn_in, torch.cat([unit_order, unit_order + units]))
        else:
            _take_rows(p.ffn_in, unit_order)
        _take_columns(p.ffn_out, unit_order)
    return Importance(head_orders, unit_orders)


def _batches(
    dataset: Any, samples: int, batch_size: int, pad_id: int, device: torch.device
) -> Iterable[dict]:
    """Padded batches of the first `samples` rows of a tokenized dataset (model inputs and labels)."""
    columns = [c for c in (*MODEL_INPUTS, "labels") if c in dataset.column_names]
    for i in range(0, min(samples, len(dataset)), batch_size):
        batch = pad_batch(dataset[i : min(i + batch_size, samples)], pad_id)
        yield {k: v.to(device) for k, v in batch.items() if k in columns}


def leading_share(scores: list[torch.Tensor], width: float) -> float:
    """The share of the total importance held by each layer's leading `width` fraction of entries."""
    kept = sum(float(s[: round(width * len(s))].sum()) for s in scores)
    return kept / max(sum(float(s.sum()) for s in scores), 1e-30)


def rewire_on_data(
    model: AdaptiveModel,
    dataset: Any,
    samples: int,
    batch_size: int,
    pad_id: int,
    agree: Callable[[torch.Tensor], torch.Tensor] = lambda scores: scores,
) -> str:
    """Score `model`'s wrapped Hugging Face model on the first `samples` rows of a tokenized `dataset`
    (with labels), rewire it in place and return a one-line summary for the log. `agree`: the scores
    every process uses (in a distributed run, rank 0's), so that all rewire alike."""
    rows = min(samples, len(dataset))
    batches = _batches(dataset, rows, batch_size, pad_id, model.device)
    scored = score_importance(model.base, model.layout, batches)
    importance = Importance([agree(h) for h in scored.heads], [agree(u) for u in scored.units])
    orders = rewire(model.base, model.layout, importance)
    width = min(model.route_values) if model.route_name == "width" else 0.25
    heads_after = [s[o] for s, o in zip(importance.heads, orders.heads, strict=True)]
    units_after = [s[o] for s, o in zip(importance.units, orders.units, strict=True)]
    return (
        f"rewired heads and FFN units by importance on {rows} training samples: width {width:g} now keeps "
        f"{100 * leading_share(heads_after, width):.0f}% of the head importance "
        f"({100 * leading_share(importance.heads, width):.0f}% before) and "
        f"{100 * leading_share(units_after, width):.0f}% of the FFN-unit importance "
        f"({100 * leading_share(importance.units, width):.0f}% before)"
    )


# ------------------------------------------------------------------------------------- residual channels
@torch.no_grad()
def residual_energy(
    base: PreTrainedModel, layout: Layout, batches: Iterable[dict[str, torch.Tensor]]
) -> torch.Tensor:
    """Each residual channel's share of the stream's energy, (d,): the mean square over real tokens of
    every hidden state passed between layers (the embeddings' output included), each state's shares
    summing to 1, summed over states. Eval mode; the model is left as it was."""
    names = MODEL_INPUTS if layout.uses_token_types else MODEL_INPUTS[:2]
    sums: list[torch.Tensor] = []
    was_training = base.training
    base.eval()
    try:
        for batch in batches:
            inputs = {name: batch[name] for name in names if name in batch}
            states = base(**inputs, output_hidden_states=True).hidden_states
            mask = inputs["attention_mask"].unsqueeze(-1).to(states[0].dtype)
            energy = [(h.float() ** 2 * mask).sum((0, 1)).cpu() for h in states]
            sums = energy if not sums else [a + b for a, b in zip(sums, energy, strict=True)]
    finally:
        base.train(was_training)
    if not sums:
        raise SharcsError("residual energy: no samples to score")
    return sum(e / e.sum().clamp_min(1e-30) for e in sums)


def _residual_tensors(base: PreTrainedModel, layout: Layout) -> list[tuple[torch.Tensor, int]]:
    """Every tensor with a residual-channel dimension, with that dimension: the embeddings (DeBERTa's
    relative ones too) and every d-channel norm of the encoder, each layer's projections, the head's
    dense layer. All found before anything moves, so a lookup that fails leaves the model as it was."""
    d = getattr(base.config, layout.hidden_size)
    found: list[tuple[torch.Tensor, int]] = []
    for module in base.base_model.modules():
        if isinstance(module, nn.Embedding) and module.embedding_dim == d:
            found.append((module.weight, 1))
        elif isinstance(module, nn.LayerNorm) and tuple(module.normalized_shape) == (d,):
            found += [(t, 0) for t in (module.weight, module.bias) if t is not None]
    for p in _layer_parts(base, layout):
        found += [(linear.weight, 1) for linear in (*p.qkv, p.ffn_in)]  # they read the stream
        for linear in (p.attn_out, p.ffn_out):  # they write it
            found += [(t, 0) for t in (linear.weight, linear.bias) if t is not None]
    found.append((get_module(base, layout.head_dense).weight, 1))
    return found


@torch.no_grad()
def _permute(tensors: list[tuple[torch.Tensor, int]], order: torch.Tensor) -> None:
    for tensor, dim in tensors:
        tensor.copy_(tensor.index_select(dim, order.to(tensor.device)))


@torch.no_grad()
def order_residual(
    base: PreTrainedModel, layout: Layout, order: torch.Tensor, check: dict[str, torch.Tensor]
) -> None:
    """Permute the residual channels of `base` in place (channel order[i] becomes channel i): the
    embeddings' columns, every d-channel norm, the columns of each layer's query, key, value and FFN input
    projections and of the head's dense layer, the rows of each layer's output projections. The model
    must compute the same function: on the `check` inputs every hidden state must come out permuted
    alike and the logits unchanged. A model whose residual stream has a part this does not know (a
    projected embedding, a norm of another kind) does not; it is put back and refused."""
    names = MODEL_INPUTS if layout.uses_token_types else MODEL_INPUTS[:2]
    inputs = {name: check[name] for name in names if name in check}
    tensors = _residual_tensors(base, layout)
    was_training = base.training
    base.eval()
    try:
        before = base(**inputs, output_hidden_states=True)
        _permute(tensors, order)
        after = base(**inputs, output_hidden_states=True)
        pairs = [
            (a, b.index_select(-1, order.to(b.device)))
            for a, b in zip(after.hidden_states, before.hidden_states, strict=True)
        ]
        pairs.append((after.logits, before.logits))
        tolerance = max(1e-4, 8 * torch.finfo(before.logits.dtype).eps)  # half precision sums differ more
        if not all(
            torch.allclose(
                a.float(), b.float(), rtol=tolerance, atol=tolerance * (1 + float(b.float().abs().max()))
            )
            for a, b in pairs
        ):
            _permute(tensors, torch.argsort(order))  # back as it was
            raise SharcsError(
                f"--rewire-residual: reordering the residual channels of this {base.config.model_type} "
                "model changed its outputs (a part of its residual stream is not one the reordering "
                "knows); run without it"
            )
    finally:
        base.train(was_training)


def order_residual_on_data(
    base: PreTrainedModel,
    layout: Layout,
    dataset: Any,
    samples: int,
    batch_size: int,
    pad_id: int,
    width: float,
    agree: Callable[[torch.Tensor], torch.Tensor] = lambda scores: scores,
) -> str:
    """Score `base`'s residual channels on the first `samples` rows of a tokenized `dataset`, reorder
    them in place, most energetic first, and return a one-line summary for the log. `agree`: the scores
    every process uses (in a distributed run, rank 0's), so that all reorder alike."""
    rows = min(samples, len(dataset))
    energy = agree(residual_energy(base, layout, _batches(dataset, rows, batch_size, pad_id, base.device)))
    order = order_of(energy)
    order_residual(base, layout, order, next(iter(_batches(dataset, rows, batch_size, pad_id, base.device))))
    kept = round(width * len(energy))
    share = float(energy[:kept].sum() / energy.sum())
    return (
        f"ordered the residual channels by energy on {rows} training samples: width {width:g}'s "
        f"{kept} channels now carry {100 * float(energy[order][:kept].sum() / energy.sum()):.0f}% of "
        f"the stream's energy ({100 * share:.0f}% before)"
    )
