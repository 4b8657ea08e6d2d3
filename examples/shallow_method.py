"""A new method in one file (docs/architecture.md, "Adding a method"): keep only the first few layers.

`--method shallow` (once this module is imported) fine-tunes a model cut after `--adaptive-layer K`
layers: every sample runs layers 1..K and the task head. It is the simplest fixed-cost baseline, and
small enough to show everything a method provides: a config dataclass, a model class (an
`AdaptiveModel`), a preset that builds it from the run's options, and one registration.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from sharcs.errors import SharcsError
from sharcs.methods.registry import Method, register_method
from sharcs.modeling.adaptive import (
    AdaptiveModel,
    HeadParts,
    RoutedOutput,
    Setting,
    embed,
    run_layers,
)
from sharcs.modeling.architectures import get_module
from sharcs.modeling.flops import head_flops, layer_flops
from sharcs.modeling.layers import LayerParts
from sharcs.modeling.losses import task_loss


@dataclass
class ShallowConfig:
    layers: int = 3  # how many of the model's layers every sample runs


class ShallowModel(AdaptiveModel):
    method = "shallow"  # the name a saved folder gives the model class
    config_class = ShallowConfig
    route_name = "layers"

    def __init__(self, base: Any, config: ShallowConfig):
        super().__init__(base, config)  # finds the layout and the dimensions, refuses unknown encoders
        if not 1 <= config.layers <= self.dims.layers:
            raise SharcsError(f"must lie in 1..{self.dims.layers}, got {config.layers}", option="layers")
        self.head = HeadParts.find(base, self.layout)
        kept = list(get_module(base.base_model, self.layout.layers))[: config.layers]
        self.parts = [LayerParts.find(layer, self.layout) for layer in kept]

    @property
    def route_values(self) -> tuple[float, ...]:
        return (float(self.config.layers),)

    def route_label(self, route: float) -> str:
        return f"layers {int(route)}"

    def sample_flops(self, route: float, length: int, forced: bool = False, **setting: Any) -> int:
        return int(route) * layer_flops(self.dims, 1.0, length) + head_flops(self.dims, 1.0, self.num_labels)

    def curve_settings(self) -> list[Setting]:
        return [Setting(f"layers={self.config.layers}", {})]

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
    ) -> RoutedOutput:
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        weights = [parts.slice(self.dims, 1.0) for parts in self.parts]  # the layers' own, at full width
        hidden = run_layers(self, embed(self, input_ids, token_type_ids), attention_mask, self.parts, weights)
        logits = self.head(hidden[:, 0])
        routes = torch.full((len(input_ids),), float(self.config.layers), device=input_ids.device)
        loss = None if labels is None else task_loss(logits, labels)
        return RoutedOutput(loss=loss, logits=logits, routes=routes)


def preset(options: Any, base: Any, num_layers: int) -> ShallowModel:
    """`sharcs train --method shallow --adaptive-layer K`: K layers (default: half of them)."""
    layers = options.adaptive_layer if options.adaptive_layer else max(1, num_layers // 2)
    return ShallowModel(base, ShallowConfig(layers=layers))


register_method(
    Method(
        "shallow",
        "keep only the first --adaptive-layer layers (an example method)",
        model=f"{__name__}:ShallowModel",
        preset=f"{__name__}:preset",
    )
)
