"""Reading examples: GLUE TSVs (or the Hugging Face hub) and user CSV / TSV / JSON Lines files.

Row numbers in error messages count data rows from 1 (a header line is not a row); where the file
line differs it is given too, as "row 5 (line 6)". Files are decoded line by line (UTF-8 unless an
`encoding` is given, a byte order mark skipped), so a byte that does not decode is reported with its
line; fields of any length are read (long texts are truncated at tokenization, never rejected).
"""

from __future__ import annotations

import codecs
import csv
import itertools
import json
import math
import os
import re
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sharcs.data.tasks import TaskSpec, get_task
from sharcs.errors import SharcsError

GLUE_DIR_ENV = "SHARCS_GLUE_DIR"
HUB_DATASET = "nyu-mll/glue"

# Column names of each task in the hub copy of GLUE (they differ from the TSV headers).
_HUB_TEXT_COLUMNS: dict[str, tuple[str, ...]] = {
    "cola": ("sentence",),
    "sst2": ("sentence",),
    "mrpc": ("sentence1", "sentence2"),
    "stsb": ("sentence1", "sentence2"),
    "qqp": ("question1", "question2"),
    "mnli": ("premise", "hypothesis"),
    "qnli": ("question", "sentence"),
    "rte": ("sentence1", "sentence2"),
}
# CoLA's train and dev files have no header line; these are the official column names.
_COLA_COLUMNS = ("source", "label", "original_label", "sentence")
_FILE_EXTENSIONS = (".csv", ".tsv", ".jsonl", ".json")
# csv refuses fields over 131072 characters by default; texts of any length are read (and truncated
# to the model's length at tokenization). The largest value a C long holds on every platform.
_FIELD_SIZE_LIMIT = min(sys.maxsize, 2**31 - 1)
# Label values that mean "no label": a missing label is an error, never a class of its own.
_MISSING_LABELS = ("", "nan")
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


def _show(value: object, limit: int = 60) -> str:
    """A short one-line repr of a value for an error message."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _one_line(err: BaseException, limit: int = 200) -> str:
    """An exception as one short line: its type and the first line of its message."""
    lines = str(err).strip().splitlines()
    first = lines[0] if lines else ""
    first = first if len(first) <= limit else first[: limit - 3] + "..."
    return f"{type(err).__name__}: {first}" if first else type(err).__name__


def _where(row: int, line: int) -> str:
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
                raise SharcsError(f"{examples.source}: row {row} has an empty {which} ({_show(text)})")


# ------------------------------------------------------------------------------------------- decoding


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


# ---------------------------------------------------------------------------------------------------- GLUE


def _split_file(spec: TaskSpec, split: str) -> str:
    """Map a split name to the GLUE file stem ("train", "dev", "dev_matched", "test_mismatched", ...)."""
    key = split.strip().lower().replace("validation", "dev")
    if spec.name == "mnli":
        key = {"dev": "dev_matched", "test": "test_matched"}.get(key, key)
        stems = ("train", "dev_matched", "dev_mismatched", "test_matched", "test_mismatched")
        valid = (
            "train, dev (= dev_matched), dev_matched, dev_mismatched, test (= test_matched), test_mismatched"
        )
    else:
        stems = ("train", "dev", "test")
        valid = ", ".join(stems)
    if key not in stems:
        raise SharcsError(f"unknown split {split!r} for GLUE task {spec.name}; valid splits: {valid}")
    return key


def load_glue(task: str | TaskSpec, split: str, data_dir: str | Path | None = None) -> Examples:
    """Load one split of a GLUE task.

    `split` is "train", "dev" or "test" (for MNLI "dev" is dev_matched; "dev_mismatched" and
    "test_mismatched" work too). Test splits come without labels. With `data_dir` None the folder in
    $SHARCS_GLUE_DIR is used, and without that the "nyu-mll/glue" dataset on the Hugging Face hub.
    """
    spec = task if isinstance(task, TaskSpec) else get_task(task)
    stem = _split_file(spec, split)
    if data_dir is None and os.environ.get(GLUE_DIR_ENV, "").strip():
        data_dir = os.environ[GLUE_DIR_ENV].strip()
    if data_dir is None:
        examples = _load_hub(spec, stem)
    else:
        examples = _load_glue_tsv(spec, stem, Path(data_dir).expanduser())
    validate_texts(examples)
    return examples


def _iter_tsv(path: Path) -> Iterator[tuple[int, list[str]]]:
    """Yield (line number, fields) for each non-blank line of a GLUE-style TSV (no quoting)."""
    csv.field_size_limit(_FIELD_SIZE_LIMIT)
    try:
        with path.open("rb") as handle:
            lines = decode_lines(handle, "utf-8", f"cannot read {path}")
            reader = csv.reader(lines, delimiter="\t", quoting=csv.QUOTE_NONE)
            for fields in reader:
                if fields and any(fields):
                    yield reader.line_num, fields
    except (OSError, csv.Error) as err:
        raise SharcsError(f"cannot read {path}: {_one_line(err)}") from err


def _load_glue_tsv(spec: TaskSpec, stem: str, data_dir: Path) -> Examples:
    """Read `<data_dir>/<glue_dir>/<stem>.tsv` into Examples."""
    if not data_dir.is_dir():
        raise SharcsError(f"GLUE data directory {data_dir} does not exist")
    task_dir = data_dir / spec.glue_dir
    if not task_dir.is_dir():
        raise SharcsError(f"GLUE folder for {spec.name} not found: {task_dir} (expected in {data_dir})")
    path = task_dir / f"{stem}.tsv"
    if not path.is_file():
        raise SharcsError(f"GLUE file for {spec.name} split {stem} not found: {path}")

    rows = _iter_tsv(path)
    first = next(rows, None)
    if first is None:
        raise SharcsError(f"{path} has no rows")
    header: list[str] = first[1]
    pending: list[tuple[int, list[str]]] = []
    if spec.name == "cola" and "sentence" not in header:  # CoLA train/dev: no header line
        header, pending = list(_COLA_COLUMNS), [first]
    header = [name.strip() for name in header]

    labeled = not stem.startswith("test")
    needed = spec.text_columns + ((spec.label_column,) if labeled else ())
    missing = [name for name in needed if name not in header]
    if missing:
        raise SharcsError(f"{path}: column {missing[0]!r} not found; columns: {', '.join(header)}")
    text_idx = [header.index(name) for name in spec.text_columns]
    label_idx = header.index(spec.label_column) if labeled else -1
    label_ids = {label: i for i, label in enumerate(spec.label_list or ())}

    texts: list[tuple[str, ...]] = []
    labels: list[Any] = []
    for line, fields in itertools.chain(pending, rows):
        if len(fields) != len(header):
            raise SharcsError(f"{path}: line {line} has {len(fields)} fields, expected {len(header)}")
        texts.append(tuple(fields[i] for i in text_idx))
        if labeled:
            raw = fields[label_idx].strip()
            if spec.label_list is None:
                labels.append(_parse_float(raw, str(path), f"line {line}"))
            elif raw in label_ids:
                labels.append(label_ids[raw])
            else:
                raise SharcsError(
                    f"{path}: line {line} has label {_show(raw)}, not one of {', '.join(spec.label_list)}"
                )
    return Examples(texts, labels if labeled else None, spec.label_list, str(path))


def _load_hub(spec: TaskSpec, stem: str) -> Examples:
    """Download a split of the hub copy of GLUE with `datasets.load_dataset`."""
    hub_split = stem.replace("dev", "validation")
    source = f"hub:{HUB_DATASET}/{spec.hub_name}/{hub_split}"
    try:
        import datasets

        dataset = datasets.load_dataset(HUB_DATASET, spec.hub_name, split=hub_split)
    except Exception as err:  # any failure here means: no usable hub copy
        raise SharcsError(
            f"could not load GLUE {spec.name} from the Hugging Face hub ({_one_line(err)}); "
            f"pass --data-dir DIR or set {GLUE_DIR_ENV} to a folder with the GLUE TSV files"
        ) from err
    return examples_from_hub(spec, dataset, source)


def examples_from_hub(spec: TaskSpec, dataset: Any, source: str) -> Examples:
    """Convert a split of the hub's GLUE dataset (hub column names, ClassLabel ids) into Examples.

    Hub label ids are mapped to `spec.label_list` by name where the hub names are the task's label
    strings (MNLI orders them differently), otherwise by position; a split whose labels are all -1
    (the test splits) gives labels None.
    """
    columns = _HUB_TEXT_COLUMNS[spec.name]
    missing = [name for name in (*columns, "label") if name not in dataset.column_names]
    if missing:
        raise SharcsError(
            f"{source}: column {missing[0]!r} not found; columns: {', '.join(dataset.column_names)}"
        )
    texts = list(zip(*(dataset[name] for name in columns), strict=True))
    raw = list(dataset["label"])
    if not raw or all(value == -1 for value in raw):
        return Examples(texts, None, spec.label_list, source)
    if spec.label_list is None:
        return Examples(texts, [float(value) for value in raw], None, source)
    names = list(getattr(dataset.features["label"], "names", None) or [])
    if names and set(names) <= set(spec.label_list):
        mapping = {i: spec.label_list.index(name) for i, name in enumerate(names)}
    else:
        mapping = {i: i for i in range(len(spec.label_list))}
    labels: list[int] = []
    for row, value in enumerate(raw, start=1):
        if value not in mapping:
            raise SharcsError(
                f"{source}: row {row} has label id {_show(value)}, expected 0..{len(mapping) - 1}"
            )
        labels.append(mapping[value])
    return Examples(texts, labels, spec.label_list, source)


# ---------------------------------------------------------------------------------------------- user files


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
        texts.append(tuple(_text_value(record, name, path, _where(row, line)) for name in text_columns))
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
    places = [_where(row, line) for row, (line, _) in enumerate(records, start=1)]
    if regression:
        floats = [_parse_float(value, source, where) for value, where in zip(raw_labels, places, strict=True)]
        return Examples(texts, floats, None, source)

    for value, where in zip(raw_labels, places, strict=True):
        if _is_missing(value):
            raise SharcsError(
                f"{source}: {where} has no label in column {label_column!r} (got {_show(value)}); "
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
                f"{source}: {where} has label {_show(value)}, not in the label list {list(names)}"
            )
        labels.append(ids[value])
    return Examples(texts, labels, names, source)


def _read_delimited(
    path: Path, ext: str, encoding: str = "utf-8"
) -> tuple[list[str], list[tuple[int, dict[str, Any]]]]:
    """Read a CSV (standard quoting) or TSV (no quoting) file with a header line."""
    records: list[tuple[int, dict[str, Any]]] = []
    csv.field_size_limit(_FIELD_SIZE_LIMIT)
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
        raise SharcsError(f"cannot read {path}: line {reader.line_num}: {_one_line(err)}") from err
    except OSError as err:
        raise SharcsError(f"cannot read {path}: {_one_line(err)}") from err
    return header, records


def _read_json_lines(
    path: Path, encoding: str = "utf-8"
) -> tuple[list[str], list[tuple[int, dict[str, Any]]]]:
    """Read JSON Lines (one object per line); a .json file holding one array of objects works too."""
    try:
        with path.open("rb") as handle:
            text = "".join(decode_lines(handle, encoding, f"cannot read {path}"))
    except OSError as err:
        raise SharcsError(f"cannot read {path}: {_one_line(err)}") from err
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
            raise SharcsError(f"{path}: {_where(row, line)} is not a JSON object")
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
        raise SharcsError(f"{path}: {where} has a non-text value {_show(value)} in column {column!r}")
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
        raise SharcsError(f"{source}: {where} has no label in column {column!r} (got {_show(value)})")
    return text


def _is_missing(value: Any) -> bool:
    """True for a label that is not there: None (JSON null), a NaN float, or "", "NaN", "nan" (any case)."""
    if value is None:
        return True
    if isinstance(value, float):
        return math.isnan(value)
    return isinstance(value, str) and value.strip().lower() in _MISSING_LABELS


def _label_sort_key(label: str) -> tuple[int, float, str]:
    """Sort numeric labels by value, before any non-numeric labels (sorted as strings)."""
    try:
        return (0, float(label), label)
    except ValueError:
        return (1, 0.0, label)


def _parse_float(value: Any, source: str, where: str) -> float:
    """A finite regression target, or SharcsError naming the value and row."""
    if _is_missing(value):
        raise SharcsError(
            f"{source}: {where} has no regression target (got {_show(value)}); fill it in or drop the row"
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
        raise SharcsError(f"{source}: {where} has a non-numeric regression target {_show(value)}")
    return number
