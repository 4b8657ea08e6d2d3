"""The options of `sharcs train` (TrainOptions), their parsing, and their saved form run_config.json.

Imports nothing heavy (torch only inside `pick_device`), so the command line starts fast: everything
here, and `sharcs.cli.checks` built on it, can check a command line before torch is imported.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sharcs.data.tasks import get_task
from sharcs.errors import SharcsError, option_name
from sharcs.methods.registry import METHODS, get_method, method_names, methods_help
from sharcs.methods.sharcs.config import NORM_INITS, check_budget, check_max_drop
from sharcs.modeling.packaged import MINILM
from sharcs.storage.run_folder import RUN_CONFIG, read_run_config
from sharcs.training.arguments import TrainingArguments, option

if TYPE_CHECKING:
    import torch

# the options a resumed (--resume) or continued (--continue) run may change; every other must match
FREE_ON_RESUME = ("device", "output_dir", "keep_checkpoint")
# the staged recipe's importance rewiring: scored on this many training rows under the fine-tuned head
# (SST-2 and MRPC, docs/notes/recipe-findings.md §7)
STAGED_REWIRE_SAMPLES = 512


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


@dataclass(kw_only=True)
class TrainOptions(TrainingArguments):
    """Everything `sharcs train` accepts: the training loop's options (TrainingArguments) and the data,
    model and method of the run. Each field is declared once, with its help text (`option`); the
    command line's option is the field name spelled with dashes (held_out_fraction -> --held-out-fraction).

    Give either `task` (a GLUE name) or `train_file` + `validation_file` (+ `text_columns`). The methods
    are those of sharcs.methods.registry.
    """

    output_dir: str = option(
        dataclasses.MISSING, "folder for the model, logs and checkpoints", metavar="DIR", group="run"
    )
    task: str | None = option(
        None, "GLUE task: cola, sst2, mrpc, stsb, qqp, mnli, qnli, rte", metavar="NAME", group="data"
    )
    data_dir: str | None = option(
        None,
        "folder holding SST-2/, MRPC/, ... (default: $SHARCS_GLUE_DIR, else the Hugging Face hub)",
        metavar="DIR",
        group="data",
        show_default=False,
    )
    train_file: str | None = option(
        None, "your training data: .csv, .tsv or .jsonl (instead of --task)", metavar="FILE", group="data"
    )
    validation_file: str | None = option(
        None, "your dev data, same format; the metrics are reported on it", metavar="FILE", group="data"
    )
    text_columns: tuple[str, ...] | None = option(
        None, "text column, or two comma-separated for sentence pairs", metavar="COL[,COL2]", group="data"
    )
    label_column: str = option("label", "label column of your files", metavar="COL", group="data")
    regression: bool = option(False, "the labels are numbers", group="data", show_default=False)
    encoding: str = option(
        "utf-8",
        "text encoding of --train-file and --validation-file, e.g. latin-1",
        metavar="NAME",
        group="data",
    )
    max_train_samples: int | None = option(
        None, "use only the first N training samples", metavar="N", group="data", show_default=False
    )
    max_eval_samples: int | None = option(
        None, "use only the first N dev samples", metavar="N", group="data", show_default=False
    )
    max_seq_length: int = option(128, "truncate inputs to N tokens", metavar="N", group="data")
    held_out_fraction: float = option(
        0.1,
        "fraction of the training data held out to choose the best epoch (and, for --recipe sandwich, to "
        "fit the router and the budget); 0 keeps the last epoch",
        metavar="F",
        group="data",
    )
    model: str = option(
        MINILM,
        "'minilm-l6' (the packaged all-MiniLM-L6-v2), 'mpnet-base' (all-mpnet-base-v2, after make mpnet), "
        "a model folder, a hub id, or a finished sharcs run "
        "whose full width to start from (e.g. a --method full run, to train a cascade from it)",
        metavar="NAME_OR_DIR",
        group="model",
    )
    method: str = option(
        "sharcs",
        methods_help,
        choices=method_names,
        group="model",
    )
    widths: tuple[float, ...] = option(
        (0.25, 1.0), "ascending widths ending at 1.0", metavar="W1,W2,...", group="model"
    )
    adaptive_layer: int | None = option(
        None,
        "K: full-width layers before the router, 0 or more (default: a sixth of the layers for --recipe "
        "sandwich, a third otherwise, at least 1)",
        metavar="K",
        group="model",
        show_default=False,
    )
    threshold: float | tuple[float, ...] | None = option(
        None,
        "--recipe paper: confidence threshold for the narrow width; with more widths one per boundary, "
        "descending (default: 0.6 for two widths)",
        metavar="T[,T2,...]",
        group="model",
        show_default=False,
    )
    window: int = option(
        2, "--recipe paper: epochs of confidence history behind each label", metavar="E", group="model"
    )
    router_hidden_size: int = option(1024, "router MLP size", metavar="N", group="model")
    norm_init: str = option(
        "copy", "per-width LayerNorms: copied from the model or fresh", choices=NORM_INITS, group="model"
    )
    keep_residual: bool | None = option(
        None,
        "after the router keep the residual stream at full width and narrow only heads and FFN (beyond "
        "the paper; DynaBERT-style slicing); default: on for --recipe sandwich, off otherwise",
        group="model",
        show_default=False,
    )
    finetune_epochs: int | None = option(
        None,
        "--recipe sandwich: train the first F of the --epochs as a plain fine-tune of the full model alone "
        "(kept in OUTPUT/finetune/, a run of its own), then rewire its heads and FFN units by importance "
        "under its fine-tuned head (--rewire-samples) and train the remaining epochs of the sandwich recipe "
        "from it (default: all epochs but the last; 0: the sandwich recipe from the first step)",
        metavar="F",
        group="model",
        show_default=False,
    )
    rewire_samples: int | None = option(
        None,
        "importance rewiring: score each layer's heads and FFN units on this many training samples and "
        "reorder them, most important first, before training (the narrow widths keep the leading ones; "
        f"the model computes the same function); 0: off (default: {STAGED_REWIRE_SAMPLES} after a "
        "--finetune-epochs stage, else 0)",
        metavar="N",
        group="model",
        show_default=False,
    )
    rewire_residual: int = option(
        0,
        "order the residual channels by their energy on this many training samples, most first, before "
        "training: the widths of a sliced residual stream (no --keep-residual) keep the leading channels, "
        "and 12-layer encoders carry outlier channels beyond the first quarter (the model computes the same "
        "function); 0: off",
        metavar="N",
        group="model",
    )
    fixed_width: float = option(0.25, "width of --method fixed", metavar="W", group="model")
    width_shares: tuple[float, ...] | None = option(
        None,
        "--method random: the probability of each width, e.g. the shares a trained router gives "
        "(default: equal)",
        metavar="P1,P2,...",
        group="model",
        show_default=False,
    )
    cascade_confidence: float = option(
        0.9,
        "--method cascade: re-run at full width the samples whose top class probability at the narrowest "
        "width is below C (evaluate --cascade changes it later)",
        metavar="C",
        group="model",
    )
    entropy_threshold: float = option(
        0.3, "--method deebert: exit when the prediction entropy is below S", metavar="S", group="model"
    )
    patience: int = option(2, "--method pabee: exit after P exits in a row agree", metavar="P", group="model")
    flops_budget: float = option(
        0.5,
        "--recipe sandwich: mean FLOPs per sample as a fraction of the full model's, e.g. 0.5 for 2x "
        "fewer; calibrated on held-out training data (evaluate/predict --flops-budget changes it later)",
        metavar="B",
    )
    max_drop: float | None = option(
        None,
        "--recipe sandwich: instead of --flops-budget, the cheapest routing whose main metric on held-out "
        "training data stays within D of the model's own full width (in the metric's units: 0.01 = 1 "
        "point); evaluate/predict --max-drop changes it later",
        metavar="D",
    )
    device: str = option("auto", "auto, cpu or cuda[:N]", metavar="DEVICE")
    keep_checkpoint: bool = option(
        False,
        "keep checkpoint-E-S/ and best/ (the optimizer and training state) when the run finishes (default: a "
        "finished run keeps only model/ and its metrics)",
        group="run",
        show_default=False,
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        self.output_dir = str(self.output_dir)
        self.widths = parse_floats(self.widths, "--widths")
        if self.width_shares is not None:
            self.width_shares = parse_floats(self.width_shares, "--width-shares")
        if self.threshold is not None:
            thresholds = parse_floats(self.threshold, "--threshold")
            self.threshold = thresholds[0] if len(thresholds) == 1 else thresholds
        if self.text_columns is not None:
            self.text_columns = parse_names(self.text_columns, "--text-columns")
        regression = self._regression_labels()
        if self.narrow_weight is None and regression is not None:
            # the head's default, so that run_config.json records the weight the run trains with
            self.narrow_weight = self.narrow_loss_weight(regression)
        # the staged recipe's defaults, resolved so that run_config.json records what the run trains
        if self.finetune_epochs is None:
            self.finetune_epochs = self.epochs - 1 if self.is_sandwich else 0
        if self.rewire_samples is None:
            self.rewire_samples = STAGED_REWIRE_SAMPLES if self.finetune_epochs else 0

    def _regression_labels(self) -> bool | None:
        """Whether the labels are numbers: the GLUE task's kind, or --regression for files; None for an
        unknown task (`validate` names it)."""
        if self.task is None:
            return self.regression
        try:
            return get_task(self.task).is_regression
        except SharcsError:
            return None

    @property
    def is_sandwich(self) -> bool:
        """Whether this is --method sharcs trained with the sandwich recipe."""
        return self.method == "sharcs" and self.recipe == "sandwich"

    @property
    def slices_residual(self) -> bool:
        """Whether the model's narrow widths narrow the residual stream itself (the paper's slicing)."""
        method = get_method(self.method)
        return method.narrows and method.keeps_residual and not self.keeps_residual

    @property
    def keeps_residual(self) -> bool:
        """`keep_residual` as the model is built: given, or by default on for the sandwich recipe of
        --method sharcs (its narrow path then keeps the d-channel residual stream, docs/method.md §7)."""
        if self.keep_residual is not None:
            return self.keep_residual
        return self.is_sandwich

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
        # a run saved before --finetune-epochs existed trained the sandwich recipe from its first step
        return cls(**{"finetune_epochs": 0, **data})

    def validate(self, check_device: bool = True) -> None:
        """Check the options that need no data or model; SharcsError names the offending option.

        `check_device` False skips the device check, the only one that imports torch."""
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
            if self.encoding != "utf-8":
                raise SharcsError("--encoding is for --train-file runs; the GLUE TSV files are UTF-8")
        from sharcs.data.examples import check_encoding  # no torch, transformers or datasets

        check_encoding(self.encoding)
        get_method(self.method)
        self.check_training()
        for name in ("max_seq_length", "window", "router_hidden_size"):
            if getattr(self, name) < 1:
                raise SharcsError(f"{option_name(name)}: must be at least 1, got {getattr(self, name)}")
        for name in ("max_train_samples", "max_eval_samples"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise SharcsError(f"{option_name(name)}: must be at least 1, got {value}")
        if self.finetune_epochs < 0:
            raise SharcsError(f"--finetune-epochs: must be at least 0, got {self.finetune_epochs}")
        if self.finetune_epochs and not self.is_sandwich:
            raise SharcsError(
                "--finetune-epochs is for --method sharcs --recipe sandwich (a plain fine-tune first, then "
                "the sandwich recipe from it)"
            )
        if self.finetune_epochs >= self.epochs:
            raise SharcsError(
                f"--finetune-epochs {self.finetune_epochs} leaves none of --epochs {self.epochs} for the "
                f"sandwich recipe: use at most {self.epochs - 1} (0: the sandwich recipe alone), or more "
                "--epochs"
            )
        if self.rewire_samples < 0:
            raise SharcsError(f"--rewire-samples: must be at least 0, got {self.rewire_samples}")
        if self.rewire_samples and not get_method(self.method).narrows:
            raise SharcsError(
                f"--rewire-samples orders heads and FFN units for the narrow widths; --method {self.method} "
                "runs none"
            )
        if self.rewire_residual < 0:
            raise SharcsError(f"--rewire-residual: must be at least 0, got {self.rewire_residual}")
        if self.rewire_residual and not self.slices_residual:
            slicing = [m.name for m in METHODS.values() if m.narrows and m.keeps_residual]
            why = (
                "with --keep-residual every width keeps all of them: add --no-keep-residual"
                if self.method in slicing
                else f"--method {self.method} never narrows the residual stream (methods that can: "
                + ", ".join(slicing)
                + ", with --no-keep-residual)"
            )
            raise SharcsError(
                f"--rewire-residual orders the residual channels a narrow width keeps, but {why}"
            )
        if self.adaptive_layer is not None and self.adaptive_layer < 0:
            raise SharcsError(f"--adaptive-layer: must be at least 0, got {self.adaptive_layer}")
        if not 0.0 <= self.held_out_fraction < 1.0:
            raise SharcsError(f"--held-out-fraction: must lie in [0, 1), got {self.held_out_fraction}")
        if self.method != "sharcs" and (self.distill_narrow or self.hardness_from != "routed"):
            raise SharcsError("--distill-narrow and --hardness-from are for --method sharcs")
        check_budget(self.flops_budget)
        check_max_drop(self.max_drop)
        if self.max_drop is not None and not self.is_sandwich:
            raise SharcsError("--max-drop calibrates the routing of --method sharcs --recipe sandwich")
        if self.is_sandwich:
            if self.distill_narrow or self.hardness_from != "routed":
                raise SharcsError(
                    "--distill-narrow and --hardness-from are for --recipe paper; the sandwich recipe "
                    "always trains the narrower widths on every sample"
                )
            if len(self.widths) != 2:
                raise SharcsError(
                    f"--recipe sandwich routes between two widths (narrowest and full), got --widths "
                    f"{','.join(f'{w:g}' for w in self.widths)}; use two widths or --recipe paper"
                )
            if self.held_out_fraction <= 0:
                raise SharcsError(
                    "--recipe sandwich fits its router and budget on held-out training data: "
                    "--held-out-fraction must be above 0"
                )
        if self.method == "sharcs" and self.recipe == "paper" and self.epochs <= self.window:
            raise SharcsError(
                f"--epochs {self.epochs} <= --window {self.window}: with the paper recipe the router only "
                "trains once the confidence window is full, so it would never train; use more epochs, "
                "a smaller --window, or --recipe sandwich"
            )
        if self.keep_residual and not get_method(self.method).keeps_residual:
            names = ", ".join(m.name for m in METHODS.values() if m.keeps_residual)
            raise SharcsError(f"--keep-residual is for --method {names}")
        if not 0.0 <= self.cascade_confidence <= 1.0:
            raise SharcsError(f"--cascade-confidence: must lie in [0, 1], got {self.cascade_confidence}")
        sandwich = self.is_sandwich
        if self.narrow_gradient == "project" and not (self.method == "cascade" or sandwich):
            raise SharcsError("--narrow-gradient project is for --recipe sandwich and --method cascade")
        if self.distill_hidden and not (self.distill_narrow or self.method == "cascade" or sandwich):
            raise SharcsError(
                "--distill-hidden needs --method cascade, --recipe sandwich, or --distill-narrow"
            )
        if check_device:
            pick_device(self.device)


def pick_device(name: str) -> torch.device:
    """The torch device for `name`: "auto" is cuda when available, else cpu."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise SharcsError(f"--device: unknown device {name!r}; use auto, cpu or cuda[:N]") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SharcsError(f"--device: {name} requested but no CUDA device is available")
    return device


def load_train_options(run_dir: str | Path) -> TrainOptions:
    """The TrainOptions a run was started with (what `--resume` continues with)."""
    try:
        return TrainOptions.from_dict(read_run_config(run_dir)["options"])
    except TypeError as error:
        raise SharcsError(f"{Path(run_dir) / RUN_CONFIG}: bad options ({error})") from None


def training_arguments(options: TrainOptions, label_range: float | None) -> TrainingArguments:
    """The training loop's share of `options` (the fields TrainingArguments declares)."""
    values = {f.name: getattr(options, f.name) for f in dataclasses.fields(TrainingArguments)}
    return TrainingArguments(**{**values, "label_range": label_range})
