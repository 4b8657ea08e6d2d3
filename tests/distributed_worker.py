"""Trains the tiny bert (dropout 0) for 2 epochs, then resumes for a 3rd; dumps weights and labels.

    torchrun --nproc_per_node 2 tests/distributed_worker.py OUT --batch-size 4   # 2 ranks
    python tests/distributed_worker.py OUT --batch-size 8                        # 1 process

Writes OUT/rank<r>.pt: the flattened weights after every optimizer step, the hardness labels after
every epoch and the weights after the resumed epoch.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import random_dataset, tiny_config  # noqa: E402
from transformers import AutoModelForSequenceClassification  # noqa: E402

from sharcs import SharcsConfig, get_sharcs_model
from sharcs.training import distributed  # noqa: E402
from sharcs.training.trainer import Trainer, TrainingArguments  # noqa: E402


def make_trainer(out: Path, batch_size: int, epochs: int) -> Trainer:
    """The tiny model without dropout, so a single process can reproduce the multi-process run."""
    torch.manual_seed(0)
    config = tiny_config("bert")
    config.hidden_dropout_prob = 0.0
    config.attention_probs_dropout_prob = 0.0
    base = AutoModelForSequenceClassification.from_config(config)
    model = get_sharcs_model(base, SharcsConfig(adaptive_layer=2, window=1, threshold=0.5))
    args = TrainingArguments(
        epochs=epochs, batch_size=batch_size, lr=1e-3, seed=0, save_every_steps=3, recipe="paper"
    )
    return Trainer(model, random_dataset(45), args, output_dir=out / "run")


def flat(trainer: Trainer) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1).clone() for p in trainer.model.parameters()])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("--batch-size", type=int, required=True)
    opts = parser.parse_args()
    torch.set_num_threads(1)
    distributed.init_distributed("cpu")
    trainer = make_trainer(opts.out, opts.batch_size, epochs=2)
    steps: list[torch.Tensor] = []
    labels: list[torch.Tensor] = []
    step_fn, epoch_fn = trainer.train_step, trainer.finish_epoch

    def train_step(step, factor):  # type: ignore[no-untyped-def]
        loss = step_fn(step, factor)
        steps.append(flat(trainer))
        return loss

    def finish_epoch(assignment):  # type: ignore[no-untyped-def]
        epoch_fn(assignment)
        labels.append(trainer.hooks.labeler.eligible.clone())

    trainer.train_step, trainer.finish_epoch = train_step, finish_epoch
    trainer.train()
    resumed = make_trainer(opts.out, opts.batch_size, epochs=3)
    resumed.train(resume=True)
    result = {"steps": steps, "labels": labels, "resumed": flat(resumed), "world": distributed.world_size()}
    result["from_main"] = distributed.from_main(torch.tensor([float(distributed.rank()), 7.0]))
    torch.save(result, opts.out / f"rank{distributed.rank()}.pt")
    if distributed.is_distributed():
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
