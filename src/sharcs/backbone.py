"""The backbone of a run: find the Hugging Face model, load it and its tokenizer, wrap it for the method."""

from __future__ import annotations

import dataclasses
import json
import logging
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from sharcs.adaptive import CONFIG_NAME, AdaptiveModel
from sharcs.architectures import find_layout
from sharcs.config import SharcsConfig
from sharcs.dynabert import DynaBertConfig, DynaBertModel
from sharcs.early_exit import EarlyExitConfig, EarlyExitModel
from sharcs.errors import SharcsError, first_line
from sharcs.model import get_sharcs_model
from sharcs.options import RUN_CONFIG, TrainOptions, named_option_error, resolve_model_path

if TYPE_CHECKING:
    from sharcs.task_data import TaskInfo


@contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence transformers' load reports, progress bars and hub retry warnings for the duration."""
    from transformers.utils import logging as hf_logging

    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hub_logger = logging.getLogger("huggingface_hub")
    hub_level = hub_logger.level
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    hub_logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()
        hub_logger.setLevel(hub_level)


TOKENIZER_JSON = ("tokenizer_config.json", "tokenizer.json", "special_tokens_map.json", "added_tokens.json")


def load_tokenizer(path: str | Path) -> Any:
    """AutoTokenizer.from_pretrained, with any failure turned into a one-line SharcsError (one naming
    the file for a local tokenizer JSON file that does not parse). Never runs a tokenizer's own code."""
    from transformers import AutoTokenizer

    folder = Path(path).expanduser()
    for name in TOKENIZER_JSON if folder.is_dir() else ():
        if (folder / name).is_file():
            try:
                json.loads((folder / name).read_text(encoding="utf-8"))
            except (OSError, ValueError) as error:  # JSONDecodeError, UnicodeDecodeError
                raise SharcsError(f"{folder / name} is unreadable ({first_line(error)})") from None
    try:
        with quiet_transformers():
            return AutoTokenizer.from_pretrained(str(path), trust_remote_code=False)  # never run its code
    except Exception as error:  # transformers raises OSError, ValueError, EnvironmentError, ...
        raise SharcsError(f"could not load a tokenizer from {path}: {first_line(error)}") from None


def pad_id(tokenizer: Any) -> int:
    """The tokenizer's padding id (0 when it has none)."""
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0


def load_base_model(path: str, info: TaskInfo, seed: int) -> Any:
    """The Hugging Face classifier for `info`'s labels; its new head is initialised under `seed`."""
    from transformers import AutoModelForSequenceClassification

    labels = info.label_list or ("score",)
    torch.manual_seed(seed)
    try:
        with quiet_transformers():
            return AutoModelForSequenceClassification.from_pretrained(
                path,
                trust_remote_code=False,  # never the code a config's auto_map names
                num_labels=info.num_labels,
                ignore_mismatched_sizes=True,  # a head for another label count is replaced
                id2label=dict(enumerate(labels)),
                label2id={label: i for i, label in enumerate(labels)},
            )
    except Exception as error:  # OSError (not found / no network), ValueError (not a classifier), ...
        raise SharcsError(f"could not load model {path}: {first_line(error)}") from None


def is_sharcs_folder(path: str) -> bool:
    """Whether `path` is a sharcs output folder or saved model folder rather than a Hugging Face model."""
    return any((Path(path) / name).is_file() for name in (RUN_CONFIG, CONFIG_NAME))


def load_run_base(path: str, info: TaskInfo, seed: int) -> tuple[Any, Any]:
    """The full width of a finished sharcs run as a plain Hugging Face classifier for `info`'s labels
    (a new head if they differ), and the run's tokenizer: a fine-tuned run becomes a starting point."""
    from sharcs.saved_run import load_run

    run = load_run(path, device="cpu")
    with tempfile.TemporaryDirectory() as scratch:
        run.model.full_width_base().save_pretrained(scratch)
        return load_base_model(scratch, info, seed), run.tokenizer


def default_adaptive_layer(num_layers: int, sandwich: bool = False) -> int:
    """K = a third of the layers, rounded, at least 1 (2 for 6 layers, 4 for 12); for the sandwich
    recipe a sixth (1 for 6 layers, 2 for 12): its narrow path keeps the residual stream, so each narrow
    layer costs about a quarter of a full one, and with K = N/3 the narrow path alone would already
    spend half the full model's FLOPs, leaving a budget of 0.5 nothing for full-width samples."""
    return max(1, round(num_layers / (6 if sandwich else 3)))


def sharcs_config(options: TrainOptions, num_layers: int) -> SharcsConfig:
    """The SharcsConfig of a run; K defaults to `default_adaptive_layer`."""
    threshold = options.threshold
    if threshold is None:
        if len(options.widths) != 2:
            raise SharcsError(
                f"--threshold: {len(options.widths)} widths need {len(options.widths) - 1} descending "
                "thresholds, e.g. --threshold 0.8,0.5"
            )
        threshold = 0.6
    sandwich = options.method == "sharcs" and options.recipe == "sandwich"
    k = (
        options.adaptive_layer
        if options.adaptive_layer is not None
        else default_adaptive_layer(num_layers, sandwich)
    )
    try:
        return SharcsConfig(
            widths=options.widths,
            adaptive_layer=k,
            router_hidden_size=options.router_hidden_size,
            threshold=threshold,
            window=options.window,
            norm_init=options.norm_init,
            keep_residual=options.keeps_residual,
        )
    except SharcsError as error:
        raise named_option_error(error) from None


def method_model(options: TrainOptions, base: Any, num_layers: int) -> AdaptiveModel:
    """Wrap `base` for `options.method`: SHARCS, the cascade and the router-free baselines (full, fixed,
    random) are SharcsModels; DynaBERT and the early-exit methods have models of their own."""
    method = options.method
    if method == "dynabert":
        return DynaBertModel(base, DynaBertConfig(widths=options.widths))
    if method in ("deebert", "pabee"):
        rule = "entropy" if method == "deebert" else "patience"
        config = EarlyExitConfig(rule, options.entropy_threshold, options.patience)
        return EarlyExitModel(base, config)
    config = sharcs_config(options, num_layers)
    if method == "full":
        config = dataclasses.replace(config, widths=(1.0,), threshold=(), routing="fixed", fixed_width=1.0)
    elif method == "fixed":
        widths = tuple(sorted({options.fixed_width, 1.0}))
        threshold = config.threshold if len(widths) == 2 else ()
        config = dataclasses.replace(
            config, widths=widths, threshold=threshold, routing="fixed", fixed_width=options.fixed_width
        )
    elif method == "random":
        config = dataclasses.replace(config, routing="random", width_shares=options.width_shares)
    elif method == "cascade":
        if base.config.num_labels < 2:
            raise SharcsError("--method cascade needs class probabilities, which a regression task has not")
        config = dataclasses.replace(config, routing="cascade", cascade_confidence=options.cascade_confidence)
    return get_sharcs_model(base, config)


def build_model(options: TrainOptions, info: TaskInfo) -> tuple[AdaptiveModel, Any]:
    """The model (of `options.method`) and tokenizer of a run, built the same way on every call (seeded)."""
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
    _check_max_length(options.max_seq_length, base.config, tokenizer)
    try:
        model = method_model(options, base, getattr(base.config, layout.num_layers))
    except SharcsError as error:
        raise named_option_error(error) from None
    return model, tokenizer


def _check_max_length(max_length: int, model_config: Any, tokenizer: Any) -> None:
    limit = getattr(tokenizer, "model_max_length", None)
    if not isinstance(limit, int) or limit > 100_000:
        limit = getattr(model_config, "max_position_embeddings", None)
    if isinstance(limit, int) and max_length > limit:
        raise SharcsError(f"--max-seq-length {max_length} exceeds the model's limit of {limit} tokens")
