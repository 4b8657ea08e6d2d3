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

from sharcs.errors import SharcsError
from sharcs.methods.registry import get_method
from sharcs.methods.sharcs.config import check_budget
from sharcs.modeling.packaged import MINILM
from sharcs.storage.run_folder import RUN_CONFIG, read_run_config

if TYPE_CHECKING:
    import torch

# the options a resumed (--resume) or continued (--continue) run may change; every other must match
FREE_ON_RESUME = ("device", "output_dir", "keep_checkpoint")


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
    `method`: "sharcs"; "cascade" (beyond the paper: SHARCS's widths without a router; every sample
    trains at full width and, distilled from it, at each narrower width; inference runs the narrowest
    width and re-runs at full width the samples less confident than `cascade_confidence`); or a
    baseline on the same harness: "full" (plain fine-tuning), "fixed" (K full
    layers, then every sample at `fixed_width`), "random" (SHARCS's architecture routed at random with
    `width_shares`), "dynabert" (heads and FFN narrowed to each of `widths`), "deebert" (entropy exit at
    `entropy_threshold`) or "pabee" (patience exit at `patience`).
    `adaptive_layer` None: a third of the model's layers, rounded, at least 1. `threshold` None: 0.6
    for two widths (more widths need one descending threshold per width boundary). `router_lr` None:
    the router trains at `lr`. `keep_checkpoint`: keep checkpoint/ and best/ (the training state) when
    the run finishes; by default a finished run keeps only its model and metrics.
    """

    output_dir: str
    task: str | None = None
    train_file: str | None = None
    validation_file: str | None = None
    text_columns: tuple[str, ...] | None = None
    label_column: str = "label"
    regression: bool = False
    encoding: str = "utf-8"
    data_dir: str | None = None
    model: str = MINILM
    method: str = "sharcs"
    epochs: int = 3
    batch_size: int = 32
    lr: float = 5e-5
    router_lr: float | None = None
    router_loss_in_warmup: bool = False
    distill_narrow: bool = False
    distill_hidden: bool = False
    hardness_from: str = "routed"
    select_tolerance: float = 0.0
    recipe: str = "sandwich"
    flops_budget: float = 0.5
    narrow_label_weight: float = 0.5
    max_seq_length: int = 128
    max_train_samples: int | None = None
    max_eval_samples: int | None = None
    widths: tuple[float, ...] = (0.25, 1.0)
    adaptive_layer: int | None = None
    threshold: float | tuple[float, ...] | None = None
    window: int = 2
    router_hidden_size: int = 1024
    norm_init: str = "copy"
    keep_residual: bool | None = None  # None: on for --method sharcs --recipe sandwich, else off
    fixed_width: float = 0.25
    width_shares: tuple[float, ...] | None = None
    cascade_confidence: float = 0.9
    entropy_threshold: float = 0.3
    patience: int = 2
    held_out_fraction: float = 0.1
    seed: int = 42
    save_every_steps: int = 0
    keep_checkpoint: bool = False
    device: str = "auto"

    def __post_init__(self) -> None:
        self.output_dir = str(self.output_dir)
        self.widths = parse_floats(self.widths, "--widths")
        if self.width_shares is not None:
            self.width_shares = parse_floats(self.width_shares, "--width-shares")
        if self.threshold is not None:
            thresholds = parse_floats(self.threshold, "--threshold")
            self.threshold = thresholds[0] if len(thresholds) == 1 else thresholds
        if self.text_columns is not None:
            self.text_columns = parse_names(self.text_columns, "--text-columns")

    @property
    def keeps_residual(self) -> bool:
        """`keep_residual` as the model is built: given, or by default on for the sandwich recipe of
        --method sharcs (its narrow path then keeps the d-channel residual stream, docs/method.md §7)."""
        if self.keep_residual is not None:
            return self.keep_residual
        return self.method == "sharcs" and self.recipe == "sandwich"

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
        from sharcs.data.loading import check_encoding  # no torch, transformers or datasets

        check_encoding(self.encoding)
        get_method(self.method)
        for name in ("epochs", "batch_size", "max_seq_length", "window", "router_hidden_size"):
            if getattr(self, name) < 1:
                raise SharcsError(f"{option_name(name)}: must be at least 1, got {getattr(self, name)}")
        for name in ("max_train_samples", "max_eval_samples"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise SharcsError(f"{option_name(name)}: must be at least 1, got {value}")
        if self.adaptive_layer is not None and self.adaptive_layer < 0:
            raise SharcsError(f"--adaptive-layer: must be at least 0, got {self.adaptive_layer}")
        for name in ("lr", "router_lr"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise SharcsError(f"{option_name(name)}: must be positive, got {value}")
        if not 0.0 <= self.held_out_fraction < 1.0:
            raise SharcsError(f"--held-out-fraction: must lie in [0, 1), got {self.held_out_fraction}")
        if not 0.0 <= self.select_tolerance < 1.0:
            raise SharcsError(f"--select-tolerance: must lie in [0, 1), got {self.select_tolerance}")
        if self.hardness_from not in ("routed", "narrowest"):
            raise SharcsError(f"--hardness-from: must be routed or narrowest, got {self.hardness_from!r}")
        if self.method != "sharcs" and (self.distill_narrow or self.hardness_from != "routed"):
            raise SharcsError("--distill-narrow and --hardness-from are for --method sharcs")
        if self.recipe not in ("sandwich", "paper"):
            raise SharcsError(f"--recipe: must be sandwich or paper, got {self.recipe!r}")
        if not 0.0 <= self.narrow_label_weight <= 1.0:
            raise SharcsError(f"--narrow-label-weight: must lie in [0, 1], got {self.narrow_label_weight}")
        check_budget(self.flops_budget)
        if self.method == "sharcs" and self.recipe == "sandwich":
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
        if self.keep_residual and self.method not in ("sharcs", "cascade", "fixed", "random"):
            raise SharcsError("--keep-residual is for --method sharcs, cascade, fixed or random")
        if not 0.0 <= self.cascade_confidence <= 1.0:
            raise SharcsError(f"--cascade-confidence: must lie in [0, 1], got {self.cascade_confidence}")
        if self.hardness_from == "narrowest" and not self.distill_narrow:
            raise SharcsError("--hardness-from narrowest needs --distill-narrow")
        if self.distill_hidden and not (self.distill_narrow or self.method == "cascade"):
            raise SharcsError(
                "--distill-hidden needs --method cascade, or --method sharcs with --distill-narrow"
            )
        if self.save_every_steps < 0:
            raise SharcsError(f"--save-every-steps: must be >= 0, got {self.save_every_steps}")
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
