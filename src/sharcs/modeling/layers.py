"""Width-sliced encoder layers: one set of pretrained weights, run at any width w (docs/method.md §1).

At width w an adaptive layer narrows the residual stream itself to w*d channels: w*H heads of the
unchanged head size, w*f FFN units, and private per-width LayerNorms of size w*d. With
`keep_residual` it reads and writes all d channels and narrows only the heads and FFN units
(DynaBERT-style). The weights are the leading slices of the pretrained matrices, so every width
shares them. The width is always an argument; nothing here remembers a "current width".
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn

from sharcs.methods.sharcs.config import width_key
from sharcs.modeling.architectures import Layout, get_module


@dataclass(frozen=True)
class Dims:
    """Sizes of the base encoder: hidden d, heads H, head size d_h, FFN f, layers N."""

    hidden: int
    heads: int
    ffn: int
    layers: int

    @property
    def head_size(self) -> int:
        return self.hidden // self.heads

    def at(self, width: float) -> tuple[int, int]:
        """(hidden, ffn) sizes at a width: (w*d, w*f), with w*d a whole number of heads."""
        return round(width * self.heads) * self.head_size, round(width * self.ffn)


@dataclass
class SlicedWeights:
    """The leading slices of one layer's matrices at one width; Q, K and V fused into one matrix."""

    qkv_weight: torch.Tensor
    qkv_bias: torch.Tensor
    out_weight: torch.Tensor
    out_bias: torch.Tensor
    ffn_in_weight: torch.Tensor
    ffn_in_bias: torch.Tensor
    ffn_out_weight: torch.Tensor
    ffn_out_bias: torch.Tensor

    def contiguous(self) -> SlicedWeights:
        """Detached contiguous copies, for fast inference (strided views make slow matmuls)."""
        return SlicedWeights(**{name: t.detach().contiguous() for name, t in vars(self).items()})


@dataclass(frozen=True)
class LayerParts:
    """The pretrained modules of one encoder layer, found once through its layout."""

    query: nn.Linear
    key: nn.Linear
    value: nn.Linear
    attn_out: nn.Linear
    ffn_in: nn.Linear
    ffn_act: nn.Module
    ffn_out: nn.Linear
    attn_dropout: nn.Dropout
    attn_out_dropout: nn.Module
    ffn_dropout: nn.Module
    attn_norm: nn.LayerNorm
    ffn_norm: nn.LayerNorm

    @classmethod
    def find(cls, layer: nn.Module, layout: Layout) -> LayerParts:
        paths = {f.name: getattr(layout, f.name) for f in fields(cls)}
        return cls(
            **{name: get_module(layer, path) if path else nn.Identity() for name, path in paths.items()}
        )

    @property
    def sources(self) -> list[torch.Tensor]:
        """Every tensor that `slice` reads."""
        linears = (self.query, self.key, self.value, self.attn_out, self.ffn_in, self.ffn_out)
        return [t for m in linears for t in (m.weight, m.bias)]

    def slice(self, dims: Dims, width: float, keep_residual: bool = False) -> SlicedWeights:
        """Leading slices of the weights at `width` (views, so gradients reach the shared weights).

        The residual stream narrows to w*d channels, or with `keep_residual` keeps all d of them while
        only the leading w*H heads and w*f FFN units remain.
        """
        if keep_residual:
            return self.slice_heads_and_ffn(dims, width)
        hidden, ffn = dims.at(width)
        qkv = (self.query, self.key, self.value)
        return SlicedWeights(
            qkv_weight=torch.cat([m.weight[:hidden, :hidden] for m in qkv]),
            qkv_bias=torch.cat([m.bias[:hidden] for m in qkv]),
            out_weight=self.attn_out.weight[:hidden, :hidden],
            out_bias=self.attn_out.bias[:hidden],
            ffn_in_weight=self.ffn_in.weight[:ffn, :hidden],
            ffn_in_bias=self.ffn_in.bias[:ffn],
            ffn_out_weight=self.ffn_out.weight[:hidden, :ffn],
            ffn_out_bias=self.ffn_out.bias[:hidden],
        )

    def slice_heads_and_ffn(self, dims: Dims, width: float) -> SlicedWeights:
        """The leading w*H heads and w*f FFN units, reading and writing all d residual channels."""
        attention, ffn = dims.at(width)
        qkv = (self.query, self.key, self.value)
        return SlicedWeights(
            qkv_weight=torch.cat([m.weight[:attention] for m in qkv]),
            qkv_bias=torch.cat([m.bias[:attention] for m in qkv]),
            out_weight=self.attn_out.weight[:, :attention],
            out_bias=self.attn_out.bias,
            ffn_in_weight=self.ffn_in.weight[:ffn],
            ffn_in_bias=self.ffn_in.bias[:ffn],
            ffn_out_weight=self.ffn_out.weight[:, :ffn],
            ffn_out_bias=self.ffn_out.bias,
        )


class SliceCache:
    """Sliced weights for inference, as contiguous copies built once and reused.

        weights = cache(key, lambda: [parts.slice(dims, w) for parts in layer_parts])

    While gradients are on it returns `build()` itself (live views, so training updates flow through).
    Otherwise it returns cached `.contiguous()` copies of what `build()` returns (anything with a
    `contiguous()` method, or a list of such), rebuilt whenever a source tensor changes (an optimizer
    step, `load_state_dict`, a move to another device): the key includes every source's storage and
    version.
    """

    def __init__(self, sources: list[torch.Tensor]):
        self.sources = sources
        self.entries: dict[object, tuple[tuple, object]] = {}

    def __call__(self, key: object, build):
        if torch.is_grad_enabled():
            return build()
        stamp = tuple((t.data_ptr(), t._version) for t in self.sources)
        hit = self.entries.get(key)
        if hit is None or hit[0] != stamp:
            built = build()
            copy = [w.contiguous() for w in built] if isinstance(built, list) else built.contiguous()
            hit = self.entries[key] = (stamp, copy)
        return hit[1]


def make_norm(source: nn.LayerNorm, size: int, init: str) -> nn.LayerNorm:
    """A LayerNorm of `size` channels, from the leading entries of `source` ("copy") or 1/0 ("scratch")."""
    norm = nn.LayerNorm(size, eps=source.eps, device=source.weight.device, dtype=source.weight.dtype)
    if init == "copy":
        with torch.no_grad():
            norm.weight.copy_(source.weight[:size])
            norm.bias.copy_(source.bias[:size])
    return norm


def layer_forward(
    hidden_states: torch.Tensor,
    attn_mask: torch.Tensor | None,
    parts: LayerParts,
    weights: SlicedWeights,
    attn_norm: nn.LayerNorm,
    ffn_norm: nn.LayerNorm,
    head_size: int,
    position_bias: torch.Tensor | None = None,
) -> torch.Tensor:
    """One post-LN encoder layer on a residual stream of w*d channels, shape (batch, length, w*d).

    The number of heads is the attention width of `weights` (out_weight's input size) / head_size.
    attn_mask: boolean (batch, 1, 1, length), True at real tokens; None when nothing is padding.
    position_bias: a per-head score bias of all the model's heads, (1, heads, length, length) (MPNet);
    the leading heads this layer keeps are added.
    The pretrained layer's own dropout and activation modules are used, so train/eval mode follows it.
    """
    batch, length, _ = hidden_states.shape
    attention = weights.out_weight.shape[1]  # heads x head size: w*d here, fewer in DynaBERT's layers
    qkv = F.linear(hidden_states, weights.qkv_weight, weights.qkv_bias)
    q, k, v = qkv.view(batch, length, 3, attention // head_size, head_size).permute(2, 0, 3, 1, 4)
    if position_bias is not None:
        bias = position_bias[:, : attention // head_size].to(q.dtype)
        attn_mask = bias if attn_mask is None else torch.where(attn_mask, bias, float("-inf"))
    dropout_p = parts.attn_dropout.p if parts.attn_dropout.training else 0.0
    context = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=dropout_p)
    context = context.transpose(1, 2).reshape(batch, length, attention)
    attn_out = parts.attn_out_dropout(F.linear(context, weights.out_weight, weights.out_bias))
    hidden_states = attn_norm(attn_out + hidden_states)
    ffn = parts.ffn_act(F.linear(hidden_states, weights.ffn_in_weight, weights.ffn_in_bias))
    ffn = parts.ffn_dropout(F.linear(ffn, weights.ffn_out_weight, weights.ffn_out_bias))
    return ffn_norm(ffn + hidden_states)


class AdaptiveLayer(nn.Module):
    """One encoder layer after the router, runnable at any configured width.

    It owns only the per-width LayerNorms; the matrices stay in the wrapped Hugging Face layer and are
    sliced from there, so all widths share them.
    """

    def __init__(
        self,
        layer: nn.Module,
        layout: Layout,
        dims: Dims,
        widths: tuple[float, ...],
        init: str,
        keep_residual: bool = False,
    ):
        super().__init__()
        self.dims = dims
        self.parts = LayerParts.find(layer, layout)  # a plain dataclass: not registered twice
        sizes = {w: dims.hidden if keep_residual else dims.at(w)[0] for w in widths}
        self.attn_norms = nn.ModuleDict(
            {width_key(w): make_norm(self.parts.attn_norm, sizes[w], init) for w in widths}
        )
        self.ffn_norms = nn.ModuleDict(
            {width_key(w): make_norm(self.parts.ffn_norm, sizes[w], init) for w in widths}
        )

    def forward(
        self,
        hidden_states: torch.Tensor,
        attn_mask: torch.Tensor | None,
        width: float,
        weights: SlicedWeights,
        position_bias: torch.Tensor | None = None,
    ) -> torch.Tensor:
        key = width_key(width)
        return layer_forward(
            hidden_states,
            attn_mask,
            self.parts,
            weights,
            self.attn_norms[key],
            self.ffn_norms[key],
            self.dims.head_size,
            position_bias,
        )
