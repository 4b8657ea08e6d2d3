"""The worked examples of docs/architecture.md: a method and a backbone, each added in one file."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest
import torch
from conftest import random_batch, random_dataset, tiny_model
from transformers import AutoModelForSequenceClassification, ElectraConfig

from sharcs import SharcsConfig, SharcsError, get_sharcs_model, load_model
from sharcs.methods import registry
from sharcs.modeling import architectures
from sharcs.training.trainer import Trainer, TrainingArguments

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture
def example(monkeypatch: pytest.MonkeyPatch):
    """Import an example module (it registers itself); the registries are restored afterwards."""
    monkeypatch.syspath_prepend(str(EXAMPLES))
    monkeypatch.setattr(registry, "METHODS", dict(registry.METHODS))
    monkeypatch.setattr(architectures, "LAYOUTS", dict(architectures.LAYOUTS))

    def load(name: str):
        sys.modules.pop(name, None)
        return importlib.import_module(name)

    yield load


def test_a_method_added_in_one_file_trains_saves_and_loads(example, tmp_path: Path) -> None:
    shallow = example("shallow_method")
    assert "shallow" in registry.method_names()
    with pytest.raises(SharcsError, match="already registered"):
        shallow.register_method(registry.METHODS["shallow"])

    base = tiny_model("bert")
    batch = random_batch()
    whole = shallow.ShallowModel(base, shallow.ShallowConfig(layers=4)).eval()  # every layer kept
    with torch.no_grad():
        expected = base(**batch).logits
        assert torch.allclose(whole(**batch).logits, expected, atol=1e-5), "all layers: the HF model"

    model = shallow.ShallowModel(tiny_model("bert"), shallow.ShallowConfig(layers=2))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    history = Trainer(model, random_dataset(32), TrainingArguments(epochs=1, batch_size=8, lr=1e-3)).train()
    assert history[0]["train_loss"] > 0
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items()), "it trained"
    model.save_pretrained(tmp_path / "shallow")
    loaded = load_model(tmp_path / "shallow")
    assert isinstance(loaded, shallow.ShallowModel) and loaded.config.layers == 2
    model.eval()
    with torch.no_grad():
        assert torch.equal(loaded(**batch).logits, model(**batch).logits)
    full = model.full_flops(10)
    assert model.sample_flops(2.0, 10) < full
    with pytest.raises(SharcsError, match="layers: must lie in 1..4"):
        shallow.ShallowModel(tiny_model("bert"), shallow.ShallowConfig(layers=5))


def tiny_electra(embedding_size: int = 32):
    torch.manual_seed(0)
    config = ElectraConfig(
        vocab_size=64, embedding_size=embedding_size, hidden_size=32, num_hidden_layers=4,
        num_attention_heads=4, intermediate_size=64, max_position_embeddings=64, num_labels=2,
    )  # fmt: skip
    return AutoModelForSequenceClassification.from_config(config).eval()


def test_a_backbone_added_in_one_file_is_exact_or_refused(example) -> None:
    with pytest.raises(SharcsError, match="'electra'.* is not supported"):
        get_sharcs_model(tiny_electra(), SharcsConfig(adaptive_layer=1))  # not registered: refused
    example("electra_backbone")
    base = tiny_electra()
    batch = random_batch()
    model = get_sharcs_model(base, SharcsConfig(adaptive_layer=1)).eval()
    with torch.no_grad():
        assert torch.allclose(model(**batch, width=1.0).logits, base(**batch).logits, atol=1e-5)
        routed = model(**batch, tau=0.5)
        for i in range(len(batch["input_ids"])):
            real = int(batch["attention_mask"][i].sum())
            one = {k: v[i : i + 1, :real] for k, v in batch.items()}
            single = model(**one, tau=0.5)
            assert torch.allclose(single.logits, routed.logits[i : i + 1], atol=1e-5)
            assert single.routes.item() == routed.routes[i].item()
    with pytest.raises(SharcsError, match="embedding_size 16 differs from hidden_size 32"):
        get_sharcs_model(tiny_electra(embedding_size=16), SharcsConfig(adaptive_layer=1))
