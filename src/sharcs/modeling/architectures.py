"""Where each supported Hugging Face encoder keeps its layers, norms and task head.

One small table per layout, keyed by `model_type` (as peft does), instead of branches spread through
the code. Only the registered types are accepted: a model whose type is not in `LAYOUTS` is refused,
even when its modules look like a registered layout's, since a look-alike may compute another function
(relative positions, a projected embedding, ...). Each registered layout is checked by the tests to
reproduce its Hugging Face model exactly at full width; `register_layout` adds one (see
examples/electra_backbone.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers.activations import ACT2FN

from sharcs.errors import SharcsError


@dataclass(frozen=True)
class RelativePositions:
    """DeBERTa's disentangled attention terms for one forward pass: each layer projects `embeddings`
    through its own (sliced) key and query projections and adds, for query i and key j,
    c2p: q_i . key_proj(embeddings)[index[i, j]] and p2c: k_j . query_proj(embeddings)[index[i, j]].

    embeddings: the relative-position embedding rows a sequence of this length can reach, (n, d).
    index: (L, L) row of `embeddings` for each query/key pair (its bucketed distance i - j).
    """

    embeddings: torch.Tensor
    index: torch.Tensor
    c2p: bool
    p2c: bool


@dataclass(frozen=True)
class AttentionInputs:
    """What one layer's attention takes besides its weights, for one forward pass.

    mask: for `scaled_dot_product_attention`: boolean (True = attend), or an additive float mask whose
    dimension 1 holds all the model's heads (each layer adds the leading heads it keeps); None attends
    everywhere. rotary: RoPE's (cos, sin), each (1, length, head size), turning queries and keys; None
    without RoPE. relative: DeBERTa's content-to-position and position-to-content terms. scale: the
    factor on the scores (None: 1 / sqrt(head size)).
    """

    mask: torch.Tensor | None = None
    rotary: tuple[torch.Tensor, torch.Tensor] | None = None
    relative: RelativePositions | None = None
    scale: float | None = None


# (base model, hidden states (batch, length, d), padding mask (batch, 1, 1, length) or None) -> one
# AttentionInputs per layer of the model
AttentionBuilder = Callable[[nn.Module, torch.Tensor, torch.Tensor | None], list[AttentionInputs]]


@dataclass(frozen=True)
class Layout:
    """Attribute paths of one encoder family (dotted, relative to the object named in each comment)."""

    layers: str  # encoder model -> ModuleList of layers
    # within one layer (query, key and value may name one fused Linear, its rows q | k | v):
    query: str
    key: str
    value: str
    attn_out: str
    attn_norm: str
    ffn_in: str
    ffn_act: str
    ffn_out: str
    ffn_norm: str
    attn_dropout: str  # dropout on attention probabilities: an nn.Dropout, or a float attribute
    attn_out_dropout: str | None  # dropout after the attention output projection, if any
    ffn_dropout: str | None  # dropout after the FFN's output projection, if any
    # within the classification model ("{base}" stands for its base_model_prefix):
    head_dense: str  # first dense layer of the head: the up-projection
    # "tanh" | "relu" | "gelu", the path of the head's activation module, or model -> activation
    head_act: str | Callable[[nn.Module], Callable[[torch.Tensor], torch.Tensor]]
    head_dropout: str
    dropout_before_dense: bool  # RoBERTa-style heads apply dropout before the dense layer too
    classifier: str  # final classifier shared by all widths
    uses_token_types: bool
    embedding_norm: str = "embeddings.LayerNorm"  # within the base model: the norm of the embeddings
    # config attribute names
    hidden_size: str = "hidden_size"
    num_heads: str = "num_attention_heads"
    ffn_size: str = "intermediate_size"
    num_layers: str = "num_hidden_layers"
    # what this layout cannot run exactly for a given model (e.g. a config option it does not
    # implement): a reason to refuse the model, or None
    problem: Callable[[nn.Module], str | None] | None = None
    # the layer's shape: pre-LN (x + attn(norm(x)), then x + ffn(norm(x))) instead of post-LN, and a
    # gated FFN (ffn_in's rows: value units | gate units; act(value) * gate) instead of act(ffn_in(x))
    pre_norm: bool = False
    gated_ffn: bool = False
    ffn_hidden_dropout: str | None = None  # within one layer: dropout on the FFN's hidden units, if any
    final_norm: str | None = None  # within the base model: the norm after the last layer (pre-LN), if any
    head_norm: str | None = None  # within the classification model: a norm after the head's activation
    head_input_dropout: str | None = None  # the dropout before the dense layer, if not head_dropout
    # each layer's attention inputs beyond the padding mask (a position bias, RoPE, a sliding window);
    # None: every layer takes the padding mask alone
    attention: AttentionBuilder | None = None
    position_dropout: str | None = None  # within one layer: dropout on relative-position embeddings
    # within the base model: an Embedding whose columns are per-head biases every layer adds (MPNet's
    # relative position bias), so that heads can only be reordered alike in all layers (rewire.py)
    head_bias: str | None = None
    # (base model) -> (c2p/p2c terms per layer, span of relative positions): DeBERTa's terms, for FLOPs
    relative_terms: Callable[[nn.Module], tuple[int, int]] | None = None


def absolute_positions_only(model: nn.Module) -> str | None:
    """BERT-family models may use relative position embeddings inside attention, which the width-sliced
    attention does not compute."""
    kind = getattr(model.config, "position_embedding_type", "absolute")
    if kind not in (None, "absolute"):
        return f"position_embedding_type {kind!r} is not supported (only 'absolute')"
    return None


_BERT_LAYER = dict(
    layers="encoder.layer",
    query="attention.self.query",
    key="attention.self.key",
    value="attention.self.value",
    attn_out="attention.output.dense",
    attn_norm="attention.output.LayerNorm",
    ffn_in="intermediate.dense",
    ffn_act="intermediate.intermediate_act_fn",
    ffn_out="output.dense",
    ffn_norm="output.LayerNorm",
    attn_dropout="attention.self.dropout",
    attn_out_dropout="attention.output.dropout",
    ffn_dropout="output.dropout",
)

BERT = Layout(
    **_BERT_LAYER,
    problem=absolute_positions_only,
    head_dense="{base}.pooler.dense",
    head_act="tanh",
    head_dropout="dropout",
    dropout_before_dense=False,
    classifier="classifier",
    uses_token_types=True,
)

ROBERTA = Layout(
    **_BERT_LAYER,
    problem=absolute_positions_only,
    head_dense="classifier.dense",
    head_act="tanh",
    head_dropout="classifier.dropout",
    dropout_before_dense=True,
    classifier="classifier.out_proj",
    uses_token_types=True,
)

DISTILBERT = Layout(
    layers="transformer.layer",
    query="attention.q_lin",
    key="attention.k_lin",
    value="attention.v_lin",
    attn_out="attention.out_lin",
    attn_norm="sa_layer_norm",
    ffn_in="ffn.lin1",
    ffn_act="ffn.activation",
    ffn_out="ffn.lin2",
    ffn_norm="output_layer_norm",
    attn_dropout="attention.dropout",
    attn_out_dropout=None,
    ffn_dropout="ffn.dropout",
    head_dense="pre_classifier",
    head_act="relu",
    head_dropout="dropout",
    dropout_before_dense=False,
    classifier="classifier",
    uses_token_types=False,
    hidden_size="dim",
    num_heads="n_heads",
    ffn_size="hidden_dim",
    num_layers="n_layers",
)


def mpnet_attention(
    base_model: nn.Module, hidden: torch.Tensor, padding: torch.Tensor | None
) -> list[AttentionInputs]:
    """MPNet's relative position bias (its own encoder computes it, from the length alone), shape
    (1, heads, L, L), added to every layer's scores; padding keys get -inf."""
    bias = base_model.encoder.compute_position_bias(hidden[:1, :, :0]).to(hidden.dtype)
    mask = bias if padding is None else torch.where(padding, bias, float("-inf"))
    return [AttentionInputs(mask)] * len(base_model.encoder.layer)


MPNET = Layout(
    layers="encoder.layer",
    query="attention.attn.q",
    key="attention.attn.k",
    value="attention.attn.v",
    attn_out="attention.attn.o",
    attn_norm="attention.LayerNorm",
    ffn_in="intermediate.dense",
    ffn_act="intermediate.intermediate_act_fn",
    ffn_out="output.dense",
    ffn_norm="output.LayerNorm",
    attn_dropout="attention.attn.dropout",
    attn_out_dropout="attention.dropout",
    ffn_dropout="output.dropout",
    head_dense="classifier.dense",
    head_act="tanh",
    head_dropout="classifier.dropout",
    dropout_before_dense=True,
    classifier="classifier.out_proj",
    uses_token_types=False,
    attention=mpnet_attention,
    head_bias="encoder.relative_attention_bias",
)


def modernbert_problem(model: nn.Module) -> str | None:
    config = model.config
    if config.classifier_pooling != "cls":
        return f"classifier_pooling {config.classifier_pooling!r} is not supported (only 'cls')"
    unknown = set(config.layer_types) - {"full_attention", "sliding_attention"}
    if unknown:
        return f"layer types {sorted(unknown)} are not supported"
    return None


def modernbert_attention(
    base_model: nn.Module, hidden: torch.Tensor, padding: torch.Tensor | None
) -> list[AttentionInputs]:
    """ModernBERT's layers alternate global attention and a sliding window (|i - j| <= config.sliding_window),
    each kind with its own RoPE (cos, sin), which the model's own rotary module computes."""
    config, length = base_model.config, hidden.shape[1]
    positions = torch.arange(length, device=hidden.device)
    kinds = {}
    for kind in set(config.layer_types):
        rotary = base_model.rotary_emb(hidden, positions[None], kind)
        mask = padding
        if kind == "sliding_attention":
            band = (positions[:, None] - positions[None, :]).abs() <= config.sliding_window
            if padding is None:
                mask = band[None, None]
            else:  # a padding query whose window holds no real key attends every real key (no NaN rows)
                query_is_padding = ~padding.transpose(-1, -2)
                mask = padding & (band | query_is_padding)
        kinds[kind] = AttentionInputs(mask, rotary)
    return [kinds[kind] for kind in config.layer_types]


MODERNBERT = Layout(
    layers="layers",
    query="attn.Wqkv",  # one fused Linear, rows q | k | v
    key="attn.Wqkv",
    value="attn.Wqkv",
    attn_out="attn.Wo",
    attn_norm="attn_norm",  # nn.Identity in layer 0: the embeddings' norm precedes it
    ffn_in="mlp.Wi",
    ffn_act="mlp.act",
    ffn_out="mlp.Wo",
    ffn_norm="mlp_norm",
    attn_dropout="attn.attention_dropout",
    attn_out_dropout="attn.out_drop",
    ffn_dropout=None,
    ffn_hidden_dropout="mlp.drop",
    head_dense="head.dense",
    head_act="head.act",
    head_norm="head.norm",
    head_dropout="drop",
    dropout_before_dense=False,
    classifier="classifier",
    uses_token_types=False,
    embedding_norm="embeddings.norm",
    pre_norm=True,
    gated_ffn=True,
    final_norm="final_norm",
    problem=modernbert_problem,
    attention=modernbert_attention,
)


def _deberta_attention_module(base_model: nn.Module) -> nn.Module:
    return base_model.encoder.layer[0].attention.self


def deberta_relative_terms(base_model: nn.Module) -> tuple[int, int]:
    attention = _deberta_attention_module(base_model)
    if not attention.relative_attention:
        return 0, 0
    return len(attention.pos_att_type), attention.pos_ebd_size


def deberta_problem(model: nn.Module) -> str | None:
    config = model.config
    if getattr(config, "conv_kernel_size", 0) > 0:
        return "conv_kernel_size > 0 (the convolution after the first layer) is not supported"
    if getattr(config, "z_steps", 0) > 1:
        return "z_steps > 1 is not supported"
    heads = config.num_attention_heads
    if getattr(config, "attention_head_size", config.hidden_size // heads) * heads != config.hidden_size:
        return "attention_head_size x heads must equal hidden_size"
    if config.pooler_hidden_size != config.hidden_size:
        return f"pooler_hidden_size {config.pooler_hidden_size} must equal hidden_size {config.hidden_size}"
    terms = set(config.pos_att_type or [])
    if terms - {"c2p", "p2c"}:
        return f"pos_att_type {sorted(terms - {'c2p', 'p2c'})} is not supported (only c2p, p2c)"
    if getattr(config, "relative_attention", False) and terms and not getattr(config, "share_att_key", False):
        return "share_att_key false (separate position projections) is not supported"
    return None


def deberta_attention(
    base_model: nn.Module, hidden: torch.Tensor, padding: torch.Tensor | None
) -> list[AttentionInputs]:
    """DeBERTa-v2/v3: scores scaled by 1 / sqrt(head size * (1 + terms)) and, with relative attention,
    the c2p / p2c terms over the relative-position embeddings, of which only the rows a sequence of this
    length reaches are kept (|bucket(i - j)| <= |i - j| < L) and normalized, as the encoder does."""
    encoder, attention = base_model.encoder, _deberta_attention_module(base_model)
    terms, span = deberta_relative_terms(base_model)
    scale = (attention.attention_head_size * (1 + len(attention.pos_att_type))) ** -0.5
    relative = None
    if terms:
        length = hidden.shape[1]
        first = torch.sym_max(0, span - length + 1)  # symbolic: an exported graph serves every length
        rows = encoder.rel_embeddings.weight[first : span + length]
        if "layer_norm" in encoder.norm_rel_ebd:  # as the encoder's get_rel_embedding, on these rows only
            norm = encoder.LayerNorm  # functional: FlopCounterMode's module hooks fail on a parameter view
            rows = F.layer_norm(rows, norm.normalized_shape, norm.weight, norm.bias, norm.eps)
        distances = encoder.get_rel_pos(hidden)[0]  # (L, L): bucketed i - j
        index = (distances + span).clamp(0, 2 * span - 1) - first
        kinds = attention.pos_att_type
        relative = RelativePositions(rows, index, c2p="c2p" in kinds, p2c="p2c" in kinds)
    return [AttentionInputs(padding, relative=relative, scale=scale)] * len(encoder.layer)


DEBERTA_V2 = Layout(
    **_BERT_LAYER
    | dict(
        query="attention.self.query_proj", key="attention.self.key_proj", value="attention.self.value_proj"
    ),
    head_dense="pooler.dense",
    head_act=lambda model: ACT2FN[model.config.pooler_hidden_act],
    head_dropout="dropout",
    head_input_dropout="pooler.dropout",
    dropout_before_dense=True,
    classifier="classifier",
    uses_token_types=True,
    problem=deberta_problem,
    attention=deberta_attention,
    position_dropout="attention.self.pos_dropout",
    relative_terms=deberta_relative_terms,
)

LAYOUTS: dict[str, Layout] = {
    "bert": BERT,
    "roberta": ROBERTA,
    "xlm-roberta": ROBERTA,
    "camembert": ROBERTA,
    "distilbert": DISTILBERT,
    "mpnet": MPNET,
    "modernbert": MODERNBERT,
    "deberta-v2": DEBERTA_V2,
}


def get_module(root: nn.Module, path: str) -> nn.Module:
    """Follow a dotted attribute path from `root`; "{base}" names root's base_model_prefix."""
    module = root
    for name in path.format(base=getattr(root, "base_model_prefix", "")).split("."):
        module = getattr(module, name)
    return module


def register_layout(model_type: str, layout: Layout) -> None:
    """Accept models of `model_type` with `layout` (an error if the type has one already)."""
    if model_type in LAYOUTS:
        raise SharcsError(f"model type {model_type!r} already has a layout")
    LAYOUTS[model_type] = layout


def find_layout(model: nn.Module) -> Layout:
    """The registered layout of a sequence-classification model's type; a SharcsError names the supported
    types for any other, and the reason for a registered type this model's config cannot run exactly."""
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    layout = LAYOUTS.get(model_type) if isinstance(model_type, str) else None
    if layout is None or not _fits(model, layout):
        supported = ", ".join(sorted(LAYOUTS))
        what = "has an unexpected module structure" if layout is not None else "is not supported"
        raise SharcsError(
            f"model type {model_type!r} ({type(model).__name__}) {what}: sharcs wraps "
            f"*ForSequenceClassification models of type {supported}"
        )
    problem = layout.problem(model) if layout.problem is not None else None
    if problem is not None:
        raise SharcsError(f"model type {model_type!r}: {problem}")
    return layout


def _fits(model: nn.Module, layout: Layout) -> bool:
    try:
        layers = get_module(model.base_model, layout.layers)
        linears = (layout.query, layout.key, layout.value, layout.attn_out, layout.ffn_in, layout.ffn_out)
        if not all(isinstance(get_module(layers[0], path), nn.Linear) for path in linears):
            return False
        norms = [get_module(layer, path) for layer in layers for path in (layout.attn_norm, layout.ffn_norm)]
        if layout.final_norm is not None:
            norms.append(get_module(model.base_model, layout.final_norm))
        if not all(isinstance(norm, nn.LayerNorm | nn.Identity) for norm in norms):
            return False
        return isinstance(get_module(model, layout.head_dense), nn.Linear) and isinstance(
            get_module(model, layout.classifier), nn.Linear
        )
    except (AttributeError, IndexError, TypeError):
        return False
