"""Width-sliced encoder layers: one set of pretrained weights, run at any width w (docs/method.md §1).

At width w an adaptive layer narrows the residual stream itself to w*d channels: w*H heads of the
unchanged head size, w*f FFN units, and private per-width LayerNorms of size w*d. With
`keep_residual` it reads and writes all d channels and narrows only the heads and FFN units
(DynaBERT-style). The weights are the leading slices of the pretrained matrices, so every width
shares them. The width is always an argument; nothing here remembers a "current width".

One `layer_forward` serves every registered architecture: post-LN (BERT) or pre-LN (ModernBERT), a plain
or gated FFN (GeGLU: value and gate units sliced together), separate or fused Q/K/V, and whatever each
layer's attention takes besides its weights (`AttentionInputs`: MPNet's position bias, ModernBERT's RoPE
and sliding window, DeBERTa's disentangled position terms) - see docs/architecture.md.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from sharcs.methods.sharcs.config import width_key
from sharcs.modeling.architectures import AttentionInputs, Layout, get_module


@dataclass(frozen=True)
class Dims:
    """Sizes of the base encoder: hidden d, heads H, head size d_h, FFN f, layers N; `gated`: the FFN's
    input projection has 2f outputs (value and gate units)."""

    hidden: int
    heads: int
    ffn: int
    layers: int
    gated: bool = False
    position_terms: int = 0  # DeBERTa's c2p / p2c terms per layer (0, 1 or 2)
    position_span: int = 0  # and its span of relative positions (rows 0..2*span-1)

    @property
    def head_size(self) -> int:
        return self.hidden // self.heads

    def at(self, width: float) -> tuple[int, int]:
        """(hidden, ffn) sizes at a width: (w*d, w*f), with w*d a whole number of heads."""
        return round(width * self.heads) * self.head_size, round(width * self.ffn)


@dataclass
class SlicedWeights:
    """The leading slices of one layer's matrices at one width; Q, K and V fused into one matrix, and a
    gated FFN's value and gate units into one (value | gate). Biases are None where the model has none."""

    qkv_weight: torch.Tensor
    qkv_bias: torch.Tensor | None
    out_weight: torch.Tensor
    out_bias: torch.Tensor | None
    ffn_in_weight: torch.Tensor
    ffn_in_bias: torch.Tensor | None
    ffn_out_weight: torch.Tensor
    ffn_out_bias: torch.Tensor | None

    def contiguous(self) -> SlicedWeights:
        """Detached contiguous copies, for fast inference (strided views make slow matmuls)."""
        return SlicedWeights(
            **{name: None if t is None else t.detach().contiguous() for name, t in vars(self).items()}
        )


def _rows(linear: nn.Linear, parts: int) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
    """(weight, bias) of each of the `parts` equal row blocks of a fused Linear (views)."""
    weights = linear.weight.chunk(parts)
    biases = linear.bias.chunk(parts) if linear.bias is not None else [None] * parts
    return list(zip(weights, biases, strict=True))


def _cat_rows(
    blocks: list[tuple[torch.Tensor, torch.Tensor | None]], rows: int, cols: int | None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The leading `rows` rows (and `cols` columns; None: all) of each block, stacked."""
    weight = torch.cat([w[:rows, :cols] for w, _ in blocks])
    has_bias = blocks[0][1] is not None
    return weight, torch.cat([b[:rows] for _, b in blocks]) if has_bias else None


def _bias(linear: nn.Linear, size: int | None) -> torch.Tensor | None:
    return None if linear.bias is None else linear.bias[:size]


@dataclass(frozen=True)
class LayerParts:
    """The pretrained modules of one encoder layer, found once through its layout."""

    layer: nn.Module  # the Hugging Face layer: its train/eval mode switches dropout
    qkv: tuple[nn.Linear, ...]  # query, key, value; or one fused Linear (rows q | k | v)
    attn_out: nn.Linear
    ffn_in: nn.Linear
    ffn_act: nn.Module
    ffn_out: nn.Linear
    attn_dropout_p: float  # dropout on the attention probabilities, in train mode
    attn_out_dropout: nn.Module
    ffn_hidden_dropout: nn.Module
    ffn_dropout: nn.Module
    attn_norm: nn.Module  # nn.LayerNorm, or nn.Identity (ModernBERT's first layer)
    ffn_norm: nn.Module
    position_dropout: nn.Module  # on DeBERTa's relative-position embeddings
    pre_norm: bool
    gated: bool

    @classmethod
    def find(cls, layer: nn.Module, layout: Layout) -> LayerParts:
        def module(path: str | None) -> nn.Module:
            return get_module(layer, path) if path else nn.Identity()

        paths = (layout.query, layout.key, layout.value)
        dropout = get_module(layer, layout.attn_dropout)
        return cls(
            layer=layer,
            qkv=tuple(module(path) for path in dict.fromkeys(paths)),  # one module if fused
            attn_out=module(layout.attn_out),
            ffn_in=module(layout.ffn_in),
            ffn_act=module(layout.ffn_act),
            ffn_out=module(layout.ffn_out),
            attn_dropout_p=float(dropout.p if isinstance(dropout, nn.Dropout) else dropout),
            attn_out_dropout=module(layout.attn_out_dropout),
            ffn_hidden_dropout=module(layout.ffn_hidden_dropout),
            ffn_dropout=module(layout.ffn_dropout),
            attn_norm=module(layout.attn_norm),
            ffn_norm=module(layout.ffn_norm),
            position_dropout=module(layout.position_dropout),
            pre_norm=layout.pre_norm,
            gated=layout.gated_ffn,
        )

    @property
    def sources(self) -> list[torch.Tensor]:
        """Every tensor that `slice` reads."""
        linears = (*self.qkv, self.attn_out, self.ffn_in, self.ffn_out)
        return [t for m in linears for t in (m.weight, m.bias) if t is not None]

    def slice(self, dims: Dims, width: float, keep_residual: bool = False) -> SlicedWeights:
        """Leading slices of the weights at `width` (views, so gradients reach the shared weights).

        The residual stream narrows to w*d channels, or with `keep_residual` keeps all d of them while
        only the leading w*H heads and w*f FFN units remain.
        """
        attention, ffn = dims.at(width)
        residual = None if keep_residual else attention  # the residual channels read and written
        qkv = _rows(self.qkv[0], 3) if len(self.qkv) == 1 else [(m.weight, m.bias) for m in self.qkv]
        qkv_weight, qkv_bias = _cat_rows(qkv, attention, residual)
        ffn_in = _rows(self.ffn_in, 2) if self.gated else [(self.ffn_in.weight, self.ffn_in.bias)]
        ffn_in_weight, ffn_in_bias = _cat_rows(ffn_in, ffn, residual)
        return SlicedWeights(
            qkv_weight=qkv_weight,
            qkv_bias=qkv_bias,
            out_weight=self.attn_out.weight[:residual, :attention],
            out_bias=_bias(self.attn_out, residual),
            ffn_in_weight=ffn_in_weight,
            ffn_in_bias=ffn_in_bias,
            ffn_out_weight=self.ffn_out.weight[:residual, :ffn],
            ffn_out_bias=_bias(self.ffn_out, residual),
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


def make_norm(source: nn.Module, size: int, init: str) -> nn.Module:
    """A LayerNorm of `size` channels, from the leading entries of `source` ("copy") or 1/0 ("scratch");
    an nn.Identity for an nn.Identity `source` (a layer without that norm)."""
    if not isinstance(source, nn.LayerNorm):
        return nn.Identity()
    has_bias = source.bias is not None
    norm = nn.LayerNorm(
        size, eps=source.eps, bias=has_bias, device=source.weight.device, dtype=source.weight.dtype
    )
    if init == "copy":
        with torch.no_grad():
            norm.weight.copy_(source.weight[:size])
            if has_bias:
                norm.bias.copy_(source.bias[:size])
    return norm


def rotate(x: torch.Tensor, rotary: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """RoPE on whole heads, x: (batch, heads, length, head size); cos and sin: (1, length, head size).
    The two halves of each head turn as pairs: x*cos + (-x2, x1)*sin, computed in float32."""
    cos, sin = (t[:, None] for t in rotary)
    first, second = x.float().chunk(2, dim=-1)
    turned = torch.cat((-second, first), dim=-1)
    return (x.float() * cos + turned * sin).to(x.dtype)


def layer_forward(
    hidden_states: torch.Tensor,
    attention: AttentionInputs,
    parts: LayerParts,
    weights: SlicedWeights,
    attn_norm: nn.Module,
    ffn_norm: nn.Module,
    head_size: int,
) -> torch.Tensor:
    """One encoder layer, post-LN or pre-LN (`parts.pre_norm`), on a residual stream (batch, length, r)
    of r = w*d channels (d with DynaBERT's full residual).

    The number of heads is the attention width of `weights` (out_weight's input size) / head_size.
    attention: this layer's mask and RoPE (`AttentionInputs`); an additive mask that holds all the model's
    heads (MPNet's position bias) contributes the leading heads this layer keeps.
    The pretrained layer's own dropout and activation modules are used, so train/eval mode follows it.
    """
    batch, length, _ = hidden_states.shape
    width = weights.out_weight.shape[1]  # heads x head size: w*d here, fewer in DynaBERT's layers
    heads = width // head_size
    x = attn_norm(hidden_states) if parts.pre_norm else hidden_states
    qkv = F.linear(x, weights.qkv_weight, weights.qkv_bias)
    q, k, v = qkv.view(batch, length, 3, heads, head_size).permute(2, 0, 3, 1, 4)
    if attention.rotary is not None:
        q, k = rotate(q, attention.rotary), rotate(k, attention.rotary)
    mask = attention.mask
    if mask is not None and mask.dtype != torch.bool and mask.shape[1] > 1:
        mask = mask[:, :heads]
    if attention.relative is not None:
        bias = _relative_scores(q, k, x.shape[-1], attention, parts, weights)
        mask = bias if mask is None else bias.masked_fill(~mask, float("-inf"))
    dropout_p = parts.attn_dropout_p if parts.layer.training else 0.0
    context = F.scaled_dot_product_attention(
        q, k, v, attn_mask=mask, dropout_p=dropout_p, scale=attention.scale
    )
    context = context.transpose(1, 2).reshape(batch, length, width)
    attn_out = parts.attn_out_dropout(F.linear(context, weights.out_weight, weights.out_bias))
    if parts.pre_norm:
        hidden_states = hidden_states + attn_out
        return hidden_states + _ffn(ffn_norm(hidden_states), parts, weights)
    hidden_states = attn_norm(attn_out + hidden_states)
    return ffn_norm(_ffn(hidden_states, parts, weights) + hidden_states)


def _relative_scores(
    q: torch.Tensor,
    k: torch.Tensor,
    residual: int,
    attention: AttentionInputs,
    parts: LayerParts,
    weights: SlicedWeights,
) -> torch.Tensor:
    """DeBERTa's disentangled terms, (batch, heads, L, L), already scaled: the relative-position embeddings
    (their first `residual` channels) projected through the layer's sliced key (c2p) and query (p2c)
    projections, which the positions share with the content."""
    relative = attention.relative
    batch, heads, length, head_size = q.shape
    width = heads * head_size
    rows = parts.position_dropout(relative.embeddings[:, :residual])

    def project(block: int) -> torch.Tensor:  # block 0: query rows of the fused matrix, 1: key rows
        weight = weights.qkv_weight[block * width : (block + 1) * width]
        bias = None if weights.qkv_bias is None else weights.qkv_bias[block * width : (block + 1) * width]
        return F.linear(rows, weight, bias).view(-1, heads, head_size).transpose(0, 1)  # (H, n, d_h)

    index = relative.index.expand(batch, heads, length, length)
    scores = q.new_zeros(batch, heads, length, length)
    if relative.c2p:  # query i against the position of key j relative to i
        scores = scores + (q @ project(1).transpose(-1, -2)).gather(-1, index)
    if relative.p2c:  # key j against the same relative position, as a query projection
        by_key = k @ project(0).transpose(-1, -2)  # (B, H, key j, n)
        scores = scores + by_key.gather(-1, index.transpose(-1, -2)).transpose(-1, -2)
    return scores * (head_size**-0.5 if attention.scale is None else attention.scale)


def _ffn(x: torch.Tensor, parts: LayerParts, weights: SlicedWeights) -> torch.Tensor:
    units = F.linear(x, weights.ffn_in_weight, weights.ffn_in_bias)
    if parts.gated:
        value, gate = units.chunk(2, dim=-1)
        units = parts.ffn_act(value) * gate
    else:
        units = parts.ffn_act(units)
    units = parts.ffn_hidden_dropout(units)
    return parts.ffn_dropout(F.linear(units, weights.ffn_out_weight, weights.ffn_out_bias))


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
        self, hidden_states: torch.Tensor, attention: AttentionInputs, width: float, weights: SlicedWeights
    ) -> torch.Tensor:
        key = width_key(width)
        return layer_forward(
            hidden_states,
            attention,
            self.parts,
            weights,
            self.attn_norms[key],
            self.ffn_norms[key],
            self.dims.head_size,
        )
