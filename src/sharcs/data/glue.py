"""GLUE examples: the task's TSV files from a local folder, or the Hugging Face hub copy."""

from __future__ import annotations

import csv
import itertools
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sharcs.data.examples import (
    FIELD_SIZE_LIMIT,
    Examples,
    decode_lines,
    one_line,
    parse_float,
    show,
    validate_texts,
)
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
    csv.field_size_limit(FIELD_SIZE_LIMIT)
    try:
        with path.open("rb") as handle:
            lines = decode_lines(handle, "utf-8", f"cannot read {path}")
            reader = csv.reader(lines, delimiter="\t", quoting=csv.QUOTE_NONE)
            for fields in reader:
                if fields and any(fields):
                    yield reader.line_num, fields
    except (OSError, csv.Error) as err:
        raise SharcsError(f"cannot read {path}: {one_line(err)}") from err


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
                labels.append(parse_float(raw, str(path), f"line {line}"))
            elif raw in label_ids:
                labels.append(label_ids[raw])
            else:
                raise SharcsError(
                    f"{path}: line {line} has label {show(raw)}, not one of {', '.join(spec.label_list)}"
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
            f"could not load GLUE {spec.name} from the Hugging Face hub ({one_line(err)}); "
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
                f"{source}: row {row} has label id {show(value)}, expected 0..{len(mapping) - 1}"
            )
        labels.append(mapping[value])
    return Examples(texts, labels, spec.label_list, source)
