"""What a method adds to the shared training loop: `TrainingHooks`, which `Trainer` calls and a model
provides (`AdaptiveModel.training_hooks`). The loop itself (sharcs.training.trainer) knows no method.

The default hooks train plain shuffled batches on the loss the model returns. A method with more to do
(SHARCS: width buckets, hardness labels, a router at its own learning rate, narrower widths distilled
from the full one) subclasses them; see sharcs.methods.sharcs.recipes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from sharcs.modeling.adaptive import AdaptiveModel
    from sharcs.training.arguments import TrainingArguments


class TrainingHooks:
    """The default: every sample in one bucket, the model's own loss, no state of its own."""

    records_steps = False  # whether `batch_loss` returns values to `record` (then gathered every step)

    def __init__(self, model: AdaptiveModel, args: TrainingArguments, num_samples: int) -> None:
        self.model = model
        self.args = args
        self.num_samples = num_samples

    def router_parameters(self) -> list[torch.nn.Parameter]:
        """Parameters trained at `args.router_lr` (the rest at `args.lr`)."""
        return []

    def assign_routes(self, generator: torch.Generator) -> torch.Tensor:
        """Each sample's bucket this epoch (an int per training sample). A step takes one batch from
        every non-empty bucket, so each bucket can run at its own width."""
        return torch.zeros(self.num_samples, dtype=torch.long)

    def batch_loss(
        self, batch: dict[str, torch.Tensor], bucket: int, index: torch.Tensor
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor] | None]:
        """(the loss of one bucket's batch, (sample indices, values) to `record` after the step, or None)."""
        return self.model(**batch).loss, None

    def backward(self, loss: torch.Tensor, scale: float) -> None:
        """Add the gradient of `scale` x the loss `batch_loss` just returned to the parameters' .grad."""
        (loss * scale).backward()

    def record(self, index: torch.Tensor, values: torch.Tensor) -> None:
        """What `batch_loss` returned to record, gathered from every process."""

    def end_epoch(self, assignment: torch.Tensor) -> dict[str, Any]:
        """Called after each epoch's last step with the epoch's buckets; returns entries for its record."""
        return {}

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Tensors a checkpoint must hold for the run to resume exactly (e.g. hardness history)."""
        return {}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore `state_dict`'s tensors (already checked for names, dtypes and shapes)."""
