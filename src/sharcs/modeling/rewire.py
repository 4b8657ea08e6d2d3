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
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from transformers import PreTrainedModel

from sharcs.data.collate import pad_batch
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


def _order(scores: torch.Tensor) -> torch.Tensor:
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
        shared = _order(torch.stack(importance.heads).sum(0))
        head_orders = [shared] * len(parts)
        with torch.no_grad():
            shared_bias.weight.copy_(shared_bias.weight[:, shared])
    else:
        head_orders = [_order(scores) for scores in importance.heads]
    unit_orders = [_order(scores) for scores in importance.units]
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


def leading_share(scores: list[torch.Tensor], width: float) -> float:
    """The share of the total importance held by each layer's leading `width` fraction of entries."""
    kept = sum(float(s[: round(width * len(s))].sum()) for s in scores)
    return kept / max(sum(float(s.sum()) for s in scores), 1e-30)


def rewire_on_data(model: AdaptiveModel, dataset: Any, samples: int, batch_size: int, pad_id: int) -> str:
    """Score `model`'s wrapped Hugging Face model on the first `samples` rows of a tokenized `dataset`
    (with labels), rewire it in place and return a one-line summary for the log."""
    rows = min(samples, len(dataset))
    columns = [c for c in (*MODEL_INPUTS, "labels") if c in dataset.column_names]
    batches = (
        {
            k: v.to(model.device)
            for k, v in pad_batch(dataset[i : i + batch_size], pad_id).items()
            if k in columns
        }
        for i in range(0, rows, batch_size)
    )
    importance = score_importance(model.base, model.layout, batches)
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
