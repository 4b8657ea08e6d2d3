"""Examples (texts and labels) and what reading any data file shares: text checks, line decoding and
the row/line numbers of error messages.

Row numbers in error messages count data rows from 1 (a header line is not a row); where the file
line differs it is given too, as "row 5 (line 6)". Files are decoded line by line (UTF-8 unless an
`encoding` is given, a byte order mark skipped), so a byte that does not decode is reported with its
line; fields of any length are read (long texts are truncated at tokenization, never rejected).
"""

from __future__ import annotations

import codecs
import itertools
import math
import re
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from sharcs.errors import SharcsError

# csv refuses fields over 131072 characters by default; texts of any length are read (and truncated
# to the model's length at tokenization). The largest value a C long holds on every platform.
FIELD_SIZE_LIMIT = min(sys.maxsize, 2**31 - 1)


# A line end; a "\r" at the very end of decoded text may be the first half of a "\r\n" still to come.
_LINE_END = re.compile(r"\r\n|\r(?!\Z)|\n")


@dataclass
class Examples:
    """Texts (one or two per example) with optional labels: class ids into `label_list`, or floats.

    `label_list` is None for regression; an empty tuple means classification with unknown classes
    (an unlabeled file loaded without a label list).
    """

    texts: list[tuple[str, ...]]
    labels: list[int] | list[float] | None
    label_list: tuple[str, ...] | None
    source: str

    def __post_init__(self) -> None:
        if self.labels is not None and len(self.labels) != len(self.texts):
            raise SharcsError(
                f"{self.source}: {len(self.labels)} labels for {len(self.texts)} texts; the counts must match"
            )

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def is_regression(self) -> bool:
        """True when the labels are floats (no label list)."""
        return self.label_list is None

    def subset(self, indices: Sequence[int]) -> Examples:
        """The examples at `indices`, in that order, with the same label list and source."""
        labels = None if self.labels is None else [self.labels[i] for i in indices]
        return Examples([self.texts[i] for i in indices], labels, self.label_list, self.source)  # type: ignore[arg-type]


def show(value: object, limit: int = 60) -> str:
    """A short one-line repr of a value for an error message."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def one_line(err: BaseException, limit: int = 200) -> str:
    """An exception as one short line: its type and the first line of its message."""
    lines = str(err).strip().splitlines()
    first = lines[0] if lines else ""
    first = first if len(first) <= limit else first[: limit - 3] + "..."
    return f"{type(err).__name__}: {first}" if first else type(err).__name__


def row_place(row: int, line: int) -> str:
    return f"row {row}" if row == line else f"row {row} (line {line})"


def validate_texts(examples: Examples) -> None:
    """Raise SharcsError for a missing, empty or whitespace-only text, naming the source and row."""
    width = len(examples.texts[0]) if examples.texts else 0
    if width not in (0, 1, 2):
        raise SharcsError(f"{examples.source}: examples must have 1 or 2 texts, got {width}")
    for row, texts in enumerate(examples.texts, start=1):
        if len(texts) != width:
            raise SharcsError(
                f"{examples.source}: row {row} has {len(texts)} texts, the first row has {width}"
            )
        for pos, text in enumerate(texts, start=1):
            if not isinstance(text, str) or not text.strip():
                which = f"text {pos} of {width}" if width > 1 else "text"
                raise SharcsError(f"{examples.source}: row {row} has an empty {which} ({show(text)})")


def check_encoding(encoding: str, option: str = "--encoding") -> str:
    """`encoding` if Python knows it as a text encoding, else a one-line SharcsError naming `option`."""
    try:
        b"".decode(encoding)
        "".encode(encoding)
    except (LookupError, TypeError, ValueError):
        raise SharcsError(
            f"{option}: unknown text encoding {encoding!r} (e.g. utf-8, latin-1, cp1252, utf-16)"
        ) from None
    return encoding


def _shown_encoding(encoding: str) -> str:
    return "UTF-8" if codecs.lookup(encoding).name == "utf-8" else encoding


def decode_lines(chunks: Iterable[bytes], encoding: str, source: str) -> Iterator[str]:
    r"""Decode bytes (e.g. the lines of a file opened in binary) lazily into text lines, each with its end.

    Lines end at "\n", "\r\n" or "\r" (as with Python's universal newlines; other separators such as
    form feeds stay inside a line). UTF-8 input may start with a byte order mark, which is skipped.
    Bytes that do not decode are a one-line SharcsError "<source>: line N is not valid UTF-8 (use
    --encoding)".
    """
    codec = "utf-8-sig" if codecs.lookup(check_encoding(encoding)).name == "utf-8" else encoding
    decoder = codecs.getincrementaldecoder(codec)()
    lines = 0
    pending = ""

    def decode(data: bytes, final: bool) -> str:
        try:
            return decoder.decode(data, final)
        except UnicodeDecodeError:
            raise SharcsError(
                f"{source}: line {lines + 1} is not valid {_shown_encoding(encoding)} (use --encoding)"
            ) from None

    for chunk in itertools.chain(chunks, (None,)):
        text = pending + decode(chunk or b"", chunk is None)
        start = 0
        for match in _LINE_END.finditer(text):
            lines += 1
            yield text[start : match.end()]
            start = match.end()
        pending = text[start:]
    if pending:
        yield pending


def parse_float(value: Any, source: str, where: str) -> float:
    """A finite regression target, or SharcsError naming the value and row."""
    if is_missing(value):
        raise SharcsError(
            f"{source}: {where} has no regression target (got {show(value)}); fill it in or drop the row"
        )
    number = math.nan
    if isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            number = math.nan
    if not math.isfinite(number):
        raise SharcsError(f"{source}: {where} has a non-numeric regression target {show(value)}")
    return number


_MISSING_LABELS = ("", "nan")


def is_missing(value: Any) -> bool:
    """True for a label that is not there: None (JSON null), a NaN float, or "", "NaN", "nan" (any case)."""
    if value is None:
        return True
    if isinstance(value, float):
        return math.isnan(value)
    return isinstance(value, str) and value.strip().lower() in _MISSING_LABELS
