"""Batched routed inference over a dataset (method.md §4).

    preds = predict(model, dev_data, batch_size=128)   # routed
    preds = predict(model, dev_data, width=1.0)        # every sample at full width

Within each batch the model runs layers 1..K on all samples, routes, groups by width, runs each
group with pre-sliced contiguous weights and scatters the logits back; batches are formed from
samples of similar length to waste little work on padding, and results return in input order.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from datasets import Dataset
from tqdm.auto import tqdm

from sharcs.collate import pad_batch
from sharcs.model import SharcsModel

MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


@dataclass
class Predictions:
    """Per-sample results in input order."""

    logits: torch.Tensor  # (n, num_labels)
    router_logits: torch.Tensor  # (n, num_widths)
    widths: torch.Tensor  # (n,) the width each sample ran at


@torch.inference_mode()
def predict(
    model: SharcsModel,
    data: Dataset,
    batch_size: int = 64,
    width: float | None = None,
    pad_token_id: int = 0,
    progress: bool = False,
) -> Predictions:
    """Run `model` over a tokenized dataset; `width=None` routes each sample, a float forces one width."""
    model.eval()
    lengths = torch.tensor([len(ids) for ids in data["input_ids"]])
    order = torch.argsort(lengths, stable=True)
    inputs = data.select_columns([c for c in MODEL_INPUTS if c in data.column_names])
    device = next(model.parameters()).device
    logits, router_logits, widths = [], [], []
    for start in tqdm(range(0, len(order), batch_size), desc="predict", disable=not progress, leave=False):
        rows = order[start : start + batch_size].tolist()
        batch = pad_batch(inputs[rows], pad_token_id)
        out = model(**{k: v.to(device) for k, v in batch.items()}, width=width)
        logits.append(out.logits.float().cpu())
        router_logits.append(out.router_logits.float().cpu())
        widths.append(out.widths.cpu())
    inverse = torch.empty_like(order)
    inverse[order] = torch.arange(len(order))
    return Predictions(
        logits=torch.cat(logits)[inverse],
        router_logits=torch.cat(router_logits)[inverse],
        widths=torch.cat(widths)[inverse],
    )
