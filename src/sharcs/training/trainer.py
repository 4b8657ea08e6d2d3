"""Training (docs/method.md §3): width buckets, one optimizer step over all of them.

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
`sharcs.training.distributed`) every rank plans the same epoch with global batches of batch_size x processes,
trains its contiguous slice of each batch, sums the share-weighted gradients over ranks and gathers
the confidences, so every rank holds the same weights and hardness labels as a single process with
the global batch. Only rank 0 writes checkpoints and history; every rank reads them on resume.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from datasets import Dataset
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from sharcs.data.collate import pad_batch
from sharcs.errors import SharcsError, first_line
from sharcs.methods.sharcs.config import SharcsConfig
from sharcs.methods.sharcs.hardness import HardnessLabeler, confidence
from sharcs.methods.sharcs.model import SharcsModel, has_router, hidden_distillation_loss, is_cascade
from sharcs.modeling.adaptive import AdaptiveModel, distillation_loss, task_loss
from sharcs.storage.files import atomic_write_text, latest_version, remove_versions, versioned_directory
from sharcs.training import distributed

CHECKPOINT_DIR = "checkpoint"
BEST_DIR = "best"
STATE_NAME = "trainer_state.json"  # positions, history, optimizer settings: JSON, never pickle
TENSORS_NAME = "trainer_state.safetensors"  # optimizer moments, hardness history, RNG state
OLD_STATE_NAME = "trainer_state.pt"  # the pickle earlier versions wrote: refused, never loaded
STATE_FORMAT = 1
LABELER_TENSORS = ("history", "current", "epochs_done", "eligible")  # HardnessLabeler.state_dict
HISTORY_NAME = "history.json"
RECIPES = ("sandwich", "paper")


@dataclass
class TrainingArguments:
    """epochs, batch size per width bucket, AdamW settings, linear warm-up/decay, seed.

    router_learning_rate: peak learning rate of the (freshly initialised) router; None: learning_rate.
    router_loss_in_warmup: also train the router during the warm-up epochs, when every target is "full
        width" (docs/method.md §2). Off by default: the constant target saturates the router (its loss on the
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
    recipe: how a SHARCS model with a router trains (docs/method.md §3, §7). "sandwich" (the default; beyond
        the paper): every sample trains at full width every step, and every narrower width learns from
        it by distillation; the router is not trained here but fitted afterwards on held-out data
        (`sharcs.methods.sharcs.calibration`), so it never changes the shared weights. "paper": hardness labels from
        each sample's confidence history, width buckets, and the router trained jointly (docs/method.md §2-3).
    narrow_label_weight: (sandwich recipe and routing "cascade") a narrower width's loss is
        (1 - weight) * distillation from the full width + weight * the task loss on the labels; 0 is
        pure distillation (what `--method cascade` did before), which learns little while the full-width
        teacher is still untrained.
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
    recipe: str = "sandwich"
    narrow_label_weight: float = 0.5

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise SharcsError(f"{name}: must be at least 1, got {getattr(self, name)}")
        if self.learning_rate <= 0:
            raise SharcsError(f"learning_rate: must be positive, got {self.learning_rate}")
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise SharcsError(f"warmup_ratio: must lie in [0, 1), got {self.warmup_ratio}")
        if not 0.0 <= self.narrow_label_weight <= 1.0:
            raise SharcsError(f"narrow_label_weight: must lie in [0, 1], got {self.narrow_label_weight}")
        if self.recipe not in RECIPES:
            raise SharcsError(f"recipe: must be one of {', '.join(RECIPES)}, got {self.recipe!r}")
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
        self.labeler = None  # hardness labels: only the paper recipe of a SHARCS model with a router
        router: list[torch.nn.Parameter] = []
        if has_router(model) and args.recipe == "paper":
            config = model.config
            self.labeler = HardnessLabeler(len(train_data), config.confidence_intervals, config.window)
            router = list(model.router.parameters())
        elif args.distill_narrow:
            raise SharcsError(
                "distill_narrow is for the paper recipe of SHARCS models with a router (routing argmax or "
                "tau); the sandwich recipe and routing 'cascade' always distil their narrower widths"
            )
        # every sample at full width, every narrower width distilled from it (the router, if any, is
        # fitted after training by sharcs.methods.sharcs.calibration)
        self.sandwich = is_cascade(model) or (has_router(model) and args.recipe == "sandwich")
        if args.distill_hidden and not (args.distill_narrow or self.sandwich):
            raise SharcsError(
                "distill_hidden needs distill_narrow, the sandwich recipe or a model with routing 'cascade'"
            )
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
        self.resumed = False  # load_checkpoint ran: train(resume=True) continues from there

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
        if self.sandwich:  # every sample at full width; train_step adds the narrower widths
            return torch.full((n,), len(model.config.widths) - 1)
        if isinstance(model, SharcsModel) and model.config.routing == "random":
            return torch.multinomial(torch.tensor(model.config.shares), n, True, generator=generator)
        if isinstance(model, SharcsModel):  # routing "fixed"
            return torch.full((n,), model.width_index(model.config.fixed_width))
        return torch.zeros(n, dtype=torch.long)

    # ------------------------------------------------------------------------------- training
    def train(self, resume: bool = False) -> list[dict]:
        """Run all epochs (continuing from the last checkpoint when `resume`); returns per-epoch records."""
        if resume and not self.resumed:
            self.load_checkpoint()
        elif not resume:
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
            if self.args.distill_narrow or self.sandwich:
                teacher = [state.detach() for state in out.hidden_states] if self.args.distill_hidden else []
                for narrower in reversed(model.config.widths[:width_index]):  # the narrowest last
                    narrow = model(**batch, width=narrower, **states)
                    narrowest_logits = narrow.logits
                    loss = loss + self.narrow_loss(narrowest_logits, out.logits.detach(), batch["labels"])
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

    def narrow_loss(self, logits: torch.Tensor, teacher: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """A narrower width's loss: distillation from the wider width's detached logits, mixed (sandwich
        recipe and cascade) with the task loss on the labels by `narrow_label_weight`."""
        weight = self.args.narrow_label_weight if self.sandwich else 0.0
        loss = distillation_loss(logits, teacher)
        if weight:
            loss = (1.0 - weight) * loss + weight * task_loss(logits, labels)
        return loss

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

        Nothing is pickled: the tensors (optimizer moments and steps, hardness history, RNG state) go to
        trainer_state.safetensors, everything else to trainer_state.json, so loading a checkpoint can
        never run code. Only rank 0 writes; every rank waits until the checkpoint is complete.
        """
        if self.output_dir is None:
            return
        if not distributed.is_main():
            distributed.barrier()
            return
        tensors: dict[str, torch.Tensor] = {"torch_rng": torch.get_rng_state()}
        if self.labeler is not None:
            tensors.update({f"labeler.{k}": v for k, v in self.labeler.state_dict().items()})
        optimizer = self.optimizer.state_dict()
        per_param: dict[str, dict[str, Any]] = {}
        for index, values in optimizer["state"].items():
            entry: dict[str, Any] = {"tensors": [], "scalars": {}}
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
            "labeler": self.labeler is not None,
            "optimizer": {"param_groups": optimizer["param_groups"], "state": per_param},
            "args": asdict(self.args),
        }
        position = (self.epoch, self.step_in_epoch)
        with versioned_directory(self.output_dir / CHECKPOINT_DIR, position) as scratch:
            self.model.save_pretrained(scratch / "model")
            cpu = {name: t.detach().cpu().contiguous() for name, t in tensors.items()}
            save_file(cpu, str(scratch / TENSORS_NAME))
            (scratch / STATE_NAME).write_text(json.dumps(state, indent=1) + "\n", encoding="utf-8")
        distributed.barrier()

    def load_checkpoint(self) -> None:
        """Restore everything `save_checkpoint` wrote; a missing, broken or mismatched checkpoint file
        is a SharcsError naming it. Only JSON and safetensors are read: the pickle earlier versions wrote
        (trainer_state.pt) is refused unread, as unpickling can run code."""
        if self.output_dir is None:
            raise SharcsError("resume needs an output directory holding a checkpoint")
        folder = find_checkpoint(self.output_dir)
        if folder is not None and (folder / OLD_STATE_NAME).exists():
            raise old_format_error(folder / OLD_STATE_NAME)
        if folder is None or not (folder / STATE_NAME).is_file():
            raise SharcsError(
                f"nothing to resume: {self.output_dir / CHECKPOINT_DIR / STATE_NAME} does not exist"
            )
        state, tensors = read_trainer_state(folder)
        saved = type(self.model).from_pretrained(folder / "model")  # every rank reads rank 0's checkpoint
        if type(saved) is not type(self.model) or not same_structure(saved.config, self.model.config):
            raise SharcsError(f"{folder} was trained with another model config: {saved.config}")
        optimizer_state = self._checked_optimizer_state(state, tensors, folder)
        labeler_state = self._checked_labeler_state(state, tensors, folder)
        self.model.load_state_dict(saved.state_dict())
        # the sandwich recipe calibrates the routing rule after each epoch: continue with the saved one
        self.model.config, self.model.calibration = saved.config, saved.calibration
        try:
            self.optimizer.load_state_dict(optimizer_state)
        except (ValueError, KeyError, TypeError, RuntimeError) as error:
            raise SharcsError(f"{folder / STATE_NAME}: bad optimizer state ({first_line(error)})") from None
        if self.labeler is not None and labeler_state is not None:
            self.labeler.load_state_dict(labeler_state)
        torch.set_rng_state(tensors["torch_rng"])
        self.epoch, self.step_in_epoch = state["epoch"], state["step_in_epoch"]
        self.epoch_sums = {"loss": float(state["epoch_sums"]["loss"]), "steps": state["epoch_sums"]["steps"]}
        self.history, self.best_value = state["history"], float(state["best_value"])
        self.kept = (float(state["kept"][0]), float(state["kept"][1]))
        self.resumed = True

    def _checked_optimizer_state(
        self, state: dict[str, Any], tensors: dict[str, torch.Tensor], folder: Path
    ) -> dict[str, Any]:
        """The optimizer state_dict of a checkpoint, checked against this trainer's parameters."""
        saved = state["optimizer"]
        where = folder / TENSORS_NAME
        sizes = [len(group["params"]) for group in saved["param_groups"]]
        expected = [len(group["params"]) for group in self.optimizer.param_groups]
        if sizes != expected:
            raise SharcsError(
                f"{folder / STATE_NAME}: the optimizer has parameter groups of {sizes} tensors, "
                f"this run {expected}"
            )
        ids = [i for group in saved["param_groups"] for i in group["params"]]
        params = [p for group in self.optimizer.param_groups for p in group["params"]]
        if ids != list(range(len(params))):
            raise SharcsError(
                f"{folder / STATE_NAME}: the optimizer's parameter ids are not 0..{len(params) - 1}"
            )
        per_param: dict[int, dict[str, Any]] = {}
        for key, entry in saved["state"].items():
            index = int(key)
            if index >= len(params):
                raise SharcsError(
                    f"{folder / STATE_NAME}: optimizer state for parameter {index} of {len(params)}"
                )
            values = dict(entry["scalars"])
            for name in entry["tensors"]:
                tensor = tensors[f"optimizer.state.{key}.{name}"]
                shape = tuple(params[index].shape)
                if not tensor.is_floating_point() or (tensor.dim() > 0 and tuple(tensor.shape) != shape):
                    raise SharcsError(
                        f"{where}: optimizer.state.{key}.{name} is {tensor.dtype} {tuple(tensor.shape)}, "
                        f"its parameter {shape}"
                    )
                values[name] = tensor
            per_param[index] = values
        groups = [
            {k: tuple(v) if isinstance(v, list) and k != "params" else v for k, v in group.items()}
            for group in saved["param_groups"]
        ]  # JSON turned tuples (AdamW's betas) into lists
        return {"state": per_param, "param_groups": groups}

    def _checked_labeler_state(
        self, state: dict[str, Any], tensors: dict[str, torch.Tensor], folder: Path
    ) -> dict[str, torch.Tensor] | None:
        """The hardness labeler state of a checkpoint, checked against this run's labeler."""
        if state["labeler"] != (self.labeler is not None):
            has = "holds hardness labels" if state["labeler"] else "holds no hardness labels"
            raise SharcsError(f"{folder / STATE_NAME} {has}, unlike this run's model")
        if self.labeler is None:
            return None
        live = self.labeler.state_dict()
        labels = {name: tensors[f"labeler.{name}"] for name in LABELER_TENSORS}
        for name, tensor in labels.items():
            want = live[name]
            if tensor.dtype != want.dtype or tensor.shape != want.shape:
                raise SharcsError(
                    f"{folder / TENSORS_NAME}: hardness history labeler.{name} is {tensor.dtype} "
                    f"{tuple(tensor.shape)}, this run needs {want.dtype} {tuple(want.shape)} "
                    "(another training set, window or widths?)"
                )
        return labels


INFERENCE_FIELDS = ("routing", "tau", "cascade_confidence")  # what calibration may change


def same_structure(a: object, b: object) -> bool:
    """Whether two method configs describe the same trainable model: equal but for the inference rule
    of a SHARCS config, which the sandwich recipe calibrates after each epoch."""
    if isinstance(a, SharcsConfig) and isinstance(b, SharcsConfig):
        keep = {name: getattr(b, name) for name in INFERENCE_FIELDS}
        return dataclasses.replace(a, **keep) == b
    return a == b


def find_checkpoint(output_dir: str | Path) -> Path | None:
    """The folder of the latest complete checkpoint in `output_dir`, or None.

    Each save writes a new folder checkpoint-<epoch>-<step> and then points the symlink checkpoint at
    it; without a live link (a crash in between) the newest complete checkpoint-* folder is used.
    """
    return latest_version(Path(output_dir) / CHECKPOINT_DIR)


def remove_checkpoints(output_dir: str | Path) -> None:
    """Delete every checkpoint in `output_dir` (a run started afresh must not resume them)."""
    remove_versions(Path(output_dir) / CHECKPOINT_DIR)


def remove_training_state(output_dir: str | Path) -> None:
    """Delete what only training needs, every checkpoint and best/: a finished run keeps model/."""
    remove_checkpoints(output_dir)
    remove_versions(Path(output_dir) / BEST_DIR)


def old_format_error(path: Path) -> SharcsError:
    """The refusal of a trainer_state.pt, which is never unpickled."""
    return SharcsError(
        f"{path} is in the old pickle format, which sharcs no longer loads because it can run code; "
        "start the run again with --overwrite"
    )


def read_trainer_state(folder: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """trainer_state.json and trainer_state.safetensors of a checkpoint folder, checked for their
    structure and against each other; anything missing, unreadable or inconsistent is a SharcsError
    naming the file."""
    path = folder / STATE_NAME
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise SharcsError(f"{path} is corrupt or unreadable ({first_line(error)})") from None
    problem = _state_problem(state)
    if problem is not None:
        raise SharcsError(f"{path} is corrupt ({problem})")
    where = folder / TENSORS_NAME
    if not where.is_file():
        raise SharcsError(f"{where} is missing: the checkpoint is incomplete")
    try:
        tensors = load_file(str(where))
    except (SafetensorError, OSError, ValueError, RuntimeError) as error:
        raise SharcsError(f"{where} is corrupt or unreadable ({first_line(error)})") from None
    expected = {"torch_rng"}
    if state["labeler"]:
        expected |= {f"labeler.{name}" for name in LABELER_TENSORS}
    for key, entry in state["optimizer"]["state"].items():
        expected |= {f"optimizer.state.{key}.{name}" for name in entry["tensors"]}
    missing, unexpected = sorted(expected - set(tensors)), sorted(set(tensors) - expected)
    if missing or unexpected:
        raise SharcsError(
            f"{where} does not match {STATE_NAME}: {len(missing)} missing and {len(unexpected)} "
            f"unexpected tensors (first: {(missing or unexpected)[0]})"
        )
    rng = tensors["torch_rng"]
    if rng.dtype != torch.uint8 or rng.dim() != 1:
        raise SharcsError(
            f"{where}: torch_rng is {rng.dtype} {tuple(rng.shape)}, not a random generator state"
        )
    return state, tensors


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _state_problem(state: object) -> str | None:
    """What is wrong with the structure of a parsed trainer_state.json, or None."""
    if not isinstance(state, dict):
        return "not a JSON object"
    if state.get("format") != STATE_FORMAT:
        return f"format {state.get('format')!r}, expected {STATE_FORMAT}"
    for name in ("epoch", "step_in_epoch"):
        if not _is_count(state.get(name)):
            return f"{name} is {state.get(name)!r}, not a count"
    sums = state.get("epoch_sums")
    if not isinstance(sums, dict) or not _is_number(sums.get("loss")) or not _is_count(sums.get("steps")):
        return "epoch_sums is not {loss, steps}"
    history = state.get("history")
    if not isinstance(history, list) or not all(isinstance(record, dict) for record in history):
        return "history is not a list of records"
    kept = state.get("kept")
    if not _is_number(state.get("best_value")) or not (
        isinstance(kept, list) and len(kept) == 2 and all(_is_number(v) for v in kept)
    ):
        return "best_value or kept is not a number"
    if not isinstance(state.get("labeler"), bool):
        return "labeler is not true or false"
    optimizer = state.get("optimizer")
    if not isinstance(optimizer, dict):
        return "no optimizer state"
    groups, per_param = optimizer.get("param_groups"), optimizer.get("state")
    if not isinstance(groups, list) or not isinstance(per_param, dict):
        return "no optimizer param_groups or state"
    for group in groups:
        if not isinstance(group, dict) or not isinstance(group.get("params"), list):
            return "an optimizer param group without params"
        if not all(_is_count(i) for i in group["params"]):
            return "an optimizer param group with bad parameter ids"
    for key, entry in per_param.items():
        if not key.isdigit() or not isinstance(entry, dict):
            return f"bad optimizer state for parameter {key!r}"
        names, scalars = entry.get("tensors"), entry.get("scalars")
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            return f"bad optimizer tensor names for parameter {key}"
        if not isinstance(scalars, dict) or any(name in scalars for name in names):
            return f"bad optimizer scalars for parameter {key}"
    return None


def _device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device
