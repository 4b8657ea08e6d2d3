"""Padding a batch of tokenized samples into tensors."""

from __future__ import annotations

import torch

PADDED_COLUMNS = ("input_ids", "attention_mask", "token_type_ids")


def pad_batch(columns: dict[str, list], pad_token_id: int) -> dict[str, torch.Tensor]:
    """Right-pad the token columns of a batch (dict of per-sample lists) to its longest sample.

    Other columns (labels, index) become tensors as they are.
    """
    lengths = [len(ids) for ids in columns["input_ids"]]
    longest = max(lengths)
    batch: dict[str, torch.Tensor] = {}
    for name, values in columns.items():
        if name in PADDED_COLUMNS:
            fill = pad_token_id if name == "input_ids" else 0
            batch[name] = torch.tensor([list(v) + [fill] * (longest - len(v)) for v in values])
        else:
            batch[name] = torch.tensor(values)
    if "attention_mask" not in batch:
        batch["attention_mask"] = torch.tensor([[1] * n + [0] * (longest - n) for n in lengths])
    return batch
