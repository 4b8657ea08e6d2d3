"""sharcs: give each input only the encoder width it needs (SHARCS, arXiv 2310.12126).

The public names are imported on first use (PEP 562), so `import sharcs` and the command line's
`--help` do not pay for torch and transformers.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sharcs.config import SharcsConfig
    from sharcs.errors import SharcsError
    from sharcs.model import SharcsModel, SharcsOutput, get_sharcs_model

_HOMES = {
    "SharcsConfig": "sharcs.config",
    "SharcsError": "sharcs.errors",
    "SharcsModel": "sharcs.model",
    "SharcsOutput": "sharcs.model",
    "get_sharcs_model": "sharcs.model",
}

__all__ = ["SharcsConfig", "SharcsError", "SharcsModel", "SharcsOutput", "get_sharcs_model"]


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'sharcs' has no attribute {name!r}")
    value = getattr(importlib.import_module(_HOMES[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
