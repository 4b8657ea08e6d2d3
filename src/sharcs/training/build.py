"""The model and tokenizer a run trains: the `--model` (a Hugging Face model or a finished sharcs run),
wrapped by the `--method`'s preset (sharcs.methods.registry)."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from safetensors.torch import save_model

from sharcs.data.prepare import TaskInfo
from sharcs.errors import SharcsError
from sharcs.methods.registry import get_method
from sharcs.modeling.adaptive import CONFIG_NAME, AdaptiveModel
from sharcs.modeling.architectures import Layout, find_layout
from sharcs.modeling.packaged import resolve_model_path
from sharcs.modeling.pretrained import check_max_length, load_base_model, load_tokenizer
from sharcs.storage.run_folder import RUN_CONFIG
from sharcs.storage.saved_run import load_run
from sharcs.training.options import TrainOptions


def is_sharcs_folder(path: str) -> bool:
    """Whether `path` is a sharcs output folder or saved model folder rather than a Hugging Face model."""
    return any((Path(path) / name).is_file() for name in (RUN_CONFIG, CONFIG_NAME))


def load_run_base(path: str, info: TaskInfo, seed: int) -> tuple[Any, Any]:
    """The full width of a finished sharcs run as a plain Hugging Face classifier for `info`'s labels
    (a new head if they differ), and the run's tokenizer: a fine-tuned run becomes a starting point."""
    run = load_run(path, device="cpu")
    base = run.model.full_width_base()
    with tempfile.TemporaryDirectory() as scratch:
        # written by every process (under torchrun transformers' save_pretrained writes on rank 0 only)
        base.config.save_pretrained(scratch)
        save_model(base, str(Path(scratch) / "model.safetensors"))
        return load_base_model(scratch, info, seed), run.tokenizer


def build_model(
    options: TrainOptions, info: TaskInfo, prepare: Callable[[Any, Any, Layout], None] | None = None
) -> tuple[AdaptiveModel, Any]:
    """The model (of `options.method`) and tokenizer of a run, built the same way on every call (seeded);
    `prepare(base, tokenizer, layout)` changes the Hugging Face model in place before it is wrapped."""
    path = resolve_model_path(options.model)
    if is_sharcs_folder(path):
        base, tokenizer = load_run_base(path, info, options.seed)
    else:
        tokenizer = load_tokenizer(path)
        base = load_base_model(path, info, options.seed)
    try:
        layout = find_layout(base)
    except SharcsError as error:
        raise SharcsError(f"--model {options.model}: {error}") from None
    check_max_length(options.max_seq_length, base.config, tokenizer)
    if prepare is not None:
        prepare(base, tokenizer, layout)
    model = get_method(options.method).build(options, base, getattr(base.config, layout.num_layers))
    return model, tokenizer
