"""Hugging Face pieces: load a pretrained classifier and its tokenizer, quietly and without running
any code a model folder names."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from sharcs.errors import SharcsError, first_line

if TYPE_CHECKING:
    from sharcs.data.prepare import TaskInfo


@contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence transformers' load reports, progress bars and hub retry warnings for the duration."""
    from transformers.utils import logging as hf_logging

    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hub_logger = logging.getLogger("huggingface_hub")
    hub_level = hub_logger.level
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    hub_logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()
        hub_logger.setLevel(hub_level)


TOKENIZER_JSON = ("tokenizer_config.json", "tokenizer.json", "special_tokens_map.json", "added_tokens.json")


def load_tokenizer(path: str | Path) -> Any:
    """AutoTokenizer.from_pretrained, with any failure turned into a one-line SharcsError (one naming
    the file for a local tokenizer JSON file that does not parse). Never runs a tokenizer's own code."""
    from transformers import AutoTokenizer

    folder = Path(path).expanduser()
    for name in TOKENIZER_JSON if folder.is_dir() else ():
        if (folder / name).is_file():
            try:
                json.loads((folder / name).read_text(encoding="utf-8"))
            except (OSError, ValueError) as error:  # JSONDecodeError, UnicodeDecodeError
                raise SharcsError(f"{folder / name} is unreadable ({first_line(error)})") from None
    try:
        with quiet_transformers():
            return AutoTokenizer.from_pretrained(str(path), trust_remote_code=False)  # never run its code
    except Exception as error:  # transformers raises OSError, ValueError, EnvironmentError, ...
        raise SharcsError(f"could not load a tokenizer from {path}: {first_line(error)}") from None


def pad_id(tokenizer: Any) -> int:
    """The tokenizer's padding id (0 when it has none)."""
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0


def load_base_model(path: str, info: TaskInfo, seed: int) -> Any:
    """The Hugging Face classifier for `info`'s labels; its new head is initialised under `seed`."""
    from transformers import AutoModelForSequenceClassification

    labels = info.label_list or ("score",)
    torch.manual_seed(seed)
    try:
        with quiet_transformers():
            return AutoModelForSequenceClassification.from_pretrained(
                path,
                trust_remote_code=False,  # never the code a config's auto_map names
                num_labels=info.num_labels,
                ignore_mismatched_sizes=True,  # a head for another label count is replaced
                id2label=dict(enumerate(labels)),
                label2id={label: i for i, label in enumerate(labels)},
            )
    except Exception as error:  # OSError (not found / no network), ValueError (not a classifier), ...
        raise SharcsError(f"could not load model {path}: {first_line(error)}") from None


def check_max_length(max_length: int, model_config: Any, tokenizer: Any) -> None:
    limit = getattr(tokenizer, "model_max_length", None)
    if not isinstance(limit, int) or limit > 100_000:
        limit = getattr(model_config, "max_position_embeddings", None)
    if isinstance(limit, int) and max_length > limit:
        raise SharcsError(f"--max-seq-length {max_length} exceeds the model's limit of {limit} tokens")
