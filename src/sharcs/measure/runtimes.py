"""What a user would run instead of sharcs, as runners `sharcs bench` times side by side with it.

    exports = onnx_exports(run, scratch, threads=2)     # fp32 and int8 exports, routed on ONNX Runtime
    extra = alternatives(run, exports)                  # name -> (batch, kwargs) -> logits
    report = benchmark(run.model, data, extra=extra)    # every mode gains "runtimes"
    scores = runner_scores(run, extra, data, labels, metrics, kwargs, pad)

The alternatives: the full model with torch dynamic int8 (nn.Linear only: sharcs's own width-sliced
layers call F.linear on sliced weights, which torch's dynamic quantization does not reach, so the
routed PyTorch model stays fp32), the full model on ONNX Runtime fp32 and int8 (the exported plain
Hugging Face model), and the routed sharcs model on ONNX Runtime fp32 and int8.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from datasets import Dataset
from torch import nn

from sharcs.data.collate import pad_batch
from sharcs.data.metrics import compute_metrics
from sharcs.export.runtime import OnnxSharcsModel
from sharcs.inference.predict import MODEL_INPUTS
from sharcs.measure.bench import Alternative
from sharcs.storage.saved_run import Run


def onnx_exports(
    run: Run, scratch: Path, threads: int = 0, given: dict[str, Path] | None = None
) -> dict[str, OnnxSharcsModel]:
    """The run on ONNX Runtime in fp32 and int8: the `given` export folders by precision, the others
    exported into `scratch`."""
    from sharcs.export.writer import export_run

    models = {}
    for precision in ("fp32", "int8"):
        folder = (given or {}).get(precision)
        if folder is None:
            folder = export_run(run, scratch / precision, quantize=None if precision == "fp32" else "int8")
        models[precision] = OnnxSharcsModel(folder, threads)
    return models


def alternatives(run: Run, exports: dict[str, OnnxSharcsModel]) -> dict[str, Alternative]:
    """The runners of the module docstring, by the names of `report_text.RUNNERS`."""
    base = run.model.full_width_base().eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao's deprecation notice
        quantized = torch.ao.quantization.quantize_dynamic(copy.deepcopy(base), {nn.Linear}, torch.qint8)
    runners: dict[str, Alternative] = {"torch_int8_full": lambda batch, kwargs: quantized(**batch).logits}
    for precision, model in exports.items():
        runners[f"onnx_{precision}_full"] = lambda batch, kwargs, m=model: m.full_logits(**batch)
        runners[f"onnx_{precision}_sharcs"] = lambda batch, kwargs, m=model: m(**batch, **kwargs).logits
    return runners


@torch.inference_mode()
def runner_scores(
    run: Run,
    extra: dict[str, Alternative],
    data: Dataset,
    labels: Sequence[Any],
    metrics: Sequence[str],
    kwargs: dict[str, Any],
    pad_token_id: int,
) -> dict[str, dict[str, float]]:
    """The dev metrics of the full model (its own full width, the function "full" times), sharcs in
    PyTorch under `kwargs`, and every `extra` runner."""
    model = run.model
    base = model.full_width_base().eval()
    runners: dict[str, Alternative] = {
        "full": lambda batch, kw: base(**batch).logits,
        "sharcs": lambda batch, kw: model(**batch, **kw).logits,
        **extra,
    }
    inputs = data.select_columns([c for c in MODEL_INPUTS if c in data.column_names])
    batches = [pad_batch(inputs[i : i + 64], pad_token_id) for i in range(0, len(data), 64)]
    scores = {}
    for name, runner in runners.items():
        logits = torch.cat([runner(batch, kwargs).float() for batch in batches])
        predictions = logits[:, 0].numpy() if logits.shape[1] == 1 else logits.argmax(-1).numpy()
        scores[name] = compute_metrics(list(metrics), predictions, list(labels))
    return scores
