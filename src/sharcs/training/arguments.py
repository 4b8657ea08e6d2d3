"""The options of the training loop (TrainingArguments), each declared once with its help text.

`option(...)` declares a dataclass field together with what the command line needs (help, metavar,
choices, group); `sharcs.cli.parser` builds `sharcs train`'s arguments from these fields, run_config.json
is their `asdict`, and the library takes the dataclasses as they are. Imports nothing heavy.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sharcs.errors import SharcsError

RECIPES = ("sandwich", "paper")
HARDNESS_SOURCES = ("routed", "narrowest")
NARROW_GRADIENTS = ("sum", "project")
# the sandwich recipe's weight of the narrow path's loss on regression tasks: on STS-B (3 seeds,
# docs/recipe.md) it kept the forced full width within the plain fine-tune's seed spread; weight 1 did not
REGRESSION_NARROW_WEIGHT = 0.25


def option(
    default: Any,
    help: str | Callable[[], str],
    *,
    metavar: str | None = None,
    choices: tuple[str, ...] | Callable[[], tuple[str, ...]] | None = None,
    group: str = "training",
    show_default: bool = True,
    cli: bool = True,
) -> Any:
    """A dataclass field that is also a command-line option (`--name-with-dashes`). `help` and `choices`
    may be functions, read when a parser is built (e.g. the registered methods); `show_default` False:
    the help text says the default itself; `cli` False: a field the command line does not set."""
    metadata = {
        "help": help,
        "metavar": metavar,
        "choices": choices,
        "group": group,
        "show_default": show_default,
        "cli": cli,
    }
    return dataclasses.field(default=default, metadata=metadata)  # default MISSING: a required option


@dataclass
class TrainingArguments:
    """How the loop trains: epochs, batches, AdamW with linear warm-up and decay, checkpoints, and the
    knobs of SHARCS's recipes (docs/method.md §3, §7). Each field's help is its documentation."""

    epochs: int = option(3, "training epochs", metavar="N")
    batch_size: int = option(32, "samples per batch, per width bucket", metavar="N")
    lr: float = option(5e-5, "peak learning rate", metavar="LR")
    router_lr: float | None = option(
        None,
        "peak learning rate of the router, which starts from scratch (default: the same as --lr)",
        metavar="LR",
        show_default=False,
    )
    router_loss_in_warmup: bool = option(
        False,
        "also train the router during the warm-up epochs, towards full width for every sample (off by "
        "default: the constant target saturates the router and its gradient can swamp the task loss in "
        "layers 1..K)",
        show_default=False,
    )
    weight_decay: float = option(0.01, "AdamW weight decay", metavar="X")
    warmup_ratio: float = option(
        0.1, "share of each schedule spent warming the learning rate up", metavar="X"
    )
    max_grad_norm: float = option(1.0, "clip the gradient norm to this; 0: no clipping", metavar="X")
    seed: int = option(42, "seed of the data order, the new head and the held-out split", metavar="N")
    group_by_length: bool = option(
        False,
        "batch samples of similar length together (random mega-batches sorted by length, as the Hugging "
        "Face Trainer's option of that name; the batches' order is shuffled): less padding, so faster "
        "steps where lengths vary (e.g. 1.5x fewer token positions on MRPC, 3x on SST-2 phrases)",
        show_default=False,
    )
    label_range: float | None = option(None, "max - min label, for regression confidences", cli=False)
    save_every_steps: int = option(
        0,
        "also checkpoint every N optimizer steps (default: 0, at epoch ends only)",
        metavar="N",
        group="run",
        show_default=False,
    )
    distill_narrow: bool = option(
        False,
        "--recipe paper: also train every narrower width on each batch, distilled from the batch's own "
        "width (beyond the paper: the narrow path then learns from every sample)",
        show_default=False,
    )
    distill_hidden: bool = option(
        False,
        "with --distill-narrow or --method cascade: also match each narrower width's "
        "layer outputs to the wider width's (MSE on the channels the narrow width keeps; beyond the paper)",
        show_default=False,
    )
    hardness_from: str = option(
        "routed",
        "--recipe paper: hardness labels from each sample's confidence at its trained width (the paper) or "
        "at the narrowest width (needs --distill-narrow)",
        choices=HARDNESS_SOURCES,
    )
    select_tolerance: float = option(
        0.0,
        "keep the cheapest epoch (held-out FLOPs) whose held-out metric is within X of the best, e.g. 0.01 "
        "for one point; 0 keeps the best epoch",
        metavar="X",
    )
    recipe: str = option(
        "sandwich",
        "--method sharcs: sandwich (every sample trains at full width every step, narrower widths "
        "distilled from it, the router fitted afterwards on held-out data and routing calibrated to "
        "--flops-budget) or paper (hardness labels, width buckets, router trained jointly)",
        choices=RECIPES,
    )
    narrow_label_weight: float = option(
        0.5,
        "--recipe sandwich and --method cascade: a narrower width learns from (1 - X) x distillation from "
        "the full width + X x the labels; 0: distillation only",
        metavar="X",
    )
    narrow_weight: float | None = option(
        None,
        "--recipe sandwich and --method cascade: the weight of each narrower width's loss against the full "
        "width's; below 1 shields the shared weights, and so the full width, from the narrow path (default: "
        f"1 for classification, {REGRESSION_NARROW_WEIGHT:g} for regression, whose narrow path's squared "
        "error dwarfs the full width's and pulled its accuracy down; docs/recipe.md)",
        metavar="W",
        show_default=False,
    )

    narrow_gradient: str = option(
        "sum",
        "--recipe sandwich and --method cascade: how a narrower width's gradient joins the full width's "
        "on the shared weights: sum, or project (per weight tensor, where it points against the full "
        "width's gradient its component along it is removed, so it never pulls a tensor against what the "
        "full width asks for; gradient surgery, Yu et al. 2020)",
        choices=NARROW_GRADIENTS,
    )

    def narrow_loss_weight(self, regression: bool) -> float:
        """`narrow_weight`, or its default for a regression (one-output) or classification head."""
        if self.narrow_weight is not None:
            return self.narrow_weight
        return REGRESSION_NARROW_WEIGHT if regression else 1.0

    def __post_init__(self) -> None:
        self.check_training()

    def check_training(self) -> None:
        """The checks of the loop's own fields; a SharcsError names the field."""
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise SharcsError(f"must be at least 1, got {getattr(self, name)}", option=name)
        for name in ("lr", "router_lr"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise SharcsError(f"must be positive, got {value}", option=name)
        if self.weight_decay < 0:
            raise SharcsError(f"must be >= 0, got {self.weight_decay}", option="weight_decay")
        if self.max_grad_norm < 0:
            raise SharcsError(
                f"must be >= 0 (0: no clipping), got {self.max_grad_norm}", option="max_grad_norm"
            )
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise SharcsError(f"must lie in [0, 1), got {self.warmup_ratio}", option="warmup_ratio")
        if not 0.0 <= self.narrow_label_weight <= 1.0:
            raise SharcsError(
                f"must lie in [0, 1], got {self.narrow_label_weight}", option="narrow_label_weight"
            )
        if self.narrow_weight is not None and not self.narrow_weight > 0.0:
            raise SharcsError(f"must be above 0, got {self.narrow_weight}", option="narrow_weight")
        if self.narrow_gradient not in NARROW_GRADIENTS:
            raise SharcsError(
                f"must be sum or project, got {self.narrow_gradient!r}", option="narrow_gradient"
            )
        if self.recipe not in RECIPES:
            raise SharcsError(f"must be sandwich or paper, got {self.recipe!r}", option="recipe")
        if self.hardness_from not in HARDNESS_SOURCES:
            raise SharcsError(
                f"must be routed or narrowest, got {self.hardness_from!r}", option="hardness_from"
            )
        if not 0.0 <= self.select_tolerance < 1.0:
            raise SharcsError(f"must lie in [0, 1), got {self.select_tolerance}", option="select_tolerance")
        if self.save_every_steps < 0:
            raise SharcsError(f"must be >= 0, got {self.save_every_steps}", option="save_every_steps")
        if self.hardness_from == "narrowest" and not self.distill_narrow:
            raise SharcsError(
                "narrowest needs {distill_narrow} (it runs the narrowest width on every batch)",
                option="hardness_from",
            )
