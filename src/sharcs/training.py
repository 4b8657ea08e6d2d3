"""Training (method.md §3): width buckets, one optimizer step over all of them.

    trainer = Trainer(model, train_data, TrainingArguments(epochs=3), output_dir="runs/sst2")
    history = trainer.train()          # or trainer.train(resume=True) after an interruption

For SHARCS, each epoch the hardness labeler assigns every sample a width; samples are bucketed by
width, and each optimizer step takes one batch from every non-empty bucket (smaller buckets cycled),
averages their losses (task + router) and steps once. The router-free SHARCS baselines bucket by
their rule instead (routing "fixed": one width; "random": widths drawn with the configured shares).
Every other method (DynaBERT, early exit) trains on plain shuffled batches with the loss its model
returns; a model may restart the learning-rate schedule (`schedule_starts`, DeeBERT's second stage).
Checkpoints hold model, optimizer, labeler, RNG state and the position in the epoch, so a killed run
resumes to the same weights.

Under `torchrun` / `accelerate launch` (a running torch.distributed process group, see
`sharcs.distributed`) every rank plans the same epoch with global batches of batch_size x processes,
trains its contiguous slice of each batch, sums the share-weighted gradients over ranks and gathers
the confidences, so every rank holds the same weights and hardness labels as a single process with
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

from sharcs import distributed
from sharcs.adaptive import AdaptiveModel, distillation_loss, load_model
from sharcs.collate import pad_batch
from sharcs.errors import SharcsError
from sharcs.files import atomic_write_text, latest_version, remove_versions, versioned_directory
from sharcs.hardness import HardnessLabeler, confidence
from sharcs.model import SharcsModel, has_router, hidden_distillation_loss, is_cascade

CHECKPOINT_DIR = "checkpoint"
BEST_DIR = "best"
STATE_NAME = "trainer_state.pt"
HISTORY_NAME = "history.json"


@dataclass
class TrainingArguments:
    """epochs, batch size per width bucket, AdamW settings, linear warm-up/decay, seed.

    router_learning_rate: peak learning rate of the (freshly initialised) router; None: learning_rate.
    router_loss_in_warmup: also train the router during the warm-up epochs, when every target is "full
        width" (method.md §2). Off by default: the constant target saturates the router (its loss on the
        first informative epoch starts near 12 on MiniLM/SST-2) and its gradient can swamp the task loss
        in layers 1..K.
    label_range: max - min label, needed for regression confidences.
    distill_narrow: (routed SHARCS; beyond the paper) also train every width below a batch's bucket
        width on that batch, distilled from the bucket width's detached logits (KL, MSE for regression),
        so the narrow path learns from every sample, not only from those labelled easy.
    distill_hidden: (beyond the paper; needs distill_narrow or routing "cascade") also match each
        narrower width's layer outputs to the wider width's (detached), see `hidden_distillation_loss`.
    hardness_from: "routed" (the paper): hardness labels come from each sample's confidence at its
        bucket width; "narrowest" (needs distill_narrow): from its confidence at the narrowest width,
        i.e. a sample is labelled easy when the narrow path itself is confident about it.
    save_every_steps: also checkpoint every this many optimizer steps inside an epoch (0: epoch ends only).
    select_tolerance: epoch selection (beyond the paper): keep the cheapest epoch (Trainer's
        `select_cost`) whose selection metric is within this much of the best value so far; 0 keeps
        the best epoch, the cheaper one on a tie. Held-out accuracy alone tends to keep the epoch that
        routes the most samples to full width.
    """

    epochs: int = 3
    batch_size: int = 32
    learning_rate: float = 5e-5
    router_learning_rate: float | None = None
    router_loss_in_warmup: bool = False
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    max_grad_norm: float = 1.0
    seed: int = 42
    label_range: float | None = None
    save_every_steps: int = 0
    distill_narrow: bool = False
    distill_hidden: bool = False
    hardness_from: str = "routed"
    select_tolerance: float = 0.0

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise SharcsError(f"{name}: must be at least 1, got {getattr(self, name)}")
        if self.learning_rate <= 0:
            raise SharcsError(f"learning_rate: must be positive, got {self.learning_rate}")
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise SharcsError(f"warmup_ratio: must lie in [0, 1), got {self.warmup_ratio}")
        if self.hardness_from not in ("routed", "narrowest"):
            raise SharcsError(f"hardness_from: must be 'routed' or 'narrowest', got {self.hardness_from!r}")
        if not 0.0 <= self.select_tolerance < 1.0:
            raise SharcsError(f"select_tolerance: must lie in [0, 1), got {self.select_tolerance}")
        if self.hardness_from == "narrowest" and not self.distill_narrow:
            raise SharcsError(
                "hardness_from 'narrowest' needs distill_narrow (it runs the narrowest width on every batch)"
            )


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
    """One optimizer step: a batch (sample indices) for each width index."""

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

    A SHARCS model with routing "cascade" (beyond the paper) trains every sample at full width and
    every narrower width distilled from it, as `distill_narrow` does; it has no router to train.
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
        self.labeler = None  # hardness labels: only a SHARCS model with a router has them
        router: list[torch.nn.Parameter] = []
        if has_router(model):
            config = model.config
            self.labeler = HardnessLabeler(len(train_data), config.confidence_intervals, config.window)
            router = list(model.router.parameters())
        elif args.distill_narrow:
            raise SharcsError(
                "distill_narrow is for SHARCS models with a router (routing argmax or tau); "
                "routing 'cascade' always distils its narrower widths"
            )
        self.cascade = is_cascade(model)
        if args.distill_hidden and not (args.distill_narrow or self.cascade):
            raise SharcsError("distill_hidden needs distill_narrow or a model with routing 'cascade'")
        self.schedule_starts = model.schedule_starts(args.epochs)
        router_ids = {id(p) for p in router}
        groups = [[p for p in model.parameters() if id(p) not in router_ids], router]
        rates = [args.learning_rate, args.router_learning_rate or args.learning_rate]
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

    # ------------------------------------------------------------------------------- planning
    def plan_epoch(self, epoch: int) -> tuple[list[Step], torch.Tensor]:
        """The epoch's steps and each sample's width index; a pure function of seed, epoch and labels."""
        generator = torch.Generator().manual_seed(self.args.seed * 100_003 + epoch)
        assignment = self.assign_routes(generator)
        bucket_batches = []
        for width_index in range(int(assignment.max()) + 1):
            members = (assignment == width_index).nonzero().squeeze(1)
            if len(members) == 0:
                continue
            members = members[torch.randperm(len(members), generator=generator)].tolist()
            size = self.args.batch_size * distributed.world_size()  # the global batch
            batches = [members[i : i + size] for i in range(0, len(members), size)]
            bucket_batches.append((width_index, batches))
        num_steps = max(len(batches) for _, batches in bucket_batches)
        steps = [
            Step([(w, batches[s % len(batches)]) for w, batches in bucket_batches]) for s in range(num_steps)
        ]
        return steps, assignment

    def assign_routes(self, generator: torch.Generator) -> torch.Tensor:
        """Each sample's bucket this epoch: a width index for SHARCS and its baselines, else 0."""
        n, model = len(self.data), self.model
        if self.labeler is not None:
            return self.labeler.assign_widths(generator)
        if self.cascade:  # every sample at full width; train_step adds the narrower widths
            return torch.full((n,), len(model.config.widths) - 1)
        if isinstance(model, SharcsModel) and model.config.routing == "random":
            return torch.multinomial(torch.tensor(model.config.shares), n, True, generator=generator)
        if isinstance(model, SharcsModel):  # routing "fixed"
            return torch.full((n,), model.width_index(model.config.fixed_width))
        return torch.zeros(n, dtype=torch.long)

    # ------------------------------------------------------------------------------- training
    def train(self, resume: bool = False) -> list[dict]:
        """Run all epochs (continuing from the last checkpoint when `resume`); returns per-epoch records."""
        if resume:
            self.load_checkpoint()
        else:
            torch.manual_seed(self.args.seed)
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
        """Forward/backward one batch per width bucket, average the losses, one optimizer step.

        With several processes each rank takes its slice of every batch and weights its loss by its
        share of the batch; summing gradients over ranks gives the gradient of the global batch.
        """
        model = self.model
        for group in self.optimizer.param_groups:
            group["lr"] = group["base_lr"] * factor
        self.optimizer.zero_grad(set_to_none=True)
        total = 0.0
        records: list[tuple[torch.Tensor, torch.Tensor]] = []
        for width_index, global_indices in step.batches:
            indices, share = distributed.shard(global_indices)
            if not indices:
                continue
            batch = pad_batch(self.data[indices], self.pad_token_id)
            index = batch.pop("index", torch.tensor(indices))
            batch = {k: v.to(_device(model)) for k, v in batch.items()}
            states = {"output_hidden_states": True} if self.args.distill_hidden else {}
            out = model(**batch, **self.route_arguments(width_index, index), **states)
            loss, narrowest_logits = out.loss, out.logits
            if self.args.distill_narrow or self.cascade:
                teacher = [state.detach() for state in out.hidden_states] if self.args.distill_hidden else []
                for narrower in reversed(model.config.widths[:width_index]):  # the narrowest last
                    narrow = model(**batch, width=narrower, **states)
                    narrowest_logits = narrow.logits
                    loss = loss + distillation_loss(narrowest_logits, out.logits.detach())
                    if self.args.distill_hidden:
                        loss = loss + hidden_distillation_loss(
                            narrow.hidden_states, teacher, batch["attention_mask"]
                        )
            (loss * (share / len(step.batches))).backward()
            total += loss.item() * share / len(step.batches)
            if self.labeler is not None:
                logits = narrowest_logits if self.args.hardness_from == "narrowest" else out.logits
                records.append((index, confidence(logits, batch["labels"], self.args.label_range)))
        if self.labeler is not None:
            for index, confidences in distributed.gather_records(records):
                self.labeler.record(index, confidences)
        if distributed.is_distributed():
            distributed.sum_gradients([p for p in model.parameters() if p.requires_grad])
            total = distributed.sum_scalar(total, _device(model))
        if self.args.max_grad_norm:
            torch.nn.utils.clip_grad_norm_(model.parameters(), self.args.max_grad_norm)
        self.optimizer.step()
        return total

    def route_arguments(self, width_index: int, index: torch.Tensor) -> dict:
        """What a training forward gets besides the batch: the bucket's width and router targets."""
        model = self.model
        if not isinstance(model, SharcsModel):
            return {}
        arguments: dict = {"width": model.config.widths[width_index]}
        if self.labeler is not None and (self.args.router_loss_in_warmup or not self.labeler.warming_up):
            arguments["router_targets"] = self.labeler.targets(index).to(_device(model))
        return arguments

    def finish_epoch(self, assignment: torch.Tensor) -> None:
        """Update hardness labels, evaluate, log, keep the best model and checkpoint."""
        record: dict = {
            "epoch": self.epoch + 1,
            "train_loss": self.epoch_sums["loss"] / max(1, self.epoch_sums["steps"]),
            "steps": self.epoch_sums["steps"],
        }
        if isinstance(self.model, SharcsModel):
            keys = list(map(str, self.model.config.widths))
            trained_share = torch.bincount(assignment, minlength=len(keys)).float() / len(assignment)
            record["trained_width_share"] = dict(zip(keys, trained_share.tolist(), strict=True))
            if self.labeler is not None:
                self.labeler.end_epoch()
                record["next_label_share"] = dict(zip(keys, self.labeler.share(), strict=True))
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
        and either the kept epoch no longer is, or this one is cheaper (or as cheap and better).

        An online rule (only the kept epoch is stored): the kept epoch is always within tolerance of the
        best metric seen, though an earlier unkept epoch may be cheaper in hindsight.
        """
        value = record[self.select_metric]
        cost = record[self.select_cost] if self.select_cost is not None else 0.0
        self.best_value = max(self.best_value, value)
        floor = self.best_value - self.args.select_tolerance
        kept_value, kept_cost = self.kept
        if value < floor or (kept_value >= floor and (cost, -value) >= (kept_cost, -kept_value)):
            return False
        self.kept = (value, cost)
        return True

    # ---------------------------------------------------------------------------- checkpoints
    def save_checkpoint(self) -> None:
        """Save model, optimizer, labeler, RNG and position as a new checkpoint (see `find_checkpoint`).

        Only rank 0 writes; every rank waits until the checkpoint is complete.
        """
        if self.output_dir is None:
            return
        if not distributed.is_main():
            distributed.barrier()
            return
        state = {
            "optimizer": self.optimizer.state_dict(),
            "labeler": self.labeler.state_dict() if self.labeler is not None else None,
            "torch_rng": torch.get_rng_state(),
            "epoch": self.epoch,
            "step_in_epoch": self.step_in_epoch,
            "epoch_sums": dict(self.epoch_sums),
            "history": self.history,
            "best_value": self.best_value,
            "kept": self.kept,
            "args": asdict(self.args),
        }
        position = (self.epoch, self.step_in_epoch)
        with versioned_directory(self.output_dir / CHECKPOINT_DIR, position) as scratch:
            self.model.save_pretrained(scratch / "model")
            torch.save(state, scratch / STATE_NAME)
        distributed.barrier()

    def load_checkpoint(self) -> None:
        """Restore everything `save_checkpoint` wrote; a missing or broken checkpoint is a SharcsError."""
        if self.output_dir is None:
            raise SharcsError("resume needs an output directory holding a checkpoint")
        folder = find_checkpoint(self.output_dir)
        if folder is None or not (folder / STATE_NAME).is_file():
            raise SharcsError(
                f"nothing to resume: {self.output_dir / CHECKPOINT_DIR / STATE_NAME} does not exist"
            )
        try:
            state = torch.load(folder / STATE_NAME, weights_only=False, map_location="cpu")
        except Exception as error:  # any unpickling failure means the file is damaged
            raise SharcsError(f"{folder / STATE_NAME} is corrupt ({type(error).__name__})") from None
        saved = load_model(folder / "model")  # every rank reads rank 0's checkpoint
        if type(saved) is not type(self.model) or saved.config != self.model.config:
            raise SharcsError(f"{folder} was trained with another model config: {saved.config}")
        self.model.load_state_dict(saved.state_dict())
        self.optimizer.load_state_dict(state["optimizer"])
        if self.labeler is not None:
            self.labeler.load_state_dict(state["labeler"])
        torch.set_rng_state(state["torch_rng"])
        self.epoch, self.step_in_epoch = state["epoch"], state["step_in_epoch"]
        self.epoch_sums, self.history, self.best_value = (
            state["epoch_sums"],
            state["history"],
            state["best_value"],
        )
        # checkpoints from before select_tolerance kept the best epoch: its cost is unknown, so a
        # cheaper epoch of equal metric may replace it
        self.kept = tuple(state.get("kept", (self.best_value, math.inf)))


def find_checkpoint(output_dir: str | Path) -> Path | None:
    """The folder of the latest complete checkpoint in `output_dir`, or None.

    Each save writes a new folder checkpoint-<epoch>-<step> and then points the symlink checkpoint at
    it; without a live link (a crash in between) the newest complete checkpoint-* folder is used.
    """
    return latest_version(Path(output_dir) / CHECKPOINT_DIR)


def remove_checkpoints(output_dir: str | Path) -> None:
    """Delete every checkpoint in `output_dir` (a run started afresh must not resume them)."""
    remove_versions(Path(output_dir) / CHECKPOINT_DIR)


def _device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device
