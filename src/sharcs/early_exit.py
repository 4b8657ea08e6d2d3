"""Early-exit baselines DeeBERT and PABEE (placeholder: being written)."""

from __future__ import annotations

from sharcs.adaptive import AdaptiveModel


class EarlyExitModel(AdaptiveModel):
    method = "early_exit"
