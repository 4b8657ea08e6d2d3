"""Trainer: width buckets, one step over all of them, schedule, learning, checkpoint/resume."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from conftest import random_dataset, tiny_model

from sharcs import SharcsConfig, SharcsError, SharcsModel, get_sharcs_model
from sharcs.data.collate import pad_batch
from sharcs.inference.predict import predict
from sharcs.methods.sharcs.config import width_key
from sharcs.methods.sharcs.hardness import confidence
from sharcs.modeling.losses import hidden_distillation_loss
from sharcs.training.checkpoints import find_checkpoint
from sharcs.training.trainer import Trainer, TrainingArguments, lr_factor


def make_trainer(tmp_path=None, epochs=3, window=1, n=48, seed=0, **kwargs) -> Trainer:
    model = get_sharcs_model(
        tiny_model("bert", seed=seed), SharcsConfig(adaptive_layer=2, window=window, threshold=0.5)
    )
    kwargs.setdefault("recipe", "paper")  # these tests check the paper's hardness buckets
    args = TrainingArguments(epochs=epochs, batch_size=8, lr=1e-3, seed=seed, **kwargs)
    return Trainer(model, random_dataset(n), args, output_dir=tmp_path)


def test_each_step_takes_one_batch_from_every_bucket_cycling_the_smaller():
    trainer = make_trainer()
    eligible = torch.zeros(48, 2, dtype=torch.bool)
    eligible[:36, 0] = True  # 36 samples narrow, 12 full
    eligible[36:, 1] = True
    trainer.hooks.labeler.eligible = eligible
    steps, assignment = trainer.plan_epoch(1)
    assert assignment.tolist() == [0] * 36 + [1] * 12
    assert len(steps) == 5  # ceil(36 / 8)
    assert all([w for w, _ in step.batches] == [0, 1] for step in steps)
    narrow = [i for step in steps for i in step.batches[0][1]]
    assert sorted(narrow) == list(range(36))
    full_batches = [tuple(step.batches[1][1]) for step in steps]
    assert full_batches[2] == full_batches[0] and full_batches[3] == full_batches[1]  # 2 batches, cycled
    again, _ = trainer.plan_epoch(1)
    assert [s.batches for s in again] == [s.batches for s in steps], "plans are reproducible"


def test_schedule_warms_up_then_decays_to_zero():
    assert lr_factor(0.0, 0.1) == 0.0
    assert lr_factor(0.05, 0.1) == pytest.approx(0.5)
    assert lr_factor(0.1, 0.1) == pytest.approx(1.0)
    assert lr_factor(0.55, 0.1) == pytest.approx(0.5)
    assert lr_factor(1.0, 0.1) == 0.0


def test_training_learns_and_labels_move_samples_to_the_narrow_width(tmp_path):
    trainer = make_trainer(tmp_path, epochs=6, n=96)
    history = trainer.train()
    assert len(history) == 6
    assert history[0]["trained_width_share"]["1.0"] == 1.0, "the first epoch is warm-up at full width"
    assert history[-1]["trained_width_share"]["0.25"] > 0.2
    preds = predict(trainer.model, trainer.data)
    accuracy = (preds.logits.argmax(-1) == torch.tensor(trainer.data["labels"])).float().mean()
    assert accuracy > 0.8, accuracy
    assert set(preds.routes.tolist()) == {0.25, 1.0}, "the trained router sends samples to both widths"
    assert (find_checkpoint(tmp_path) / "trainer_state.json").is_file()
    assert (find_checkpoint(tmp_path) / "trainer_state.safetensors").is_file()
    assert not (find_checkpoint(tmp_path) / "trainer_state.pt").exists(), "nothing is pickled"
    assert (tmp_path / "history.json").is_file()


def test_group_by_length_batches_similar_lengths_and_still_covers_every_sample_once():
    """--group-by-length: the same samples per epoch, far less padding than shuffled batches, a shuffled
    batch order (not longest first throughout), and a plan that depends only on seed and epoch."""
    padding = {}
    for grouped in (False, True):
        trainer = make_trainer(n=256, group_by_length=grouped, recipe="sandwich")
        steps, _ = trainer.plan_epoch(0)
        batches = [indices for step in steps for _, indices in step.batches]
        assert sorted(i for b in batches for i in b) == list(range(256))
        lengths = trainer.data["attention_mask"]
        padding[grouped] = sum(
            max(len(lengths[i]) for i in b) * len(b) - sum(len(lengths[i]) for i in b) for b in batches
        )
        if grouped:
            longest = [max(len(lengths[i]) for i in b) for b in batches]
            assert longest != sorted(longest, reverse=True), "the batches' order is shuffled"
            again, _ = trainer.plan_epoch(0)
            assert [s.batches for s in again] == [s.batches for s in steps]
            other, _ = trainer.plan_epoch(1)
            assert [s.batches for s in other] != [s.batches for s in steps]
    assert padding[True] < 0.3 * padding[False], padding


@pytest.mark.parametrize("grouped", [False, True], ids=["shuffled", "grouped-by-length"])
def test_resume_after_a_crash_gives_identical_weights(tmp_path, grouped):
    straight = make_trainer(tmp_path / "a", epochs=3, save_every_steps=2, group_by_length=grouped)
    straight.train()

    crashing = make_trainer(tmp_path / "b", epochs=3, save_every_steps=2, group_by_length=grouped)
    calls = {"n": 0}
    original = crashing.train_step

    def crash_after_seven(step, factor):
        calls["n"] += 1
        if calls["n"] == 8:
            raise KeyboardInterrupt  # killed mid-epoch 2; last checkpoint after step 6
        return original(step, factor)

    crashing.train_step = crash_after_seven
    with pytest.raises(KeyboardInterrupt):
        crashing.train()
    torch.manual_seed(1234)  # the resumed process starts with other RNG state
    resumed = make_trainer(tmp_path / "b", epochs=3, save_every_steps=2, seed=0, group_by_length=grouped)
    resumed.train(resume=True)

    a, b = straight.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [r["train_loss"] for r in straight.history] == [r["train_loss"] for r in resumed.history]
    assert torch.equal(straight.hooks.labeler.eligible, resumed.hooks.labeler.eligible)


def test_resume_errors(tmp_path):
    with pytest.raises(SharcsError, match="nothing to resume"):
        make_trainer(tmp_path).train(resume=True)
    trainer = make_trainer(tmp_path, epochs=1)
    trainer.train()
    state = find_checkpoint(tmp_path) / "trainer_state.json"
    good = state.read_bytes()
    state.write_bytes(b"garbage")
    with pytest.raises(SharcsError, match="trainer_state.json is corrupt"):
        make_trainer(tmp_path).train(resume=True)
    state.write_bytes(good)
    tensors = find_checkpoint(tmp_path) / "trainer_state.safetensors"
    tensors.write_bytes(b"garbage")
    with pytest.raises(SharcsError, match="trainer_state.safetensors is corrupt"):
        make_trainer(tmp_path).train(resume=True)


def test_best_epoch_is_saved_by_the_selection_metric(tmp_path):
    scores = iter([0.5, 0.9, 0.7])
    model = get_sharcs_model(tiny_model("bert"), SharcsConfig(adaptive_layer=2, window=1))
    trainer = Trainer(
        model,
        random_dataset(32),
        TrainingArguments(epochs=3, batch_size=8),
        output_dir=tmp_path,
        evaluate=lambda m: {"heldout_accuracy": next(scores)},
        select_metric="heldout_accuracy",
    )
    history = trainer.train()
    assert [r.get("best", False) for r in history] == [True, True, False]
    assert SharcsModel.from_pretrained(tmp_path / "best").config == model.config


def scripted_trainer(tmp_path, records, tolerance, epochs=None):
    """A Trainer whose held-out (accuracy, FLOPs) per epoch come from `records`."""
    scores = iter(records)
    model = get_sharcs_model(tiny_model("bert"), SharcsConfig(adaptive_layer=2, window=1))

    def evaluate(_model):
        accuracy, flops = next(scores)
        return {"heldout_accuracy": accuracy, "heldout_flops": flops}

    args = TrainingArguments(epochs=epochs or len(records), batch_size=8, select_tolerance=tolerance)
    return Trainer(
        model, random_dataset(32), args, tmp_path, evaluate, "heldout_accuracy", select_cost="heldout_flops"
    )


@pytest.mark.parametrize(
    ("tolerance", "records", "kept"),
    [
        (0.0, [(0.80, 9), (0.85, 9), (0.85, 5), (0.84, 1)], 2),  # the best; a tie goes to the cheaper
        (0.0, [(0.80, 9), (0.85, 5), (0.85, 9)], 1),  # a tie never goes to the dearer
        (0.0, [(0.80, 9), (0.85, 5.0), (0.85, 5.05)], 2),  # as cheap within 2%: the later epoch
        (0.0, [(0.85, 5.0), (0.85, 5.0), (0.84, 1)], 1),  # a tie at equal cost: the later epoch
        (0.02, [(0.80, 9), (0.85, 9), (0.84, 5), (0.82, 1)], 2),  # cheapest within 2 points of 0.85
        (0.02, [(0.85, 5), (0.90, 9), (0.89, 7)], 2),  # 0.85 falls out when 0.90 arrives
        (0.02, [(0.85, 5), (0.86, 5)], 1),  # as cheap and better
        (0.02, [(0.86, 5), (0.85, 5.05)], 0),  # as cheap but worse: the earlier stays
    ],
)
def test_select_tolerance_keeps_the_cheapest_epoch_near_the_best(tmp_path, tolerance, records, kept):
    history = scripted_trainer(tmp_path, records, tolerance).train()
    assert max(i for i, r in enumerate(history) if r.get("best")) == kept


def test_select_tolerance_survives_resume(tmp_path):
    records = [(0.85, 9), (0.84, 5), (0.845, 7)]
    scripted_trainer(tmp_path, records[:2], 0.02).train()  # stopped after epoch 2 of 3
    resumed = scripted_trainer(tmp_path, records[2:], 0.02, epochs=3)
    history = resumed.train(resume=True)
    assert [r.get("best", False) for r in history] == [True, True, False]
    assert resumed.kept == (0.84, 5)


@pytest.mark.parametrize("tolerance", [-0.1, 1.0])
def test_select_tolerance_must_lie_in_0_1(tolerance):
    with pytest.raises(SharcsError, match="select_tolerance"):
        TrainingArguments(select_tolerance=tolerance)


def test_distill_narrow_trains_the_narrow_path_on_full_width_batches():
    """In warm-up every sample is in the full-width bucket: only --distill-narrow reaches the 0.25 path."""
    changed = {}
    for distill in (False, True):
        trainer = make_trainer(distill_narrow=distill)
        steps, _ = trainer.plan_epoch(0)
        assert [w for w, _ in steps[0].batches] == [1]
        norm = trainer.model.entry_norms[width_key(0.25)].weight
        before = norm.detach().clone()
        trainer.train_step(steps[0], 1.0)
        changed[distill] = not torch.equal(before, norm.detach())
    assert changed == {False: False, True: True}


def test_distill_hidden_pulls_the_narrow_layer_outputs_towards_the_full_ones():
    """Training the narrow path's own norms on `hidden_distillation_loss` alone (the full width, and so
    the teacher, stays fixed) brings its layer outputs closer to the full width's."""
    model = get_sharcs_model(tiny_model("bert"), SharcsConfig(adaptive_layer=1))
    batch = pad_batch(random_dataset(8)[:8], 0)
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask")}

    def distance() -> torch.Tensor:
        full = model(**inputs, width=1.0, output_hidden_states=True).hidden_states
        narrow = model(**inputs, width=0.25, output_hidden_states=True).hidden_states
        return hidden_distillation_loss(narrow, [s.detach() for s in full], inputs["attention_mask"])

    narrow_norms = [p for name, p in model.named_parameters() if width_key(0.25) in name]
    optimizer = torch.optim.Adam(narrow_norms, lr=1e-2)
    start = distance()
    for _ in range(30):
        optimizer.zero_grad()
        distance().backward()
        optimizer.step()
    assert distance() < 0.6 * start


def test_distill_hidden_adds_its_loss_to_the_training_step():
    losses = {}
    for hidden in (False, True):
        trainer = make_trainer(distill_narrow=True, distill_hidden=hidden)
        steps, _ = trainer.plan_epoch(0)
        losses[hidden] = trainer.train_step(steps[0], 0.0)  # learning rate 0: only the loss is compared
    assert losses[True] > losses[False]


def test_hardness_from_narrowest_records_the_narrow_confidence():
    trainer = make_trainer(distill_narrow=True, hardness_from="narrowest")
    model = trainer.model  # eval mode (no dropout): train_step's forwards are deterministic
    steps, _ = trainer.plan_epoch(0)
    _, indices = steps[0].batches[0]
    batch = pad_batch(trainer.data[indices], 0)
    labels = batch["labels"]
    with torch.no_grad():
        inputs = {k: batch[k] for k in ("input_ids", "attention_mask")}
        narrow = confidence(model(**inputs, width=0.25).logits, labels)
        full = confidence(model(**inputs, width=1.0).logits, labels)
    assert not torch.allclose(narrow, full)
    trainer.train_step(steps[0], 1.0)
    torch.testing.assert_close(trainer.hooks.labeler.current[indices], narrow)


def test_bad_training_inputs():
    with pytest.raises(SharcsError, match="epochs"):
        TrainingArguments(epochs=0)
    model = get_sharcs_model(tiny_model("bert"), SharcsConfig(adaptive_layer=2))
    with pytest.raises(SharcsError, match="empty"):
        Trainer(model, random_dataset(4).select([]), TrainingArguments())
    with pytest.raises(SharcsError, match="needs distill_narrow"):
        TrainingArguments(hardness_from="narrowest")
    with pytest.raises(SharcsError, match="hardness_from"):
        TrainingArguments(hardness_from="widest")
    fixed_config = SharcsConfig(adaptive_layer=2, routing="fixed", fixed_width=0.25)
    fixed = get_sharcs_model(tiny_model("bert"), fixed_config)
    with pytest.raises(
        SharcsError, match="distill_narrow is for the paper recipe of SHARCS models with a router"
    ):
        Trainer(fixed, random_dataset(4), TrainingArguments(distill_narrow=True))
    with pytest.raises(SharcsError, match="distill_hidden needs distill_narrow"):
        Trainer(model, random_dataset(4), TrainingArguments(distill_hidden=True, recipe="paper"))


def test_a_crash_while_checkpointing_resumes_from_the_newest_complete_checkpoint(tmp_path, monkeypatch):
    """Killed while the third checkpoint is renamed into place: the second is still there and complete,
    and resuming from it reaches the same weights as a run never interrupted."""
    straight = make_trainer(tmp_path / "a", epochs=2, save_every_steps=2)
    straight.train()

    out = tmp_path / "b"
    crashing = make_trainer(out, epochs=2, save_every_steps=2)
    real_replace, saves = os.replace, []

    def replace(src, dst):
        if Path(dst).name.startswith("checkpoint-"):
            saves.append(dst)
            if len(saves) == 3:
                raise KeyboardInterrupt  # the third checkpoint is written but never renamed in
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(KeyboardInterrupt):
        crashing.train()
    monkeypatch.setattr(os, "replace", real_replace)
    assert find_checkpoint(out) == out / "checkpoint-0-4"  # the last complete one
    assert not (out / "checkpoint-0-6").exists()

    torch.manual_seed(1234)
    resumed = make_trainer(out, epochs=2, save_every_steps=2)
    resumed.train(resume=True)
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [r["train_loss"] for r in straight.history] == [r["train_loss"] for r in resumed.history]
    checkpoints = sorted(p.name for p in out.iterdir() if p.name.startswith((".", "checkpoint")))
    assert checkpoints == ["checkpoint-2-0"], "stale scratch and older checkpoints are gone"
