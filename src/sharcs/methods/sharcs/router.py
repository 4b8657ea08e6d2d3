"""The router: predicts from layer K's token states which widths an input can take (docs/method.md §1, §4)."""

from __future__ import annotations

import torch
from torch import nn


def masked_mean(hidden_states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Mean over real tokens only, so padding never changes what the router sees."""
    mask = attention_mask.to(hidden_states.dtype).unsqueeze(-1)
    return (hidden_states * mask).sum(1) / mask.sum(1).clamp(min=1.0)


class Router(nn.Module):
    """MLP d -> hidden -> ReLU -> one logit per width, on the mask-aware mean of layer K's output."""

    def __init__(self, hidden_size: int, router_hidden_size: int, num_widths: int):
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(hidden_size, router_hidden_size), nn.ReLU(), nn.Linear(router_hidden_size, num_widths)
        )

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.mlp(masked_mean(hidden_states, attention_mask))


def choose_widths(router_logits: torch.Tensor, rule: str, tau: float) -> torch.Tensor:
    """Index of the width each sample runs at.

    "argmax": the paper's rule. "tau": the narrowest width whose sigmoid(logit) >= tau, else the widest;
    sweeping tau traces an accuracy/cost curve from one trained router.
    """
    if rule == "argmax":
        return router_logits.argmax(-1)
    widest = router_logits.shape[-1] - 1
    confident = torch.sigmoid(router_logits) >= tau
    confident[..., widest] = True
    return confident.int().argmax(-1)  # first True: argmax returns the first maximal index
