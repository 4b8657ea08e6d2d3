"""DynaBERT-style width baseline (placeholder: being written)."""

from __future__ import annotations

from sharcs.adaptive import AdaptiveModel


class DynaBertModel(AdaptiveModel):
    method = "dynabert"
