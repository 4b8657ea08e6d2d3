"""Hardness labels: the widths each training sample may take, from its confidence history (docs/method.md §2).

Every training forward pass records the sample's confidence in its true class. After each epoch, a
width is eligible for a sample when all its confidences of the last `window` epochs lie in that
width's interval; no eligible width means the widest, several mean a multi-hot router target.
"""

from __future__ import annotations

import torch

from sharcs.errors import SharcsError


def confidence(logits: torch.Tensor, labels: torch.Tensor, label_range: float | None = None) -> torch.Tensor:
    """Per-sample confidence in [0, 1]: softmax probability of the true class, or for regression
    (one logit) 1 - |prediction - target| / label_range."""
    logits = logits.detach().float()
    if logits.shape[-1] == 1:
        if not label_range:
            raise SharcsError("regression confidence needs label_range > 0 (max label - min label)")
        error = (logits.squeeze(-1) - labels.float()).abs() / label_range
        return (1.0 - error).clamp(0.0, 1.0)
    return logits.softmax(-1).gather(-1, labels.long().unsqueeze(-1)).squeeze(-1)


class HardnessLabeler:
    """Confidence history of every training sample (by stable dataset index) and the labels it implies."""

    def __init__(self, num_samples: int, intervals: tuple[tuple[float, float], ...], window: int) -> None:
        self.intervals = intervals
        self.window = window
        self.history = torch.full((window, num_samples), float("nan"))  # ring buffer of finished epochs
        self.current = torch.full((num_samples,), float("nan"))  # the epoch being recorded
        self.epochs_done = 0
        self.eligible = self._warmup_labels()

    @property
    def num_samples(self) -> int:
        return self.current.numel()

    @property
    def num_widths(self) -> int:
        return len(self.intervals)

    @property
    def warming_up(self) -> bool:
        """True until `window` epochs are recorded: every sample then trains at full width."""
        return self.epochs_done < self.window

    def _warmup_labels(self) -> torch.Tensor:
        labels = torch.zeros(self.num_samples, self.num_widths, dtype=torch.bool)
        labels[:, -1] = True
        return labels

    def record(self, indices: torch.Tensor, confidences: torch.Tensor) -> None:
        """Store this epoch's confidences for the given samples (a later record overwrites an earlier one)."""
        self.current[indices.cpu()] = confidences.detach().float().cpu()

    def end_epoch(self) -> None:
        """Close the epoch: push its confidences into the window and recompute every sample's labels."""
        self.history[self.epochs_done % self.window] = self.current
        self.current = torch.full_like(self.current, float("nan"))
        self.epochs_done += 1
        self.eligible = self._warmup_labels() if self.warming_up else self._labels_from_history()

    def _labels_from_history(self) -> torch.Tensor:
        columns = []
        for lo, hi in self.intervals:
            inside = (self.history >= lo) & ((self.history < hi) | ((self.history == 1.0) & (hi == 1.0)))
            columns.append(inside.all(0))  # NaN (a sample not seen in an epoch) is in no interval
        eligible = torch.stack(columns, dim=1)
        eligible[~eligible.any(1), -1] = True  # nothing eligible -> the widest
        return eligible

    def targets(self, indices: torch.Tensor) -> torch.Tensor:
        """Multi-hot router targets (float) for the given samples."""
        return self.eligible[indices.cpu()].float()

    def assign_widths(self, generator: torch.Generator) -> torch.Tensor:
        """Width index per sample for this epoch: one of its eligible widths, chosen at random."""
        return torch.multinomial(self.eligible.float(), 1, generator=generator).squeeze(1)

    def share(self) -> list[float]:
        """Fraction of samples eligible for each width (a multi-hot sample counts for each)."""
        return self.eligible.float().mean(0).tolist()

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {
            "history": self.history.clone(),
            "current": self.current.clone(),
            "epochs_done": torch.tensor(self.epochs_done),
            "eligible": self.eligible.clone(),
        }

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        if (
            tuple(state["history"].shape) != tuple(self.history.shape)
            or state["eligible"].shape[1] != self.num_widths
        ):
            raise SharcsError(
                f"hardness history is for {tuple(state['history'].shape)} (window, samples) and "
                f"{state['eligible'].shape[1]} widths, this run has {tuple(self.history.shape)} "
                f"and {self.num_widths}"
            )
        self.history = state["history"].clone()
        self.current = state["current"].clone()
        self.epochs_done = int(state["epochs_done"])
        self.eligible = state["eligible"].clone()
