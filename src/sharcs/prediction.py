"""Labels for new texts from a trained run (what `sharcs predict` prints).

    rows = predict_texts(load_run("runs/sst2"), [("a gripping, funny film",)])

Each row holds the label string and its probability (a score for regression) and the route taken
(the width used, or the layers run by an early-exit model).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sharcs.backbone import pad_id
from sharcs.data import Examples, tokenize, validate_texts
from sharcs.errors import SharcsError
from sharcs.evaluation import check_width, with_routing
from sharcs.inference import predict
from sharcs.saved_run import Run


def read_texts(lines: Sequence[str], pairs: int | None, source: str) -> list[tuple[str, ...]]:
    """Split input lines into texts: one per line, or tab-separated pairs for pair models."""
    texts = []
    for row, line in enumerate(lines, start=1):
        parts = tuple(line.split("\t")) if pairs != 1 else (line,)
        if pairs is not None and len(parts) != pairs:
            raise SharcsError(
                f"{source}: row {row} has {len(parts)} tab-separated text(s); this model expects {pairs}"
            )
        texts.append(parts)
    if not texts:
        raise SharcsError(f"{source}: no texts to predict")
    return texts


def predict_texts(
    run: Run,
    texts: Sequence[tuple[str, ...]],
    batch_size: int = 64,
    width: float | None = None,
    tau: float | None = None,
    source: str = "input",
) -> list[dict[str, Any]]:
    """One dict per text: label + probability (or score for regression) and the width it ran at."""
    if batch_size < 1:
        raise SharcsError(f"--batch-size: must be at least 1, got {batch_size}")
    check_width(run.model, width)
    with_routing(run.model, tau)
    label_list = run.label_list
    examples = Examples([tuple(t) for t in texts], None, label_list, source)
    if len(examples) == 0:
        raise SharcsError(f"{source}: no texts to predict")
    validate_texts(examples)
    data = tokenize(examples, run.tokenizer, run.max_seq_length)
    out = predict(run.model, data, batch_size=batch_size, width=width, pad_token_id=pad_id(run.tokenizer))
    rows = []
    for i, text in enumerate(examples.texts):
        row: dict[str, Any] = {"text": text[0] if len(text) == 1 else list(text)}
        if label_list is None:
            row["score"] = float(out.logits[i, 0])
        else:
            probs = out.logits[i].softmax(-1)
            best = int(probs.argmax())
            row["label"] = label_list[best]
            row["probability"] = float(probs[best])
        row[run.model.route_name] = float(out.routes[i])
        rows.append(row)
    return rows
