"""sharcs: give each input only the encoder width it needs (SHARCS, arXiv 2310.12126).

The public names are imported on first use (PEP 562), so `import sharcs` and the command line's
`--help` do not pay for torch and transformers.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sharcs.errors import SharcsError
    from sharcs.methods.dynabert import DynaBertConfig, DynaBertModel
    from sharcs.methods.early_exit import EarlyExitConfig, EarlyExitModel
    from sharcs.methods.load import load_model
    from sharcs.methods.sharcs.config import SharcsConfig
    from sharcs.methods.sharcs.model import SharcsModel, SharcsOutput, get_sharcs_model
    from sharcs.modeling.adaptive import AdaptiveModel

_HOMES = {
    "AdaptiveModel": "sharcs.modeling.adaptive",
    "load_model": "sharcs.methods.load",
    "DynaBertConfig": "sharcs.methods.dynabert",
    "DynaBertModel": "sharcs.methods.dynabert",
    "EarlyExitConfig": "sharcs.methods.early_exit",
    "EarlyExitModel": "sharcs.methods.early_exit",
    "SharcsConfig": "sharcs.methods.sharcs.config",
    "SharcsError": "sharcs.errors",
    "SharcsModel": "sharcs.methods.sharcs.model",
    "SharcsOutput": "sharcs.methods.sharcs.model",
    "get_sharcs_model": "sharcs.methods.sharcs.model",
}

__all__ = [
    "AdaptiveModel",
    "DynaBertConfig",
    "DynaBertModel",
    "EarlyExitConfig",
    "EarlyExitModel",
    "SharcsConfig",
    "SharcsError",
    "SharcsModel",
    "SharcsOutput",
    "get_sharcs_model",
    "load_model",
]


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'sharcs' has no attribute {name!r}")
    value = getattr(importlib.import_module(_HOMES[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
