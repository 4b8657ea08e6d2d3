"""sharcs: give each input only the encoder width it needs (SHARCS, arXiv 2310.12126)."""

from sharcs.config import SharcsConfig
from sharcs.errors import SharcsError
from sharcs.model import SharcsModel, SharcsOutput, get_sharcs_model

__all__ = ["SharcsConfig", "SharcsError", "SharcsModel", "SharcsOutput", "get_sharcs_model"]
