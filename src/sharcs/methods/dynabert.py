"""DynaBERT-style width baseline (docs/method.md §6): heads and FFN narrowed, residual stream kept at d.

    model = DynaBertModel(AutoModelForSequenceClassification.from_pretrained(path), DynaBertConfig())
    out = model(**batch, labels=labels)   # training: every width's loss, full-width logits
    out = model(**batch, width=0.5)       # every sample at one width

At width w every layer 1..N runs its first w*H heads (of the unchanged head size) and its first w*f FFN
units, reading and writing all d channels of the residual stream; the pretrained LayerNorms and the
task head are shared by all widths. Width 1.0 is the wrapped model itself.

Training sums the task loss of every configured width and, with `distill`, adds in-place distillation:
each narrower width matches the detached full-width logits (KL divergence, MSE for regression).

Deviations from DynaBERT proper (Hou et al., 2020): the teacher is the model's own full width, not a
separately fine-tuned copy, and only logits are distilled (no hidden-state or embedding losses); depth
is not adaptive (every width runs all N layers); and heads and FFN neurons are not rewired by
importance, so each width keeps the leading ones as they are.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from transformers import PreTrainedModel

from sharcs.errors import SharcsError
from sharcs.methods.sharcs.config import check_heads, validate_widths
from sharcs.modeling.adaptive import (
    AdaptiveModel,
    HeadParts,
    RoutedOutput,
    Setting,
    config_from_dict,
    embed,
    run_layers,
    trim_padding,
)
from sharcs.modeling.architectures import get_module
from sharcs.modeling.flops import head_flops, layer_flops
from sharcs.modeling.layers import LayerParts, SliceCache
from sharcs.modeling.losses import distillation_loss, task_loss

if TYPE_CHECKING:
    from sharcs.training.options import TrainOptions


@dataclass
class DynaBertConfig:
    """Widths of a DynaBERT-style model.

    widths: ascending, ending at 1.0; each w must make w * num_heads a whole number.
    width: the width forward runs at when given none (None: the narrowest).
    distill: add in-place distillation from the full width to every narrower width's training loss.
    """

    widths: tuple[float, ...] = (0.25, 0.5, 0.75, 1.0)
    width: float | None = None
    distill: bool = True

    def __post_init__(self) -> None:
        self.widths = tuple(float(w) for w in self.widths)
        if self.width is not None:
            self.width = float(self.width)
        validate_widths(self.widths)
        widths = list(self.widths)
        if self.width is not None and self.width not in self.widths:
            raise SharcsError(f"width: must be one of the widths {widths} or None, got {self.width}")
        if not isinstance(self.distill, bool):
            raise SharcsError(f"distill: must be true or false, got {self.distill!r}")

    @property
    def default_width(self) -> float:
        """The width forward runs at when given none."""
        return self.widths[0] if self.width is None else self.width

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DynaBertConfig:
        return config_from_dict(cls, data)


class DynaBertModel(AdaptiveModel):
    """A `*ForSequenceClassification` model whose every layer runs at any configured width."""

    method = "dynabert"
    config_class = DynaBertConfig

    def __init__(self, base: PreTrainedModel, config: DynaBertConfig | None = None):
        config = config or DynaBertConfig()
        super().__init__(base, config)
        check_heads(config.widths, self.dims.heads)
        layers = get_module(base.base_model, self.layout.layers)
        self.layer_parts = [LayerParts.find(layer, self.layout) for layer in layers]  # not registered twice
        self.head_parts = HeadParts.find(base, self.layout)
        self._sliced = SliceCache([t for parts in self.layer_parts for t in parts.sources])

    def run_width(self, hidden: torch.Tensor, attention_mask: torch.Tensor, width: float) -> torch.Tensor:
        """Layers 1..N at `width` on the embeddings, then the full-width task head; returns logits."""
        weights = self._sliced(
            width, lambda: [parts.slice(self.dims, width, keep_residual=True) for parts in self.layer_parts]
        )
        hidden = run_layers(self, hidden, attention_mask, self.layer_parts, weights)
        return self.head_parts(hidden[:, 0])

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        width: float | None = None,
    ) -> RoutedOutput:
        """Every sample at `width` (default: the config's); with labels and no width, the training
        objective over all widths, returning the full-width logits."""
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        hidden, attention_mask = trim_padding(embed(self, input_ids, token_type_ids), attention_mask)
        if labels is not None and width is None:
            loss, logits = self.all_widths_loss(hidden, attention_mask, labels)
            width = 1.0
        else:
            width = self.config.default_width if width is None else width
            width = self.config.widths[self.width_index(width)]  # the configured value of a near match
            logits = self.run_width(hidden, attention_mask, width)
            loss = None if labels is None else task_loss(logits, labels)
        routes = torch.full((len(input_ids),), width, device=logits.device)
        return RoutedOutput(loss=loss, logits=logits, routes=routes)

    def all_widths_loss(
        self, hidden: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(sum of every width's task loss plus, with distill, each narrower width's distillation loss
        from the detached full-width logits; the full-width logits)."""
        full_logits = self.run_width(hidden, attention_mask, 1.0)
        teacher = full_logits.detach()
        loss = task_loss(full_logits, labels)
        for width in self.config.widths[:-1]:
            logits = self.run_width(hidden, attention_mask, width)
            loss = loss + task_loss(logits, labels)
            if self.config.distill:
                loss = loss + distillation_loss(logits, teacher)
        return loss, full_logits

    # ------------------------------------------------------------------ the AdaptiveModel interface
    @property
    def route_values(self) -> tuple[float, ...]:
        return self.config.widths

    def sample_flops(self, route: float, length: int, forced: bool = False, **setting: Any) -> int:
        """Every layer with heads and FFN narrowed to `route` (residual kept), then the full head."""
        dims = self.dims
        return dims.layers * layer_flops(dims, route, length, keep_residual=True) + head_flops(
            dims, 1.0, self.num_labels
        )

    def curve_settings(self) -> list[Setting]:
        """Each width, narrowest first."""
        return [Setting(f"width={w:g}", {"width": w}) for w in self.config.widths]


def preset(options: TrainOptions, base: PreTrainedModel, num_layers: int) -> DynaBertModel:
    """`--method dynabert`: heads and FFN narrowed to each of `--widths`."""
    return DynaBertModel(base, DynaBertConfig(widths=options.widths))
