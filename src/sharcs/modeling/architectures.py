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
from torch import nn

from sharcs.errors import SharcsError


@dataclass(frozen=True)
class Layout:
    """Attribute paths of one encoder family (dotted, relative to the object named in each comment)."""

    layers: str  # encoder model -> ModuleList of layers
    # within one layer:
    query: str
    key: str
    value: str
    attn_out: str
    attn_norm: str
    ffn_in: str
    ffn_act: str
    ffn_out: str
    ffn_norm: str
    attn_dropout: str  # dropout on attention probabilities
    attn_out_dropout: str | None  # dropout after the attention output projection, if any
    ffn_dropout: str
    # within the classification model ("{base}" stands for its base_model_prefix):
    head_dense: str  # first dense layer of the head: the up-projection
    head_act: str  # "tanh" | "relu" | "gelu"
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
    # a per-head bias added to the attention scores (MPNet's relative positions): (base model, length,
    # device) -> (1, heads, length, length); each layer adds the slice of the heads it keeps
    position_bias: Callable[[nn.Module, int, torch.device], torch.Tensor] | None = None


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


def mpnet_position_bias(base_model: nn.Module, length: int, device: torch.device) -> torch.Tensor:
    """MPNet's relative position bias, computed by its own encoder (it depends on the length only)."""
    return base_model.encoder.compute_position_bias(torch.empty(1, length, 0, device=device))


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
    position_bias=mpnet_position_bias,
)

LAYOUTS: dict[str, Layout] = {
    "bert": BERT,
    "roberta": ROBERTA,
    "xlm-roberta": ROBERTA,
    "camembert": ROBERTA,
    "distilbert": DISTILBERT,
    "mpnet": MPNET,
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
        first = get_module(model.base_model, layout.layers)[0]
        for path in (layout.query, layout.key, layout.value, layout.attn_out, layout.ffn_in, layout.ffn_out):
            if not isinstance(get_module(first, path), nn.Linear):
                return False
        for path in (layout.attn_norm, layout.ffn_norm):
            if not isinstance(get_module(first, path), nn.LayerNorm):
                return False
        return isinstance(get_module(model, layout.head_dense), nn.Linear) and isinstance(
            get_module(model, layout.classifier), nn.Linear
        )
    except (AttributeError, IndexError, TypeError):
        return False
