"""The losses sharcs trains with: the task loss, distillation from a wider width's logits, and the
matching of a narrower width's layer outputs to a wider one's."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


def task_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy, or MSE for a one-output (regression) head."""
    if logits.shape[-1] == 1:
        return F.mse_loss(logits.squeeze(-1), labels.to(logits.dtype))
    return F.cross_entropy(logits, labels)


def distillation_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """KL(teacher || student) over the classes, or MSE for a one-output (regression) head."""
    if student.shape[-1] == 1:
        return F.mse_loss(student, teacher)
    return F.kl_div(
        F.log_softmax(student, -1), F.log_softmax(teacher, -1), reduction="batchmean", log_target=True
    )


def hidden_distillation_loss(
    student: Sequence[torch.Tensor], teacher: Sequence[torch.Tensor], attention_mask: torch.Tensor
) -> torch.Tensor:
    """Mean over layers of the mean squared difference between each student layer output and the
    teacher's, over real tokens. The student keeps w*d channels when it narrows the residual stream:
    it is compared with the teacher's first w*d channels, those that the shared sliced weights read.
    The states are trimmed as `SharcsModel.forward(output_hidden_states=True)` returns them."""
    mask = attention_mask[:, attention_mask.bool().any(0)].unsqueeze(-1).to(student[0].dtype)
    losses = [
        ((s - t[..., : s.shape[-1]]) ** 2 * mask).sum() / (mask.sum() * s.shape[-1])
        for s, t in zip(student, teacher, strict=True)
    ]
    return torch.stack(losses).mean()
