"""The `--method` presets built on `SharcsModel` (see sharcs.methods.registry): SHARCS itself, the cascade
and the router-free baselines full, fixed and random, each a SharcsConfig made from the run's options."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from sharcs.errors import SharcsError
from sharcs.methods.sharcs.config import SharcsConfig
from sharcs.methods.sharcs.model import SharcsModel, get_sharcs_model

if TYPE_CHECKING:
    from sharcs.training.options import TrainOptions


def default_adaptive_layer(num_layers: int, sandwich: bool = False) -> int:
    """K = a third of the layers, rounded, at least 1 (2 for 6 layers, 4 for 12); for the sandwich
    recipe a sixth (1 for 6 layers, 2 for 12): its narrow path keeps the residual stream, so each narrow
    layer costs about a quarter of a full one, and with K = N/3 the narrow path alone would already
    spend half the full model's FLOPs, leaving a budget of 0.5 nothing for full-width samples."""
    return max(1, round(num_layers / (6 if sandwich else 3)))


def sharcs_config(options: TrainOptions, num_layers: int) -> SharcsConfig:
    """The SharcsConfig of a run; K defaults to `default_adaptive_layer`."""
    threshold = options.threshold
    if threshold is None:
        if len(options.widths) != 2:
            raise SharcsError(
                f"{len(options.widths)} widths need {len(options.widths) - 1} descending thresholds, "
                "e.g. --threshold 0.8,0.5",
                option="threshold",
            )
        threshold = 0.6
    sandwich = options.method == "sharcs" and options.recipe == "sandwich"
    k = options.adaptive_layer
    return SharcsConfig(
        widths=options.widths,
        adaptive_layer=k if k is not None else default_adaptive_layer(num_layers, sandwich),
        router_hidden_size=options.router_hidden_size,
        threshold=threshold,
        window=options.window,
        norm_init=options.norm_init,
        keep_residual=options.keeps_residual,
    )


def sharcs(options: TrainOptions, base: Any, num_layers: int) -> SharcsModel:
    return get_sharcs_model(base, sharcs_config(options, num_layers))


def cascade(options: TrainOptions, base: Any, num_layers: int) -> SharcsModel:
    if base.config.num_labels < 2:
        raise SharcsError("--method cascade needs class probabilities, which a regression task has not")
    config = dataclasses.replace(
        sharcs_config(options, num_layers), routing="cascade", cascade_confidence=options.cascade_confidence
    )
    return get_sharcs_model(base, config)


def full(options: TrainOptions, base: Any, num_layers: int) -> SharcsModel:
    config = dataclasses.replace(
        sharcs_config(options, num_layers), widths=(1.0,), threshold=(), routing="fixed", fixed_width=1.0
    )
    return get_sharcs_model(base, config)


def fixed(options: TrainOptions, base: Any, num_layers: int) -> SharcsModel:
    config = sharcs_config(options, num_layers)
    widths = tuple(sorted({options.fixed_width, 1.0}))
    threshold = config.threshold if len(widths) == 2 else ()
    config = dataclasses.replace(
        config, widths=widths, threshold=threshold, routing="fixed", fixed_width=options.fixed_width
    )
    return get_sharcs_model(base, config)


def random(options: TrainOptions, base: Any, num_layers: int) -> SharcsModel:
    config = dataclasses.replace(
        sharcs_config(options, num_layers), routing="random", width_shares=options.width_shares
    )
    return get_sharcs_model(base, config)
