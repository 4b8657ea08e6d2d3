"""Your own data: CSV, TSV or JSON Lines files with text columns and a label column."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sharcs.data.examples import (
    FIELD_SIZE_LIMIT,
    Examples,
    check_encoding,
    decode_lines,
    is_missing,
    one_line,
    parse_float,
    row_place,
    show,
    validate_texts,
)
from sharcs.errors import SharcsError

_FILE_EXTENSIONS = (".csv", ".tsv", ".jsonl", ".json")


# Label values that mean "no label": a missing label is an error, never a class of its own.


def load_file(
    path: str | Path,
    text_columns: Sequence[str],
    label_column: str | None,
    label_list: Sequence[str] | None = None,
    regression: bool = False,
    encoding: str = "utf-8",
) -> Examples:
    """Load a user CSV (.csv), TSV (.tsv, read without quoting like GLUE) or JSON Lines (.jsonl/.json) file.

    Classification labels are read as strings ("1" and 1 are the same label) and numbered by their
    position in `label_list`, or by the sorted labels of this file when `label_list` is None (numeric
    labels sort numerically). `regression` reads float targets. An empty, null or NaN label (any case)
    is missing: a SharcsError naming its row. `label_column` None loads unlabeled texts (for
    prediction); their label list is `label_list`, or () when unknown, or None for regression.
    `encoding` is the file's text encoding.
    """
    path = Path(path).expanduser()
    text_columns = tuple(text_columns)
    check_encoding(encoding)
    ext = path.suffix.lower()
    if ext not in _FILE_EXTENSIONS:
        raise SharcsError(
            f"{path}: unknown file type {ext or '(no extension)'!r}; use one of {', '.join(_FILE_EXTENSIONS)}"
        )
    if len(text_columns) not in (1, 2):
        raise SharcsError(
            f"{path}: give one or two text columns, got {len(text_columns)}: {list(text_columns)}"
        )
    if regression and label_list is not None:
        raise SharcsError(f"{path}: a label list was given for a regression target; give one or the other")
    if not path.exists():
        raise SharcsError(f"data file not found: {path}")
    if not path.is_file():
        raise SharcsError(f"data file {path} is not a file")

    if ext in (".jsonl", ".json"):
        columns, records = _read_json_lines(path, encoding)
    else:
        columns, records = _read_delimited(path, ext, encoding)
    if not records:
        raise SharcsError(f"{path} has no data rows")
    wanted = text_columns + ((label_column,) if label_column is not None else ())
    for name in wanted:
        if name not in columns:
            raise SharcsError(f"{path}: column {name!r} not found; columns: {', '.join(map(str, columns))}")

    texts: list[tuple[str, ...]] = []
    raw_labels: list[Any] = []
    for row, (line, record) in enumerate(records, start=1):
        texts.append(tuple(_text_value(record, name, path, row_place(row, line)) for name in text_columns))
        if label_column is not None:
            raw_labels.append(record.get(label_column))

    examples = _with_labels(path, records, texts, raw_labels, label_column, label_list, regression)
    validate_texts(examples)
    return examples


def _with_labels(
    path: Path,
    records: list[tuple[int, dict[str, Any]]],
    texts: list[tuple[str, ...]],
    raw_labels: list[Any],
    label_column: str | None,
    label_list: Sequence[str] | None,
    regression: bool,
) -> Examples:
    """Parse the label column into class ids or floats and build the Examples."""
    source = str(path)
    if label_column is None:
        names = None if regression else tuple(str(name).strip() for name in label_list or ())
        return Examples(texts, None, names, source)
    places = [row_place(row, line) for row, (line, _) in enumerate(records, start=1)]
    if regression:
        floats = [parse_float(value, source, where) for value, where in zip(raw_labels, places, strict=True)]
        return Examples(texts, floats, None, source)

    for value, where in zip(raw_labels, places, strict=True):
        if is_missing(value):
            raise SharcsError(
                f"{source}: {where} has no label in column {label_column!r} (got {show(value)}); "
                "fill it in or drop the row"
            )
    strings = [
        _label_string(value, label_column, source, where)
        for value, where in zip(raw_labels, places, strict=True)
    ]
    if label_list is None:
        names = tuple(sorted(set(strings), key=_label_sort_key))
    else:
        names = tuple(str(name).strip() for name in label_list)
        if len(set(names)) != len(names):
            raise SharcsError(f"{source}: the label list has duplicates: {list(names)}")
        if not names:
            raise SharcsError(f"{source}: the label list is empty")
    ids = {name: i for i, name in enumerate(names)}
    labels: list[int] = []
    for value, where in zip(strings, places, strict=True):
        if value not in ids:
            raise SharcsError(
                f"{source}: {where} has label {show(value)}, not in the label list {list(names)}"
            )
        labels.append(ids[value])
    return Examples(texts, labels, names, source)


def _read_delimited(
    path: Path, ext: str, encoding: str = "utf-8"
) -> tuple[list[str], list[tuple[int, dict[str, Any]]]]:
    """Read a CSV (standard quoting) or TSV (no quoting) file with a header line."""
    records: list[tuple[int, dict[str, Any]]] = []
    csv.field_size_limit(FIELD_SIZE_LIMIT)
    try:
        with path.open("rb") as handle:
            lines = decode_lines(handle, encoding, f"cannot read {path}")
            if ext == ".tsv":
                reader = csv.reader(lines, delimiter="\t", quoting=csv.QUOTE_NONE)
            else:
                reader = csv.reader(lines)
            header = next(reader, None)
            if header is None:
                raise SharcsError(f"{path} is empty")
            header = [name.strip() for name in header]
            for fields in reader:
                if not fields or not any(field.strip() for field in fields):
                    continue
                if len(fields) != len(header):
                    raise SharcsError(
                        f"{path}: line {reader.line_num} has {len(fields)} fields, header has {len(header)}"
                    )
                records.append((reader.line_num, dict(zip(header, fields, strict=True))))
    except csv.Error as err:
        raise SharcsError(f"cannot read {path}: line {reader.line_num}: {one_line(err)}") from err
    except OSError as err:
        raise SharcsError(f"cannot read {path}: {one_line(err)}") from err
    return header, records


def _read_json_lines(
    path: Path, encoding: str = "utf-8"
) -> tuple[list[str], list[tuple[int, dict[str, Any]]]]:
    """Read JSON Lines (one object per line); a .json file holding one array of objects works too."""
    try:
        with path.open("rb") as handle:
            text = "".join(decode_lines(handle, encoding, f"cannot read {path}"))
    except OSError as err:
        raise SharcsError(f"cannot read {path}: {one_line(err)}") from err
    items: list[tuple[int, Any]] = []
    if text.lstrip().startswith("["):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise SharcsError(f"{path}: invalid JSON at line {err.lineno}: {err.msg}") from err
        if not isinstance(data, list):
            raise SharcsError(f"{path}: expected a JSON array of objects")
        items = list(enumerate(data, start=1))
    else:
        for number, line in enumerate(text.split("\n"), start=1):
            if line.strip():
                try:
                    items.append((number, json.loads(line)))
                except json.JSONDecodeError as err:
                    raise SharcsError(f"{path}: line {number} is not valid JSON: {err.msg}") from err
    columns: dict[str, None] = {}
    records: list[tuple[int, dict[str, Any]]] = []
    for row, (line, item) in enumerate(items, start=1):
        if not isinstance(item, dict):
            raise SharcsError(f"{path}: {row_place(row, line)} is not a JSON object")
        columns.update(dict.fromkeys(item))
        records.append((line, item))
    return list(columns), records


def _text_value(record: dict[str, Any], column: str, path: Path, where: str) -> str:
    """The text in `column` of one record ("" for a missing or null value, which validation rejects)."""
    value = record.get(column)
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SharcsError(f"{path}: {where} has a non-text value {show(value)} in column {column!r}")
    return str(value)


def _label_string(value: Any, column: str, source: str, where: str) -> str:
    """A classification label as a string: 1, 1.0 and "1" all give "1"."""
    if isinstance(value, bool):
        text = str(value).lower()
    elif isinstance(value, int):
        text = str(value)
    elif isinstance(value, float) and value.is_integer():
        text = str(int(value))
    elif isinstance(value, float | str):
        text = str(value).strip()
    else:
        text = ""
    if not text:
        raise SharcsError(f"{source}: {where} has no label in column {column!r} (got {show(value)})")
    return text


def _label_sort_key(label: str) -> tuple[int, float, str]:
    """Sort numeric labels by value, before any non-numeric labels (sorted as strings)."""
    try:
        return (0, float(label), label)
    except ValueError:
        return (1, 0.0, label)
