"""Fitting the router on held-out data once the widths are trained (docs/method.md §7): it learns, from
layer K's masked-mean states, whether the narrowest width is good enough for a sample.

    targets = narrow_targets(table)    # 1 where the narrow path does as well as full width
    fit_router(model, features, table, fit_rows, check_rows, seed=0)

The table is calibration.held_out_table's; the backbone is never touched (the features are detached).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from sharcs.errors import SharcsError
from sharcs.methods.sharcs.model import SharcsModel
from sharcs.methods.sharcs.router import Router


def narrow_targets(table: dict[str, Any]) -> np.ndarray:
    """What the router learns per sample: 1 where the narrowest width is good enough.

    Classification: 1 unless the narrow path is wrong where full width is right (a sample both widths
    get wrong costs nothing narrow). Regression: the narrow path's extra absolute error, as a rank in
    [0, 1] reversed (1: the narrow path loses least); only the order of router scores matters.
    """
    labels = np.asarray(table["labels"])
    narrow, full = np.asarray(table["prediction_narrow"]), np.asarray(table["prediction_full"])
    if not table["regression"]:
        return (~((narrow != labels) & (full == labels))).astype(np.float64)
    extra = np.abs(narrow - labels) - np.abs(full - labels)
    ranks = extra.argsort().argsort().astype(np.float64)
    return 1.0 - ranks / max(1, len(ranks) - 1)


MIN_FIT_ROWS = 2


def fit_router(
    model: SharcsModel,
    features: torch.Tensor,
    table: dict[str, Any],
    fit_rows: list[int],
    check_rows: list[int],
    seed: int = 0,
    steps: int = 300,
) -> dict[str, float]:
    """Refit `model.router` (from a seeded initialisation) on the rows `fit_rows` of layer K's
    masked-mean `features` to predict `narrow_targets(table)`; the step with the lowest loss on
    `check_rows` is kept. The backbone is untouched (the features are detached)."""
    if len(fit_rows) < MIN_FIT_ROWS:
        raise SharcsError(
            f"fitting the router needs at least {MIN_FIT_ROWS} rows to fit on (a held-out slice of "
            f"{2 * MIN_FIT_ROWS} or more samples), got {len(fit_rows)}; use more training data or a larger "
            "--held-out-fraction"
        )
    target = torch.tensor(narrow_targets(table), dtype=torch.float32)
    targets = torch.stack([target, torch.ones_like(target)], 1)  # the full width always fits
    fit, check = torch.tensor(fit_rows), torch.tensor(check_rows or fit_rows)
    mean, std = features[fit].mean(0), features[fit].std(0, unbiased=False).clamp(min=1e-6)
    x = (features - mean) / std
    generator = torch.Generator().manual_seed(seed)
    router = Router(model.dims.hidden, model.config.router_hidden_size, len(model.config.widths))
    with torch.no_grad():
        for p in router.parameters():  # a seeded initialisation, independent of the global RNG
            bound = 1.0 / math.sqrt(p.shape[-1])
            p.copy_(torch.empty(p.shape).uniform_(-bound, bound, generator=generator))
    optimizer = torch.optim.AdamW(router.parameters(), lr=1e-3, weight_decay=0.05)
    loss_fn = torch.nn.functional.binary_cross_entropy_with_logits
    mask = torch.ones(len(x), 1)
    best = (math.inf, 0, {k: v.clone() for k, v in router.state_dict().items()})
    for step in range(1, steps + 1):
        router.train()
        optimizer.zero_grad()
        loss = loss_fn(router(x[fit].unsqueeze(1), mask[fit]), targets[fit])
        loss.backward()
        optimizer.step()
        if step % 10 == 0:
            with torch.no_grad():
                router.eval()
                check_loss = float(loss_fn(router(x[check].unsqueeze(1), mask[check]), targets[check]))
            if check_loss < best[0]:
                best = (check_loss, step, {k: v.clone() for k, v in router.state_dict().items()})
    router.load_state_dict(best[2])
    _fold_normalisation(router, mean, std)
    device = next(model.router.parameters()).device
    model.router.load_state_dict({k: v.to(device) for k, v in router.state_dict().items()})
    return {"router_fit_step": best[1], "router_check_loss": best[0], "router_fit_samples": len(fit_rows)}


@torch.no_grad()
def _fold_normalisation(router: Router, mean: torch.Tensor, std: torch.Tensor) -> None:
    """Fold the feature standardisation (x - mean) / std into the router's first layer."""
    first = router.mlp[0]
    weight = first.weight / std
    first.bias.sub_(weight @ mean)
    first.weight.copy_(weight)
