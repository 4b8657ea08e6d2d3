"""Turning Examples into model features: a `datasets.Dataset` of unpadded token ids.

data = tokenize(examples, tokenizer, 128, what="training")   # logs how many inputs were truncated
data, truncated = tokenize_counted(examples, tokenizer, 128)  # or count them yourself
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from sharcs.data.examples import Examples
from sharcs.errors import SharcsError

if TYPE_CHECKING:
    import datasets

_CHUNK = 2048
_TOKEN_COLUMNS = ("input_ids", "attention_mask", "token_type_ids")

logger = logging.getLogger("sharcs")


def tokenize(
    examples: Examples, tokenizer: Any, max_length: int, what: str | None = None
) -> datasets.Dataset:
    """Tokenize single texts or pairs (the tokenizer's pair encoding), truncated to `max_length`, unpadded.

    Columns: input_ids, attention_mask, token_type_ids (when the tokenizer gives them), labels (int64
    class ids or float32 targets; absent for unlabeled examples) and index (0..n-1, the sample index).
    With `what` (e.g. "training") the number of inputs that were truncated, if any, is logged at INFO
    on the "sharcs" logger (see `truncation_line`).
    """
    data, truncated = tokenize_counted(examples, tokenizer, max_length)
    if what is not None:
        log_truncation(truncated, len(examples), max_length, what)
    return data


def truncation_line(truncated: int, total: int, max_length: int, what: str) -> str:
    """The report line, e.g. "312 of 4000 training inputs (7.8%) were truncated to 64 tokens"."""
    share = 100 * truncated / max(1, total)
    shown = "<0.1" if 0 < share < 0.1 else f"{share:.1f}"
    inputs = f"{what} inputs" if what else "inputs"
    return f"{truncated} of {total} {inputs} ({shown}%) were truncated to {max_length} tokens"


def log_truncation(truncated: int, total: int, max_length: int, what: str) -> None:
    """Log `truncation_line` at INFO on the "sharcs" logger when any input was truncated."""
    if truncated:
        logger.info(truncation_line(truncated, total, max_length, what))


def tokenize_counted(examples: Examples, tokenizer: Any, max_length: int) -> tuple[datasets.Dataset, int]:
    """`tokenize` and the number of examples that were longer than `max_length` tokens (and truncated)."""
    import datasets

    if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 1:
        raise SharcsError(f"max_length must be a positive integer, got {max_length!r}")
    width = len(examples.texts[0]) if len(examples) else 1
    if width not in (1, 2) or any(len(texts) != width for texts in examples.texts):
        raise SharcsError(f"{examples.source}: every example must have the same 1 or 2 texts")
    pair = width == 2
    special = int(tokenizer.num_special_tokens_to_add(pair=pair))
    if max_length <= special + (1 if pair else 0):
        raise SharcsError(
            f"max_length {max_length} is too small: the tokenizer adds {special} special tokens"
            f" to each {'pair' if pair else 'text'}"
        )

    columns: dict[str, list[Any]] = {}
    truncated = 0
    for start in range(0, len(examples), _CHUNK):
        chunk = examples.texts[start : start + _CHUNK]
        first = [texts[0] for texts in chunk]
        second = [texts[1] for texts in chunk] if pair else None
        encoded = tokenizer(first, second, truncation=True, max_length=max_length)
        for name in _TOKEN_COLUMNS:
            if name in encoded:
                columns.setdefault(name, []).extend(encoded[name])
        full = [i for i, ids in enumerate(encoded["input_ids"]) if len(ids) >= max_length]
        if full:  # only these may have been cut: one token more tells whether they were
            again = tokenizer(
                [first[i] for i in full],
                [second[i] for i in full] if second is not None else None,
                truncation=True,
                max_length=max_length + 1,
            )
            truncated += sum(len(ids) > max_length for ids in again["input_ids"])
    columns.setdefault("input_ids", [])
    columns.setdefault("attention_mask", [])

    features = {name: datasets.List(datasets.Value("int32")) for name in columns}
    if examples.labels is not None:
        columns["labels"] = list(examples.labels)
        features["labels"] = datasets.Value("float32" if examples.is_regression else "int64")
    columns["index"] = list(range(len(examples)))
    features["index"] = datasets.Value("int64")
    return datasets.Dataset.from_dict(columns, features=datasets.Features(features)), truncated
