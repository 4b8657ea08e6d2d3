"""The pieces of a SHARCS model as exportable modules, and their export to ONNX files.

    prefix = PrefixGraph(model)          # (input_ids, attention_mask[, token_type_ids]) -> hidden, router
    narrow = WidthGraph(model, 0.25)     # (hidden, attention_mask) -> logits, layers K+1..N and the head
    full = FullGraph(model.full_width_base())  # the plain Hugging Face model, the users' alternative
    export_onnx(prefix, prefix.example(model), path)

Each module calls the model's own code (`SharcsModel.prefix`, `SharcsModel.run_width`), so an exported
graph computes what PyTorch computes; `sdpa_mask` keeps the attention mask while exporting, so a graph
serves padded and unpadded batches alike. Batch and length are dynamic axes.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn
from transformers import PreTrainedModel

from sharcs.methods.sharcs.model import SharcsModel

OPSET = 18


def model_inputs(uses_token_types: bool) -> tuple[str, ...]:
    """The token inputs a graph takes, in order."""
    return (
        ("input_ids", "attention_mask", "token_type_ids")
        if uses_token_types
        else ("input_ids", "attention_mask")
    )


class PrefixGraph(nn.Module):
    """Embeddings, layers 1..K and the router: layer K's output and the router's logits."""

    def __init__(self, model: SharcsModel):
        super().__init__()
        self.model = model
        with torch.no_grad():  # fused copies, stored in the graph as they are (so int8 can quantize them)
            self.weights = [w.contiguous() for w in model.prefix_weights()]
        self.input_names = model_inputs(model.layout.uses_token_types)
        self.output_names = ("hidden", "router_logits")

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = self.model.encode_prefix(input_ids, attention_mask, token_type_ids, self.weights)
        return hidden, self.model.router(hidden, attention_mask)

    def example(self) -> tuple[torch.Tensor, ...]:
        return example_tokens(len(self.input_names))


class WidthGraph(nn.Module):
    """Layers K+1..N and the head at one width, from layer K's output: the logits."""

    def __init__(self, model: SharcsModel, width: float):
        super().__init__()
        self.model = model
        self.width = width
        with torch.no_grad():  # the sliced matrices themselves, not slicing ops on the full ones
            self.weights = model.width_weights(width).contiguous()
        self.input_names = ("hidden", "attention_mask")
        self.output_names = ("logits",)

    def forward(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model.width_pass(hidden, attention_mask, self.width, self.weights)[0]

    def example(self) -> tuple[torch.Tensor, ...]:
        _, mask = example_tokens(2)
        return torch.randn(*mask.shape, self.model.dims.hidden), mask


class FullGraph(nn.Module):
    """A plain Hugging Face classifier: what a user exports when not using sharcs."""

    def __init__(self, base: PreTrainedModel, uses_token_types: bool):
        super().__init__()
        self.base = base
        self.input_names = model_inputs(uses_token_types)
        self.output_names = ("logits",)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        tokens = {"token_type_ids": token_type_ids} if token_type_ids is not None else {}
        return self.base(input_ids=input_ids, attention_mask=attention_mask, **tokens).logits

    def example(self) -> tuple[torch.Tensor, ...]:
        return example_tokens(len(self.input_names))


def example_tokens(count: int) -> tuple[torch.Tensor, ...]:
    """Example token inputs for tracing: 2 rows of 8 tokens, the second padded (so no size is 1 and the
    masked path is traced)."""
    ids = torch.full((2, 8), 5, dtype=torch.long)
    mask = torch.ones_like(ids)
    mask[1, 5:] = 0
    return (ids, mask, torch.zeros_like(ids))[:count]


def export_onnx(graph: PrefixGraph | WidthGraph | FullGraph, path: str | Path) -> None:
    """Write `graph` to `path` as one self-contained ONNX file, batch and length dynamic."""
    batch, length = torch.export.Dim("batch", min=1), torch.export.Dim("length", min=1)
    example = graph.example()
    dynamic = {name: {0: batch, 1: length} for name in graph.input_names}
    graph.eval()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's notes on its own internals
        program = torch.onnx.export(
            graph,
            example,
            input_names=list(graph.input_names),
            output_names=list(graph.output_names),
            dynamic_shapes=tuple(dynamic[name] for name in graph.input_names),
            opset_version=OPSET,
            dynamo=True,
            optimize=True,
            verbose=False,
        )
    program.save(str(path), external_data=False)
