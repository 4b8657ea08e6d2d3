"""Where each supported Hugging Face encoder keeps its layers, norms and task head.

One small table per layout, keyed by `model_type` (as peft does), instead of branches spread through
the code. A model whose type is not listed but whose modules have one of these layouts is accepted too.
"""

from __future__ import annotations

from dataclasses import dataclass

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
    head_dense="{base}.pooler.dense",
    head_act="tanh",
    head_dropout="dropout",
    dropout_before_dense=False,
    classifier="classifier",
    uses_token_types=True,
)

ROBERTA = Layout(
    **_BERT_LAYER,
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

LAYOUTS: dict[str, Layout] = {
    "bert": BERT,
    "roberta": ROBERTA,
    "xlm-roberta": ROBERTA,
    "camembert": ROBERTA,
    "distilbert": DISTILBERT,
}


def get_module(root: nn.Module, path: str) -> nn.Module:
    """Follow a dotted attribute path from `root`; "{base}" names root's base_model_prefix."""
    module = root
    for name in path.format(base=getattr(root, "base_model_prefix", "")).split("."):
        module = getattr(module, name)
    return module


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


def find_layout(model: nn.Module) -> Layout:
    """The layout of a sequence-classification model: by model_type, else by its module structure."""
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    candidates = [LAYOUTS[model_type]] if model_type in LAYOUTS else []
    candidates += [layout for layout in (BERT, ROBERTA, DISTILBERT) if layout not in candidates]
    for layout in candidates:
        if _fits(model, layout):
            return layout
    supported = ", ".join(sorted(LAYOUTS))
    raise SharcsError(
        f"model type {model_type!r} ({type(model).__name__}) is not supported: sharcs wraps "
        f"*ForSequenceClassification models of type {supported}, or encoders with the same layer structure"
    )
