"""A new backbone in one file (docs/architecture.md, "Adding a backbone"): ELECTRA's discriminator.

ELECTRA's encoder layers are BERT's, and its classification head is RoBERTa's shape with a GELU: so its
layout is BERT's layer paths with RoBERTa's head paths. One thing is new: when `embedding_size` differs
from `hidden_size`, ELECTRA projects the embeddings, a step sharcs's width-sliced forward does not run;
such a model is refused (`problem`) rather than run as a different function. Registering the layout
makes every sharcs method accept the model type; the checks in tests/test_architecture_examples.py (width
1.0 reproduces the Hugging Face logits, batched equals single-sample) are what make it exact.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from sharcs.modeling.architectures import BERT, ROBERTA, Layout, register_layout


def factorized_embeddings(model: Any) -> str | None:
    config = model.config
    if config.embedding_size != config.hidden_size:
        return (
            f"embedding_size {config.embedding_size} differs from hidden_size {config.hidden_size}: the "
            "embedding projection is not supported"
        )
    return None


ELECTRA: Layout = dataclasses.replace(
    BERT,
    head_dense=ROBERTA.head_dense,
    head_dropout=ROBERTA.head_dropout,
    classifier=ROBERTA.classifier,
    dropout_before_dense=True,
    head_act="gelu",
    problem=factorized_embeddings,
)

register_layout("electra", ELECTRA)
