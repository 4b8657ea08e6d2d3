"""DynaBERT-style width baseline (method.md §6): heads and FFN narrowed, residual stream kept at d.

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
from typing import Any

import torch
import torch.nn.functional as F
from transformers import PreTrainedModel

from sharcs.adaptive import (
    AdaptiveModel,
    HeadParts,
    RoutedOutput,
    Setting,
    config_from_dict,
    embed,
    sdpa_mask,
    task_loss,
    trim_padding,
)
from sharcs.architectures import get_module
from sharcs.errors import SharcsError
from sharcs.flops import head_flops
from sharcs.layers import Dims, LayerParts, SliceCache, SlicedWeights


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
        widths = list(self.widths)
        if not widths:
            raise SharcsError("widths: give at least one width, e.g. (0.25, 1.0)")
        if any(not 0.0 < w <= 1.0 for w in widths):
            raise SharcsError(f"widths: every width must lie in (0, 1], got {widths}")
        if widths != sorted(set(widths)):
            raise SharcsError(f"widths: must be strictly ascending, got {widths}")
        if widths[-1] != 1.0:
            raise SharcsError(f"widths: the last width must be 1.0 (the full model), got {widths}")
        if self.width is not None and self.width not in self.widths:
            raise SharcsError(f"width: must be one of the widths {widths} or None, got {self.width}")
        if not isinstance(self.distill, bool):
            raise SharcsError(f"distill: must be true or false, got {self.distill!r}")

    @property
    def default_width(self) -> float:
        """The width forward runs at when given none."""
        return self.widths[0] if self.width is None else self.width

    def check_against(self, num_heads: int) -> None:
        """Raise SharcsError if a width does not keep a whole number of the model's heads."""
        for w in self.widths:
            heads = w * num_heads
            if abs(heads - round(heads)) > 1e-9:
                raise SharcsError(
                    f"widths: width {w} gives {heads:g} of {num_heads} attention heads; "
                    f"each width times {num_heads} must be a whole number"
                )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DynaBertConfig:
        return config_from_dict(cls, data)


def slice_heads_and_ffn(parts: LayerParts, dims: Dims, width: float) -> SlicedWeights:
    """One layer's weights at `width`: the leading w*H heads and w*f FFN units, all d input channels.

    Views of the shared weights (the fused QKV a concatenation of views), so gradients reach them.
    """
    attention, ffn = dims.at(width)
    qkv = (parts.query, parts.key, parts.value)
    return SlicedWeights(
        qkv_weight=torch.cat([m.weight[:attention] for m in qkv]),
        qkv_bias=torch.cat([m.bias[:attention] for m in qkv]),
        out_weight=parts.attn_out.weight[:, :attention],
        out_bias=parts.attn_out.bias,
        ffn_in_weight=parts.ffn_in.weight[:ffn],
        ffn_in_bias=parts.ffn_in.bias[:ffn],
        ffn_out_weight=parts.ffn_out.weight[:, :ffn],
        ffn_out_bias=parts.ffn_out.bias,
    )


def narrow_layer_forward(
    hidden_states: torch.Tensor,
    attn_mask: torch.Tensor | None,
    parts: LayerParts,
    weights: SlicedWeights,
    head_size: int,
) -> torch.Tensor:
    """One post-LN encoder layer with as many heads as `weights` holds, on the full residual stream.

    hidden_states: (batch, length, d); attn_mask: boolean (batch, 1, 1, length) or None (no padding).
    The layer's own dropout, activation and LayerNorm modules are used, so train/eval mode follows it.
    """
    batch, length, _ = hidden_states.shape
    attention = weights.out_weight.shape[1]
    qkv = F.linear(hidden_states, weights.qkv_weight, weights.qkv_bias)
    q, k, v = qkv.view(batch, length, 3, attention // head_size, head_size).permute(2, 0, 3, 1, 4)
    dropout_p = parts.attn_dropout.p if parts.attn_dropout.training else 0.0
    context = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=dropout_p)
    context = context.transpose(1, 2).reshape(batch, length, attention)
    attn_out = parts.attn_out_dropout(F.linear(context, weights.out_weight, weights.out_bias))
    hidden_states = parts.attn_norm(attn_out + hidden_states)
    ffn = parts.ffn_act(F.linear(hidden_states, weights.ffn_in_weight, weights.ffn_in_bias))
    ffn = parts.ffn_dropout(F.linear(ffn, weights.ffn_out_weight, weights.ffn_out_bias))
    return parts.ffn_norm(ffn + hidden_states)


def distillation_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """KL(teacher || student) over the classes, or MSE for a one-output (regression) head."""
    if student.shape[-1] == 1:
        return F.mse_loss(student, teacher)
    return F.kl_div(
        F.log_softmax(student, -1), F.log_softmax(teacher, -1), reduction="batchmean", log_target=True
    )


class DynaBertModel(AdaptiveModel):
    """A `*ForSequenceClassification` model whose every layer runs at any configured width."""

    method = "dynabert"
    config_class = DynaBertConfig

    def __init__(self, base: PreTrainedModel, config: DynaBertConfig | None = None):
        config = config or DynaBertConfig()
        super().__init__(base, config)
        config.check_against(self.dims.heads)
        layers = get_module(base.base_model, self.layout.layers)
        self.layer_parts = [LayerParts.find(layer, self.layout) for layer in layers]  # not registered twice
        self.head_parts = HeadParts.find(base, self.layout)
        self._sliced = SliceCache([t for parts in self.layer_parts for t in parts.sources])

    def run_width(self, hidden: torch.Tensor, attention_mask: torch.Tensor, width: float) -> torch.Tensor:
        """Layers 1..N at `width` on the embeddings, then the full-width task head; returns logits."""
        attn_mask = sdpa_mask(attention_mask)
        weights = self._sliced(
            width, lambda: [slice_heads_and_ffn(parts, self.dims, width) for parts in self.layer_parts]
        )
        for parts, layer_weights in zip(self.layer_parts, weights, strict=True):
            hidden = narrow_layer_forward(hidden, attn_mask, parts, layer_weights, self.dims.head_size)
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

    def width_index(self, width: float) -> int:
        for i, w in enumerate(self.config.widths):
            if abs(w - width) < 1e-9:
                return i
        raise SharcsError(f"width {width} is not one of this model's widths {list(self.config.widths)}")

    def sample_flops(self, route: float, length: int) -> int:
        """Per layer: Q/K/V and output projections d x w*d, FFN d x w*f, attention 4*L^2*w*d; the head."""
        dims = self.dims
        attention, ffn = dims.at(route)
        projections = 2 * length * (4 * dims.hidden * attention + 2 * dims.hidden * ffn)
        layer = projections + 4 * length * length * attention
        return dims.layers * layer + head_flops(dims, 1.0, self.num_labels)

    def curve_settings(self) -> list[Setting]:
        """Each width, narrowest first."""
        return [Setting(f"width={w:g}", {"width": w}) for w in self.config.widths]
