"""Analytic FLOPs of SharcsModel (docs/method.md §5): a sample's cost on its route, under a routing rule."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sharcs.modeling.flops import head_flops, layer_flops, router_flops

if TYPE_CHECKING:
    from sharcs.methods.sharcs.model import SharcsModel

ROUTER_RULES = ("argmax", "tau")  # the rules that run the router


def sharcs_flops(
    model: SharcsModel, width: float, length: int, forced: bool = False, rule: str | None = None
) -> int:
    """Analytic FLOPs of one sample of `length` tokens routed to `width` (or `forced` to it) under the
    routing `rule` (default: the model's config's).

    The router's FLOPs count under the rules that run it (argmax, tau). Under rule "cascade" a sample
    answered at full width ran the narrowest width first: it pays for layers K+1..N and the head at both
    widths, unless the width was forced (no cascade ran).
    """
    dims, config = model.dims, model.config
    rule = rule or config.routing
    k = config.adaptive_layer
    router = router_flops(dims.hidden, config.router_hidden_size, len(config.widths))

    def after_router(w: float) -> int:
        return (dims.layers - k) * layer_flops(dims, w, length, config.keep_residual) + head_flops(
            dims, 1.0 if config.keep_residual else w, model.num_labels
        )

    prefix = k * layer_flops(dims, 1.0, length) + (router if rule in ROUTER_RULES else 0)
    if rule == "cascade" and not forced and width != config.widths[0]:
        return prefix + after_router(config.widths[0]) + after_router(width)
    return prefix + after_router(width)


def predicted_speedup(model: SharcsModel, width_share: dict[float, float]) -> float:
    """N / (K + (N-K) * sum_i p_i * w_i^2): the layer-FLOPs speed-up, ignoring router, head and L^2 terms
    (w_i instead of w_i^2 with `keep_residual`)."""
    n, k = model.dims.layers, model.config.adaptive_layer
    power = 1 if model.config.keep_residual else 2
    return n / (k + (n - k) * sum(p * w**power for w, p in width_share.items()))
