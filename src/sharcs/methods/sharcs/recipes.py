"""How a SharcsModel trains (docs/method.md §3, §7): the hooks `Trainer` calls for SHARCS, its cascade and
its router-free baselines.

- The sandwich recipe (the default for a model with a router) and routing "cascade": every sample
  trains at full width every step, and every narrower width learns on the same batch from the full
  width's detached logits, mixed with the labels by `narrow_label_weight`, its loss weighted by
  `narrow_weight` against the full width's (by default 1, and 0.25 on regression). The router is not
  trained here; sharcs.methods.sharcs.calibration fits it on held-out data after each epoch.
- The paper recipe: each epoch the hardness labeler assigns every sample a width from its confidence
  history; samples are bucketed by width, and the router trains on the labels at `router_lr`.
- Routing "random" buckets samples at random with the configured shares; routing "fixed" puts every
  sample in the fixed width's bucket.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from sharcs.errors import SharcsError
from sharcs.methods.sharcs.hardness import HardnessLabeler, confidence
from sharcs.modeling.losses import distillation_loss, hidden_distillation_loss, task_loss
from sharcs.training.arguments import TrainingArguments
from sharcs.training.hooks import TrainingHooks

if TYPE_CHECKING:
    from sharcs.methods.sharcs.model import SharcsModel


class SharcsTraining(TrainingHooks):
    model: SharcsModel

    def __init__(self, model: SharcsModel, args: TrainingArguments, num_samples: int) -> None:
        super().__init__(model, args, num_samples)
        config = model.config
        self.labeler: HardnessLabeler | None = None  # hardness labels: the paper recipe with a router
        if config.uses_router and args.recipe == "paper":
            self.labeler = HardnessLabeler(num_samples, config.confidence_intervals, config.window)
            self.records_steps = True
        elif args.distill_narrow:
            raise SharcsError(
                "distill_narrow is for the paper recipe of SHARCS models with a router (routing argmax or "
                "tau); the sandwich recipe and routing 'cascade' always distil their narrower widths"
            )
        # every sample at full width, every narrower width distilled from it
        self.sandwich = config.routing == "cascade" or (config.uses_router and args.recipe == "sandwich")
        # the narrow losses' weight: the paper recipe's distillation adds them at 1
        self.narrow_weight = args.narrow_loss_weight(model.num_labels == 1) if self.sandwich else 1.0
        if args.distill_hidden and not (args.distill_narrow or self.sandwich):
            raise SharcsError(
                "distill_hidden needs distill_narrow, the sandwich recipe or a model with routing 'cascade'"
            )
        self.project = args.narrow_gradient == "project"
        if self.project and not self.sandwich:
            raise SharcsError("narrow_gradient 'project' is for the sandwich recipe and routing 'cascade'")
        self.parts: tuple[torch.Tensor, torch.Tensor] | None = None  # batch_loss's (full, narrow) parts

    def router_parameters(self) -> list[torch.nn.Parameter]:
        return list(self.model.router.parameters()) if self.labeler is not None else []

    def assign_routes(self, generator: torch.Generator) -> torch.Tensor:
        """A width index per sample: its hardness label, full width (the sandwich recipe; `batch_loss`
        adds the narrower widths), a random draw, or the fixed width."""
        n, model = self.num_samples, self.model
        if self.labeler is not None:
            return self.labeler.assign_widths(generator)
        if self.sandwich:
            return torch.full((n,), len(model.config.widths) - 1)
        if model.config.routing == "random":
            return torch.multinomial(torch.tensor(model.config.shares), n, True, generator=generator)
        return torch.full((n,), model.width_index(model.config.fixed_width))

    def batch_loss(
        self, batch: dict[str, torch.Tensor], bucket: int, index: torch.Tensor
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor] | None]:
        model, args = self.model, self.args
        states = {"output_hidden_states": True} if args.distill_hidden else {}
        out = model(**batch, **self.route_arguments(bucket, index), **states)
        loss, narrowest_logits = out.loss, out.logits
        if args.distill_narrow or self.sandwich:
            teacher = [state.detach() for state in out.hidden_states] if args.distill_hidden else []
            narrow_part = out.loss.new_zeros(())
            for narrower in reversed(model.config.widths[:bucket]):  # the narrowest last
                narrow = model(**batch, width=narrower, **states)
                narrowest_logits = narrow.logits
                narrow_loss = self.narrow_loss(narrowest_logits, out.logits.detach(), batch["labels"])
                narrow_part = narrow_part + self.narrow_weight * narrow_loss
                if args.distill_hidden:
                    narrow_part = narrow_part + hidden_distillation_loss(
                        narrow.hidden_states, teacher, batch["attention_mask"]
                    )
            loss = loss + narrow_part
            self.parts = (out.loss, narrow_part) if self.project and bucket > 0 else None
        if self.labeler is None:
            return loss, None
        logits = narrowest_logits if args.hardness_from == "narrowest" else out.logits
        return loss, (index, confidence(logits, batch["labels"], args.label_range))

    def backward(self, loss: torch.Tensor, scale: float) -> None:
        """The summed gradient, or with narrow_gradient 'project' the full width's plus the narrower widths'
        with, per parameter tensor, any component against the full width's removed: afterwards
        <grad, g_full> >= |g_full|^2 for every tensor."""
        parts, self.parts = self.parts, None
        if parts is None:  # summed, or no narrower width on this batch
            super().backward(loss, scale)
            return
        full, narrow = parts
        parameters = [p for p in self.model.parameters() if p.requires_grad]
        g_full = torch.autograd.grad(full * scale, parameters, retain_graph=True, allow_unused=True)
        g_narrow = torch.autograd.grad(narrow * scale, parameters, allow_unused=True)
        for parameter, f, n in zip(parameters, g_full, g_narrow, strict=True):
            if f is None and n is None:
                continue
            if f is not None and n is not None:
                dot = torch.sum(f * n)
                if dot < 0:
                    n = n - (dot / torch.sum(f * f).clamp_min(1e-30)) * f
            total = n if f is None else f if n is None else f + n
            parameter.grad = total if parameter.grad is None else parameter.grad + total

    def narrow_loss(self, logits: torch.Tensor, teacher: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """A narrower width's loss: distillation from the wider width's detached logits, mixed (sandwich
        recipe and cascade) with the task loss on the labels by `narrow_label_weight`."""
        weight = self.args.narrow_label_weight if self.sandwich else 0.0
        loss = distillation_loss(logits, teacher)
        if weight:
            loss = (1.0 - weight) * loss + weight * task_loss(logits, labels)
        return loss

    def route_arguments(self, bucket: int, index: torch.Tensor) -> dict[str, Any]:
        """What a training forward gets besides the batch: the bucket's width and router targets."""
        arguments: dict[str, Any] = {"width": self.model.config.widths[bucket]}
        labeler = self.labeler
        if labeler is not None and (self.args.router_loss_in_warmup or not labeler.warming_up):
            arguments["router_targets"] = labeler.targets(index).to(next(self.model.parameters()).device)
        return arguments

    def record(self, index: torch.Tensor, values: torch.Tensor) -> None:
        if self.labeler is not None:
            self.labeler.record(index, values)

    def end_epoch(self, assignment: torch.Tensor) -> dict[str, Any]:
        keys = list(map(str, self.model.config.widths))
        trained = torch.bincount(assignment, minlength=len(keys)).float() / len(assignment)
        entries: dict[str, Any] = {"trained_width_share": dict(zip(keys, trained.tolist(), strict=True))}
        if self.labeler is not None:
            self.labeler.end_epoch()
            entries["next_label_share"] = dict(zip(keys, self.labeler.share(), strict=True))
        return entries

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.labeler.state_dict() if self.labeler is not None else {}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        if self.labeler is not None:
            self.labeler.load_state_dict(state)
