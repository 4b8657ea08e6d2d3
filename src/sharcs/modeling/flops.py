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
    from sharcs.methods.sharcs.config import SharcsConfig
    from sharcs.methods.sharcs.model import SharcsModel
    from sharcs.modeling.adaptive import AdaptiveModel


def layer_flops(dims: Dims, width: float, length: int, keep_residual: bool = False) -> int:
    """One encoder layer: 2*L*(4*(w*d)^2 + 2*(w*d)*(w*f)) + 4*L^2*(w*d).

    With `keep_residual` the projections read and write all d channels: 2*L*(4*d*(w*d) + 2*d*(w*f)).
    """
    attention, ffn = dims.at(width)
    residual = dims.hidden if keep_residual else attention
    return 2 * length * (4 * residual * attention + 2 * residual * ffn) + 4 * length * length * attention


def head_flops(dims: Dims, width: float, num_labels: int) -> int:
    """Up-projection (w*d -> d) and the shared classifier (d -> labels), on one token."""
    return 2 * dims.at(width)[0] * dims.hidden + 2 * dims.hidden * num_labels


def router_flops(hidden: int, router_hidden: int, num_widths: int) -> int:
    return 2 * hidden * router_hidden + 2 * router_hidden * num_widths


def sharcs_flops(
    model: SharcsModel, width: float, length: int, forced: bool = False, config: SharcsConfig | None = None
) -> int:
    """Analytic FLOPs of one sample of `length` tokens routed to `width` (or `forced` to it), under the
    model's config or `config` (another routing rule of the same model).

    Under routing "cascade" a sample answered at full width ran the narrowest width first: it pays
    for layers K+1..N and the head at both widths, unless the width was forced (no cascade ran).
    """
    dims, config = model.dims, config or model.config
    k = config.adaptive_layer
    router = router_flops(dims.hidden, config.router_hidden_size, len(config.widths))

    def after_router(w: float) -> int:
        return (dims.layers - k) * layer_flops(dims, w, length, config.keep_residual) + head_flops(
            dims, 1.0 if config.keep_residual else w, model.num_labels
        )

    prefix = k * layer_flops(dims, 1.0, length) + (router if config.uses_router else 0)
    if config.routing == "cascade" and not forced and width != config.widths[0]:
        return prefix + after_router(config.widths[0]) + after_router(width)
    return prefix + after_router(width)


def average_flops(
    model: AdaptiveModel, routes: Sequence[float], lengths: Sequence[int], forced: bool = False
) -> tuple[float, float]:
    """Mean analytic FLOPs per sample: (the model with each sample on its route, the full model);
    `forced`: the routes were forced (the forward's `width`), not chosen by the model."""
    count = max(1, len(lengths))
    routed = sum(model.sample_flops(float(r), n, forced) for r, n in zip(routes, lengths, strict=True))
    return routed / count, sum(model.full_flops(n) for n in lengths) / count


def predicted_speedup(model: SharcsModel, width_share: dict[float, float]) -> float:
    """N / (K + (N-K) * sum_i p_i * w_i^2): the layer-FLOPs speed-up, ignoring router, head and L^2 terms
    (w_i instead of w_i^2 with `keep_residual`)."""
    n, k = model.dims.layers, model.config.adaptive_layer
    power = 1 if model.config.keep_residual else 2
    return n / (k + (n - k) * sum(p * w**power for w, p in width_share.items()))


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
