"""Batched routed inference over a dataset (docs/method.md §4), for a model of any method.

    preds = predict(model, dev_data, batch_size=128)        # routed
    preds = predict(model, dev_data, width=1.0)             # every sample at full width
    preds = predict(model, dev_data, setting={"tau": 0.3})  # any forward keyword (a curve setting)

Within each batch the model runs layers 1..K on all samples, routes, groups by width, runs each
group with pre-sliced contiguous weights and scatters the logits back; batches are formed from
samples of similar length to waste little work on padding, and results return in input order.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from datasets import Dataset
from tqdm.auto import tqdm

from sharcs.data.collate import pad_batch
from sharcs.modeling.adaptive import AdaptiveModel

MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


@dataclass
class Predictions:
    """Per-sample results in input order."""

    logits: torch.Tensor  # (n, num_labels)
    routes: torch.Tensor  # (n,) the route each sample took: its width, or layers run for early exit
    router_logits: torch.Tensor | None  # (n, num_widths) for a SHARCS router, else None


@torch.inference_mode()
def predict(
    model: AdaptiveModel,
    data: Dataset,
    batch_size: int = 64,
    width: float | None = None,
    pad_token_id: int = 0,
    progress: bool = False,
    setting: dict | None = None,
) -> Predictions:
    """Run `model` over a tokenized dataset; `width=None` routes each sample, a float forces one width.

    `setting`: further keyword arguments of the model's forward (e.g. a tau or a patience).
    """
    kwargs = dict(setting or {})
    if width is not None:
        kwargs["width"] = width
    model.eval()
    lengths = torch.tensor([len(ids) for ids in data["input_ids"]])
    order = torch.argsort(lengths, stable=True)
    inputs = data.select_columns([c for c in MODEL_INPUTS if c in data.column_names])
    device = model.device
    logits, router_logits, routes = [], [], []
    for start in tqdm(range(0, len(order), batch_size), desc="predict", disable=not progress, leave=False):
        rows = order[start : start + batch_size].tolist()
        batch = pad_batch(inputs[rows], pad_token_id)
        out = model(**{k: v.to(device) for k, v in batch.items()}, **kwargs)
        logits.append(out.logits.float().cpu())
        routes.append(out.routes.float().cpu())
        if getattr(out, "router_logits", None) is not None:
            router_logits.append(out.router_logits.float().cpu())
    inverse = torch.empty_like(order)
    inverse[order] = torch.arange(len(order))
    return Predictions(
        logits=torch.cat(logits)[inverse],
        routes=torch.cat(routes)[inverse],
        router_logits=torch.cat(router_logits)[inverse] if router_logits else None,
    )
