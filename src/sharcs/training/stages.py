"""The default recipe's two stages (docs/method.md §7): a plain fine-tune, then the sandwich recipe from it.

    sharcs train --task sst2 --epochs 3 --output-dir runs/sst2
    #  stage 1, runs/sst2/finetune/: 2 epochs of --method full (a run folder of its own)
    #  stage 2, runs/sst2/: heads and FFN units rewired by importance under the fine-tuned head, then
    #           1 epoch of the sandwich recipe starting from the fine-tuned weights

`--finetune-epochs F` sets stage 1's share of `--epochs` (default: all but the last epoch; 0 skips it).
Both stages use the same data, seed and held-out slice, so the router and the budget of stage 2 are fitted
on rows neither stage trained on. The fine-tune stays in the output folder: `sharcs evaluate OUT/finetune`
is the plain fine-tune a user would otherwise have deployed, measured on the same rows.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from sharcs.training.options import TrainOptions

FINETUNE_DIR = "finetune"

# what stage 1 shares with the run: its data, base model, seed and optimizer settings; every option of
# the method (widths, router, recipe knobs, budget) is stage 2's alone
_SHARED = ("batch_size", "lr", "weight_decay", "warmup_ratio", "max_grad_norm", "seed", "save_every_steps",
           "select_tolerance", "model", "device", "keep_checkpoint", "group_by_length")  # fmt: skip


def finetune_folder(options: TrainOptions) -> Path:
    return Path(options.output_dir).expanduser() / FINETUNE_DIR


def finetune_stage(options: TrainOptions) -> TrainOptions:
    """Stage 1 of a staged run: `--method full` for `finetune_epochs` epochs into OUT/finetune/."""
    data = {f.name for f in dataclasses.fields(TrainOptions) if f.metadata.get("group") == "data"}
    shared = {name: getattr(options, name) for name in (*sorted(data), *_SHARED)}
    return TrainOptions(
        **shared,
        output_dir=str(finetune_folder(options)),
        method="full",
        epochs=options.finetune_epochs,
    )


def sandwich_stage(options: TrainOptions) -> TrainOptions:
    """Stage 2 of a staged run: the sandwich recipe for the remaining epochs, from stage 1's model."""
    return dataclasses.replace(
        options,
        model=str(finetune_folder(options)),
        epochs=options.epochs - options.finetune_epochs,
        finetune_epochs=0,
    )
