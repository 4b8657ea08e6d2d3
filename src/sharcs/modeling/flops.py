"""FLOPs per sample: an analytic count (docs/method.md §5) and a measured one on the real model.

Convention: 2 FLOPs per multiply-add, per sample, at its unpadded length L. Counted: every matmul -
Q/K/V/output projections, FFN, the attention score and value products, the router MLP and the task
head. Not counted: embeddings (table look-ups, no matmul: 0 FLOPs), LayerNorm, softmax, activations,
residual adds and biases - the same ops `torch.utils.flop_counter.FlopCounterMode` leaves out, so the two
counts can be compared exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from sharcs.modeling.layers import Dims

if TYPE_CHECKING:
    from sharcs.modeling.adaptive import AdaptiveModel


def layer_flops(dims: Dims, width: float, length: int, keep_residual: bool = False) -> int:
    """One encoder layer: 2*L*(4*(w*d)^2 + m*(w*d)*(w*f)) + 4*L^2*(w*d), with m = 2 FFN matrices, or 3
    for a gated FFN (its input projection has value and gate units).

    With `keep_residual` the projections read and write all d channels: 2*L*(4*d*(w*d) + m*d*(w*f)).
    DeBERTa's relative attention adds, per c2p / p2c term, the projection of the n position rows a
    sequence of length L reaches (n = 2L - 1 while L <= span) and their products with the queries or
    keys: 2*n*r*(w*d) + 2*L*n*(w*d), r the residual channels.
    """
    attention, ffn = dims.at(width)
    residual = dims.hidden if keep_residual else attention
    ffn_matrices = 3 if dims.gated else 2
    projections = 4 * residual * attention + ffn_matrices * residual * ffn
    flops = 2 * length * projections + 4 * length * length * attention
    if dims.position_terms:
        span = dims.position_span
        rows = max(0, min(2 * span, span + length) - max(0, span - length + 1))
        flops += dims.position_terms * (2 * rows * residual * attention + 2 * length * rows * attention)
    return flops


def head_flops(dims: Dims, width: float, num_labels: int) -> int:
    """Up-projection (w*d -> d) and the shared classifier (d -> labels), on one token."""
    return 2 * dims.at(width)[0] * dims.hidden + 2 * dims.hidden * num_labels


def router_flops(hidden: int, router_hidden: int, num_widths: int) -> int:
    return 2 * hidden * router_hidden + 2 * router_hidden * num_widths


def average_flops(
    model: AdaptiveModel,
    routes: Sequence[float],
    lengths: Sequence[int],
    forced: bool = False,
    setting: dict | None = None,
) -> tuple[float, float]:
    """Mean analytic FLOPs per sample: (the model with each sample on its route, the full model);
    `forced`: the routes were forced (the forward's `width`), not chosen by the model; `setting`: the
    forward's inference keywords (a SHARCS cascade pays for both passes of a re-run sample)."""
    count = max(1, len(lengths))
    setting = {k: v for k, v in (setting or {}).items() if k != "width"}
    routed = sum(
        model.sample_flops(float(r), n, forced, **setting) for r, n in zip(routes, lengths, strict=True)
    )
    return routed / count, sum(model.full_flops(n) for n in lengths) / count


def _cpu_sdpa_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


def flop_counter() -> FlopCounterMode:
    """FlopCounterMode that also counts the CPU fused attention kernel (stock torch leaves it out)."""
    mapping = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_sdpa_flops}
    return FlopCounterMode(display=False, custom_mapping=mapping)


@torch.inference_mode()
def measure_flops(model: AdaptiveModel, input_ids: torch.Tensor, width: float | None = None, **inputs) -> int:
    """FLOPs that FlopCounterMode records for one forward pass (unpadded single samples: per-sample cost)."""
    model.eval()
    if width is not None:
        inputs["width"] = width
    with flop_counter() as counter:
        model(input_ids, **inputs)
    return counter.get_total_flops()
