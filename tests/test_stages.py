"""The default recipe's two stages (sharcs.training.stages): a plain fine-tune into OUT/finetune/, then
importance rewiring under its head and the sandwich recipe from it, resumable as one run."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest
import torch
from conftest import GLUE_DIR
from safetensors.torch import load_file

from sharcs.cli import main as cli
from sharcs.errors import SharcsError
from sharcs.storage.lock import LOCK_NAME, OutputLock
from sharcs.training.options import STAGED_REWIRE_SAMPLES, TrainOptions
from sharcs.training.stages import finetune_stage, sandwich_stage
from sharcs.training.trainer import Trainer

needs_glue = pytest.mark.skipif(not (GLUE_DIR / "SST-2").is_dir(), reason="GLUE data not found")


def train_args(model: Path | str, out: Path, *extra: object) -> list[str]:
    args = ["train", "--model", model, "--output-dir", out, "--task", "sst2", "--data-dir", GLUE_DIR,
            "--max-train-samples", 80, "--max-eval-samples", 32, "--max-seq-length", 32,
            "--held-out-fraction", 0.3, "--batch-size", 16, "--lr", 1e-3, *extra]  # fmt: skip
    return [str(a) for a in args]


def read(path: Path) -> dict:
    return json.loads(path.read_text())


def same_weights(a: Path, b: Path) -> bool:
    wa, wb = load_file(a / "model" / "model.safetensors"), load_file(b / "model" / "model.safetensors")
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def test_the_default_splits_the_epochs_and_resolves_what_the_run_config_records() -> None:
    staged = TrainOptions(output_dir="o", task="sst2", epochs=3)
    assert (staged.finetune_epochs, staged.rewire_samples) == (2, STAGED_REWIRE_SAMPLES)
    one = TrainOptions(output_dir="o", task="sst2", epochs=1)  # no epoch left for a fine-tune first
    assert (one.finetune_epochs, one.rewire_samples) == (0, 0)
    for other in ({"method": "full"}, {"method": "cascade"}, {"recipe": "paper"}):
        assert TrainOptions(output_dir="o", task="sst2", **other).finetune_epochs == 0
    # a run saved before stages existed trained the sandwich recipe from its first step
    legacy = {k: v for k, v in staged.to_dict().items() if k != "finetune_epochs"}
    assert TrainOptions.from_dict({**legacy, "rewire_samples": 0}).finetune_epochs == 0
    assert TrainOptions.from_dict(staged.to_dict()) == staged


def test_stage_one_takes_the_data_and_optimizer_but_none_of_the_methods_options() -> None:
    options = TrainOptions(
        output_dir="runs/x", task="mrpc", epochs=4, finetune_epochs=3, lr=2e-5, seed=7, max_seq_length=64,
        max_train_samples=100, held_out_fraction=0.2, max_drop=0.01, narrow_gradient="project",
        keep_residual=True, adaptive_layer=2, widths=(0.5, 1.0), distill_hidden=True,
    )  # fmt: skip
    first = finetune_stage(options)
    first.validate(check_device=False)  # no sandwich-only option leaks into --method full
    assert (first.method, first.epochs, first.output_dir) == ("full", 3, str(Path("runs/x/finetune")))
    for name in ("task", "lr", "seed", "max_seq_length", "max_train_samples", "held_out_fraction", "model"):
        assert getattr(first, name) == getattr(options, name), name
    second = sandwich_stage(options)
    assert (second.model, second.epochs, second.finetune_epochs) == (first.output_dir, 1, 0)
    assert dataclasses.replace(second, model=options.model, epochs=4, finetune_epochs=3) == options


@needs_glue
def test_a_staged_run_is_the_fine_tune_then_the_rewired_sandwich_recipe_from_it(
    tiny_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "staged"
    seen: list[str] = []
    original = Trainer.train

    def train_and_probe(self: Trainer, resume: bool = False) -> list[dict]:
        with pytest.raises(SharcsError, match="in use by another sharcs train"):
            OutputLock(out).acquire()  # what a second process gets while either stage trains
        seen.append(Path(self.output_dir).name)
        return original(self, resume)

    monkeypatch.setattr(Trainer, "train", train_and_probe)
    assert cli.main(train_args(tiny_dir, out, "--epochs", 3)) == 0, capsys.readouterr().err
    monkeypatch.setattr(Trainer, "train", original)
    printed = capsys.readouterr().out
    assert seen == ["finetune", "staged"]
    first = out / "finetune"
    # a finished staged run keeps both models and their metrics, no training state and no lock
    weights = sorted(str(p.relative_to(out)) for p in out.rglob("*.safetensors"))
    assert weights == ["finetune/model/model.safetensors", "model/model.safetensors"]
    assert not list(out.rglob("trainer_state*")) and not list(out.rglob(LOCK_NAME))
    assert read(first / "run_config.json")["options"]["method"] == "full"
    assert len(read(first / "history.json")) == 2 and len(read(out / "history.json")) == 1
    recorded = read(out / "run_config.json")["options"]
    assert recorded["model"] == str(tiny_dir) and recorded["epochs"] == 3  # the command as given
    assert recorded["finetune_epochs"] == 2 and recorded["rewire_samples"] == STAGED_REWIRE_SAMPLES
    results = read(out / "results.json")
    assert results["finetune"]["metrics"] == read(first / "results.json")["metrics"]
    assert "the plain fine-tune it started from: dev accuracy" in printed
    log = (out / "train.log").read_text()
    assert "stage 1 of 2: a plain fine-tune of the full model for 2 of the 3 epochs" in log
    assert "stage 2 of 2: 1 epoch(s)" in log and "rewired heads and FFN units" in log

    # the same as the two commands of the measured recipe (docs/notes/recipe-findings.md §7), bit for bit:
    # stage 1 is the plain fine-tune of the same data, seed and optimizer settings
    plain, then = tmp_path / "plain", tmp_path / "then"
    assert cli.main(train_args(tiny_dir, plain, "--epochs", 2, "--method", "full")) == 0
    assert cli.main(train_args(plain, then, "--epochs", 1, "--rewire-samples", STAGED_REWIRE_SAMPLES)) == 0
    capsys.readouterr()
    assert same_weights(plain, first) and same_weights(then, out)

    # --continue on the finished run trains nothing and reports the same results
    assert cli.main(train_args(tiny_dir, out, "--epochs", 3, "--continue")) == 0
    assert "already holds this run" in capsys.readouterr().err

    # stopped between the stages: --resume points to --continue, which keeps stage 1 and redoes stage 2
    log_before = (first / "train.log").read_text()
    saved = tmp_path / "saved-model"
    shutil.copytree(out / "model", saved / "model")
    for name in ("run_config.json", "results.json", "history.json", "train.log"):
        (out / name).unlink()
    shutil.rmtree(out / "model")
    assert cli.main(train_args(tiny_dir, out, "--epochs", 3, "--resume")) == 2
    assert "stopped in its fine-tune stage" in capsys.readouterr().err
    assert cli.main(train_args(tiny_dir, out, "--epochs", 3, "--continue")) == 0
    assert "already holds" not in capsys.readouterr().err  # a finished stage 1 goes on quietly
    assert (first / "train.log").read_text() == log_before  # stage 1 was not trained again
    assert same_weights(saved, out)

    # killed in stage 2 after a checkpoint: --continue resumes it there, to the same weights
    killed, calls = tmp_path / "killed", {"n": 0}
    step = Trainer.train_step

    def stop_in_stage_two(self: Trainer, *args: object) -> float:
        calls["n"] += 1
        if calls["n"] == 11:  # stage 1: 2 epochs x 4 steps; then 2 steps into stage 2
            raise KeyboardInterrupt
        return step(self, *args)

    monkeypatch.setattr(Trainer, "train_step", stop_in_stage_two)
    assert cli.main(train_args(tiny_dir, killed, "--epochs", 3, "--save-every-steps", 1)) == 130
    monkeypatch.setattr(Trainer, "train_step", step)
    assert (killed / "finetune" / "results.json").is_file() and not (killed / "results.json").exists()
    assert cli.main(train_args(tiny_dir, killed, "--epochs", 3, "--save-every-steps", 1, "--continue")) == 0
    assert "resuming at epoch 1, step 2" in capsys.readouterr().err
    assert same_weights(first, killed / "finetune") and same_weights(out, killed)


def test_staged_option_errors(tiny_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["train", "--model", str(tiny_dir), "--output-dir", str(tmp_path / "x"), "--task", "sst2"]
    cases = [
        (["--epochs", "3", "--finetune-epochs", "3"], "leaves none of --epochs 3 for the sandwich recipe"),
        (["--finetune-epochs", "-1"], "--finetune-epochs: must be at least 0"),
        (["--finetune-epochs", "1", "--method", "full"], "--finetune-epochs is for --method sharcs"),
        (["--finetune-epochs", "1", "--recipe", "paper"], "--finetune-epochs is for --method sharcs"),
    ]
    for extra, message in cases:
        assert cli.main([*base, *extra]) == 2
        assert message in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
