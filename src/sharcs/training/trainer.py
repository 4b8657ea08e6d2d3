"""The training loop (docs/method.md §3), the same for every method: buckets, steps, epochs, checkpoints.

    trainer = Trainer(model, train_data, TrainingArguments(epochs=3), output_dir="runs/sst2")
    history = trainer.train()          # or trainer.train(resume=True) after an interruption

Each epoch the model's training hooks (`model.training_hooks`, sharcs.training.hooks) put every sample
in a bucket; each optimizer step takes one batch from every non-empty bucket (smaller buckets cycled),
averages their losses (each bucket's loss comes from the hooks) and steps once. SHARCS buckets samples
by width (sharcs.methods.sharcs.recipes); the other methods train plain shuffled batches. A model may
restart the learning-rate schedule (`schedule_starts`, DeeBERT's second stage). Checkpoints
(sharcs.training.checkpoints) hold model, optimizer, the hooks' state, RNG state and the position in
the epoch, so a killed run resumes to the same weights.

Under `torchrun` / `accelerate launch` (a running torch.distributed process group, see
`sharcs.training.distributed`) every rank plans the same epoch with global batches of batch_size x
processes, trains its contiguous slice of each batch, sums the share-weighted gradients over ranks and
gathers what the hooks record, so every rank holds the same weights and state as a single process with
the global batch. Only rank 0 writes checkpoints and history; every rank reads them on resume.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from datasets import Dataset
from tqdm.auto import tqdm
from transformers.trainer_pt_utils import get_length_grouped_indices

from sharcs.data.collate import pad_batch
from sharcs.errors import SharcsError, first_line
from sharcs.modeling.adaptive import AdaptiveModel
from sharcs.storage.files import atomic_write_text
from sharcs.training import distributed
from sharcs.training.arguments import TrainingArguments
from sharcs.training.checkpoints import (
    BEST_DIR,
    CHECKPOINT_DIR,
    METHOD_FLAG,
    METHOD_PREFIX,
    OLD_STATE_NAME,
    STATE_FORMAT,
    STATE_NAME,
    checked_method_state,
    checked_optimizer_state,
    find_checkpoint,
    old_format_error,
    read_trainer_state,
    write_checkpoint,
)

HISTORY_NAME = "history.json"
# epochs whose selection costs (e.g. held-out FLOPs) differ by less than this fraction count as equally
# cheap; a budget-calibrated model's cost moves by about this much between epochs by chance
COST_TIE = 0.02


def schedule_progress(epoch: int, fraction: float, epochs: int, starts: tuple[int, ...]) -> float:
    """Progress in [0, 1) through the schedule segment that contains `epoch` (+ `fraction` of it)."""
    start = max(s for s in starts if s <= epoch)
    end = min((s for s in starts if s > epoch), default=epochs)
    return (epoch - start + fraction) / (end - start)


def lr_factor(progress: float, warmup_ratio: float) -> float:
    """Linear warm-up to 1 over the first `warmup_ratio` of training, then linear decay to 0.

    `progress` is counted in optimizer steps: each epoch's step count is exact once it is planned (it
    depends on the width buckets, so it can change from epoch to epoch).
    """
    if progress < warmup_ratio:
        return progress / warmup_ratio
    return max(0.0, (1.0 - progress) / (1.0 - warmup_ratio))


@dataclass
class Step:
    """One optimizer step: a batch (sample indices) for each bucket index."""

    batches: list[tuple[int, list[int]]]


class Trainer:
    """Trains any sharcs model (SHARCS or a baseline) on a tokenized `datasets.Dataset`.

    The dataset holds input_ids, attention_mask and labels (and token_type_ids, index where present).

    evaluate(model) -> dict of metrics, called after every epoch; with `select_metric`, the epoch with
    the highest value of that metric is saved to output_dir/best. Choose it on held-out training data,
    not on the data you report. Only epochs of the model's last training phase (`schedule_starts`)
    compete: DeeBERT's first-stage epochs have untrained exits. `select_cost` names the record's cost
    (e.g. held-out FLOPs per sample) that breaks ties and, with `args.select_tolerance`, trades a
    little of the metric for a cheaper epoch (see `keeps_epoch`).
    """

    def __init__(
        self,
        model: AdaptiveModel,
        train_data: Dataset,
        args: TrainingArguments,
        output_dir: str | Path | None = None,
        evaluate: Callable[[AdaptiveModel], dict] | None = None,
        select_metric: str | None = None,
        pad_token_id: int = 0,
        select_cost: str | None = None,
    ):
        if len(train_data) == 0:
            raise SharcsError("training data is empty")
        if "labels" not in train_data.column_names:
            raise SharcsError("training data has no 'labels' column")
        self.model = model
        self.data = train_data
        self.args = args
        self.output_dir = Path(output_dir) if output_dir is not None else None
        self.evaluate = evaluate
        self.select_metric = select_metric
        self.select_cost = select_cost
        self.pad_token_id = pad_token_id
        # tokens per sample, for --group-by-length
        self.lengths = [len(ids) for ids in train_data["input_ids"]] if args.group_by_length else []
        self.hooks = model.training_hooks(args, len(train_data))
        self.schedule_starts = model.schedule_starts(args.epochs)
        router = self.hooks.router_parameters()
        router_ids = {id(p) for p in router}
        groups = [[p for p in model.parameters() if id(p) not in router_ids], router]
        rates = [args.lr, args.router_lr or args.lr]
        self.optimizer = torch.optim.AdamW(
            [{"params": g, "lr": lr, "base_lr": lr} for g, lr in zip(groups, rates, strict=True) if g],
            weight_decay=args.weight_decay,
        )
        self.history: list[dict] = []
        self.epoch = 0
        self.step_in_epoch = 0
        self.epoch_sums = {"loss": 0.0, "steps": 0}
        self.best_value = -math.inf  # the best selection metric of any competing epoch
        self.kept = (-math.inf, math.inf)  # (metric, cost) of the epoch in best/
        self.resumed = False  # load_checkpoint ran: train(resume=True) continues from there
        self.resume_rng: torch.Tensor | None = None  # the checkpoint's RNG state, set again by train()

    # ------------------------------------------------------------------------------- planning
    def plan_epoch(self, epoch: int) -> tuple[list[Step], torch.Tensor]:
        """The epoch's steps and each sample's bucket; a pure function of seed, epoch and hooks' state."""
        generator = torch.Generator().manual_seed(self.args.seed * 100_003 + epoch)
        assignment = self.hooks.assign_routes(generator)
        bucket_batches = []
        for bucket in range(int(assignment.max()) + 1):
            members = (assignment == bucket).nonzero().squeeze(1)
            if len(members) == 0:
                continue
            members = members[torch.randperm(len(members), generator=generator)].tolist()
            size = self.args.batch_size * distributed.world_size()  # the global batch
            if self.args.group_by_length:  # (it shuffles again: harmless, and runs' plans depend on it)
                lengths = [self.lengths[m] for m in members]
                members = [members[i] for i in get_length_grouped_indices(lengths, size, generator=generator)]
            batches = [members[i : i + size] for i in range(0, len(members), size)]
            if self.args.group_by_length:  # longest-first within each mega-batch otherwise
                batches = [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]
            bucket_batches.append((bucket, batches))
        num_steps = max(len(batches) for _, batches in bucket_batches)
        steps = [
            Step([(w, batches[s % len(batches)]) for w, batches in bucket_batches]) for s in range(num_steps)
        ]
        return steps, assignment

    # ------------------------------------------------------------------------------- training
    def train(self, resume: bool = False) -> list[dict]:
        """Run all epochs (continuing from the last checkpoint when `resume`); returns per-epoch records."""
        if resume and not self.resumed:
            self.load_checkpoint()
        elif not resume:
            torch.manual_seed(self.args.seed)
        if resume and self.resume_rng is not None:  # again: what ran since the checkpoint was read
            torch.set_rng_state(self.resume_rng)  # (building a model to check best/) drew from it
        model, args = self.model, self.args
        while self.epoch < args.epochs:
            model.start_epoch(self.epoch, args.epochs)
            steps, assignment = self.plan_epoch(self.epoch)
            model.train()
            bar = tqdm(
                total=len(steps),
                initial=self.step_in_epoch,
                desc=f"epoch {self.epoch + 1}/{args.epochs}",
                leave=False,
                disable=not distributed.is_main(),
            )
            while self.step_in_epoch < len(steps):
                progress = schedule_progress(
                    self.epoch, self.step_in_epoch / len(steps), args.epochs, self.schedule_starts
                )
                loss = self.train_step(steps[self.step_in_epoch], lr_factor(progress, args.warmup_ratio))
                self.epoch_sums["loss"] += loss
                self.epoch_sums["steps"] += 1
                self.step_in_epoch += 1
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.4f}")
                if args.save_every_steps and self.step_in_epoch % args.save_every_steps == 0:
                    self.save_checkpoint()
            bar.close()
            self.finish_epoch(assignment)
        return self.history

    def train_step(self, step: Step, factor: float) -> float:
        """Forward/backward one batch per bucket, average the losses, one optimizer step.

        With several processes each rank takes its slice of every batch and weights its loss by its
        share of the batch; summing gradients over ranks gives the gradient of the global batch.
        """
        model = self.model
        for group in self.optimizer.param_groups:
            group["lr"] = group["base_lr"] * factor
        self.optimizer.zero_grad(set_to_none=True)
        total = 0.0
        records: list[tuple[torch.Tensor, torch.Tensor]] = []
        for bucket, global_indices in step.batches:
            indices, share = distributed.shard(global_indices)
            if not indices:
                continue
            batch = pad_batch(self.data[indices], self.pad_token_id)
            index = batch.pop("index", torch.tensor(indices))
            batch = {k: v.to(_device(model)) for k, v in batch.items()}
            loss, record = self.hooks.batch_loss(batch, bucket, index)
            self.hooks.backward(loss, share / len(step.batches))
            total += loss.item() * share / len(step.batches)
            if record is not None:
                records.append(record)
        if self.hooks.records_steps:  # every rank, so the gather meets on all of them
            for index, values in distributed.gather_records(records):
                self.hooks.record(index, values)
        if distributed.is_distributed():
            distributed.sum_gradients([p for p in model.parameters() if p.requires_grad])
            total = distributed.sum_scalar(total, _device(model))
        if self.args.max_grad_norm:
            torch.nn.utils.clip_grad_norm_(model.parameters(), self.args.max_grad_norm)
        self.optimizer.step()
        return total

    def finish_epoch(self, assignment: torch.Tensor) -> None:
        """Let the hooks close the epoch, evaluate, log, keep the best model and checkpoint."""
        record: dict = {
            "epoch": self.epoch + 1,
            "train_loss": self.epoch_sums["loss"] / max(1, self.epoch_sums["steps"]),
            "steps": self.epoch_sums["steps"],
        }
        record.update(self.hooks.end_epoch(assignment))
        if self.evaluate is not None:
            record.update(self.evaluate(self.model))
        self.history.append(record)
        # only epochs of the last training phase compete for best/ (DeeBERT: exits trained)
        in_last_phase = self.epoch >= self.schedule_starts[-1]
        self.epoch += 1
        self.step_in_epoch = 0
        self.epoch_sums = {"loss": 0.0, "steps": 0}
        if self.output_dir is not None:
            main = distributed.is_main()
            selectable = self.select_metric is not None and in_last_phase
            if selectable and self.keeps_epoch(record):
                record["best"] = True
                if main:
                    self.model.save_pretrained(self.output_dir / BEST_DIR)
            if main:
                atomic_write_text(self.output_dir / HISTORY_NAME, json.dumps(self.history, indent=2) + "\n")
            self.save_checkpoint()

    def keeps_epoch(self, record: dict) -> bool:
        """Whether this epoch replaces best/: it is within `select_tolerance` of the best metric so far,
        and either the kept epoch no longer is, or this one is cheaper, or it is as cheap (within
        COST_TIE) and at least as good: a later epoch wins a tie, having trained longer.

        An online rule (only the kept epoch is stored): the kept epoch is always within tolerance of the
        best metric seen, though an earlier unkept epoch may be cheaper in hindsight.
        """
        value = record[self.select_metric]
        cost = record[self.select_cost] if self.select_cost is not None else 0.0
        self.best_value = max(self.best_value, value)
        floor = self.best_value - self.args.select_tolerance
        kept_value, kept_cost = self.kept
        cheaper = cost < kept_cost * (1 - COST_TIE)
        as_cheap = cost <= kept_cost * (1 + COST_TIE)
        if value < floor or (kept_value >= floor and not cheaper and not (as_cheap and value >= kept_value)):
            return False
        self.kept = (value, cost)
        return True

    # ---------------------------------------------------------------------------- checkpoints
    def save_checkpoint(self) -> None:
        """Save model, optimizer, the hooks' state, RNG and position as a new checkpoint. Only rank 0
        writes; every rank waits until the checkpoint is complete."""
        if self.output_dir is None:
            return
        if not distributed.is_main():
            distributed.barrier()
            return
        method_state = self.hooks.state_dict()
        tensors: dict[str, torch.Tensor] = {"torch_rng": torch.get_rng_state()}
        tensors.update({METHOD_PREFIX + k: v for k, v in method_state.items()})
        optimizer = self.optimizer.state_dict()
        per_param: dict[str, dict] = {}
        for index, values in optimizer["state"].items():
            entry: dict = {"tensors": [], "scalars": {}}
            for name, value in values.items():
                if isinstance(value, torch.Tensor):
                    tensors[f"optimizer.state.{index}.{name}"] = value
                    entry["tensors"].append(name)
                else:
                    entry["scalars"][name] = value
            per_param[str(index)] = entry
        state = {
            "format": STATE_FORMAT,
            "epoch": self.epoch,
            "step_in_epoch": self.step_in_epoch,
            "epoch_sums": dict(self.epoch_sums),
            "history": self.history,
            "best_value": self.best_value,
            "kept": list(self.kept),
            METHOD_FLAG: bool(method_state),
            "optimizer": {"param_groups": optimizer["param_groups"], "state": per_param},
            "args": asdict(self.args),
        }
        write_checkpoint(self.output_dir, (self.epoch, self.step_in_epoch), self.model, state, tensors)
        distributed.barrier()

    def load_checkpoint(self) -> None:
        """Restore everything `save_checkpoint` wrote; a missing, broken or mismatched checkpoint file
        is a SharcsError naming it."""
        if self.output_dir is None:
            raise SharcsError("resume needs an output directory holding a checkpoint")
        folder = find_checkpoint(self.output_dir)
        if folder is not None and (folder / OLD_STATE_NAME).exists():
            raise old_format_error(folder / OLD_STATE_NAME)
        if folder is None or not (folder / STATE_NAME).is_file():
            raise SharcsError(
                f"nothing to resume: {self.output_dir} holds no {CHECKPOINT_DIR}-E-S/ with {STATE_NAME}"
            )
        live = self.hooks.state_dict()
        state, tensors = read_trainer_state(folder, live)
        saved = type(self.model).from_pretrained(folder / "model")  # every rank reads rank 0's checkpoint
        if not self.model.same_structure(saved.config):
            raise SharcsError(f"{folder} was trained with another model config: {saved.config}")
        optimizer_state = checked_optimizer_state(self.optimizer, state, tensors, folder)
        method_state = checked_method_state(state, tensors, folder, live)
        self.model.load_state_dict(saved.state_dict())
        # the sandwich recipe calibrates the routing rule after each epoch: continue with the saved one
        self.model.config, self.model.calibration = saved.config, saved.calibration
        try:
            self.optimizer.load_state_dict(optimizer_state)
        except (ValueError, KeyError, TypeError, RuntimeError) as error:
            raise SharcsError(f"{folder / STATE_NAME}: bad optimizer state ({first_line(error)})") from None
        if method_state:
            self.hooks.load_state_dict(method_state)
        torch.set_rng_state(tensors["torch_rng"])
        self.resume_rng = tensors["torch_rng"]
        self.epoch, self.step_in_epoch = state["epoch"], state["step_in_epoch"]
        self.epoch_sums = {"loss": float(state["epoch_sums"]["loss"]), "steps": state["epoch_sums"]["steps"]}
        self.history, self.best_value = state["history"], float(state["best_value"])
        self.kept = (float(state["kept"][0]), float(state["kept"][1]))
        self.resumed = True


def _device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device
