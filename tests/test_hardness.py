"""HardnessLabeler: window, intervals, multi-hot labels, fallback, warm-up, state round trip."""

from __future__ import annotations

import pytest
import torch

from sharcs.errors import SharcsError
from sharcs.methods.sharcs.config import SharcsConfig, intervals_from_thresholds
from sharcs.methods.sharcs.hardness import HardnessLabeler, confidence

TWO = intervals_from_thresholds((0.6,))  # 0.25 <- [0.6, 1], 1.0 <- [0, 0.6)


def run_epochs(labeler: HardnessLabeler, epochs: list[list[float]]) -> None:
    for values in epochs:
        labeler.record(torch.arange(len(values)), torch.tensor(values))
        labeler.end_epoch()


def test_thresholds_become_intervals():
    assert TWO == ((0.6, 1.0), (0.0, 0.6))
    assert intervals_from_thresholds((0.9, 0.5)) == ((0.9, 1.0), (0.5, 0.9), (0.0, 0.5))


def test_warm_up_epochs_train_everything_at_full_width():
    labeler = HardnessLabeler(3, TWO, window=2)
    assert labeler.targets(torch.arange(3)).tolist() == [[0, 1]] * 3
    run_epochs(labeler, [[0.99, 0.99, 0.1]])
    assert labeler.warming_up
    assert labeler.targets(torch.arange(3)).tolist() == [[0, 1]] * 3
    run_epochs(labeler, [[0.99, 0.5, 0.1]])
    assert not labeler.warming_up
    assert labeler.targets(torch.arange(3)).tolist() == [[1, 0], [0, 1], [0, 1]]


def test_every_value_in_the_window_must_lie_in_the_interval():
    labeler = HardnessLabeler(2, TWO, window=2)
    run_epochs(labeler, [[0.9, 0.9], [0.9, 0.3], [0.9, 0.9]])
    # sample 1: window is (0.3, 0.9) -> not all >= 0.6 -> full width; the 0.3 leaves after one more epoch
    assert labeler.targets(torch.arange(2)).tolist() == [[1, 0], [0, 1]]
    run_epochs(labeler, [[0.9, 0.95]])
    assert labeler.targets(torch.arange(2)).tolist() == [[1, 0], [1, 0]]


def test_interval_edges():
    labeler = HardnessLabeler(4, TWO, window=1)
    run_epochs(labeler, [[0.6, 0.5999, 1.0, 0.0]])
    assert labeler.targets(torch.arange(4)).tolist() == [[1, 0], [0, 1], [1, 0], [0, 1]]


def test_overlapping_intervals_give_multi_hot_labels_and_random_choice():
    labeler = HardnessLabeler(400, ((0.5, 1.0), (0.0, 1.0)), window=1)
    run_epochs(labeler, [[0.8] * 200 + [0.2] * 200])
    targets = labeler.targets(torch.arange(400))
    assert targets[:200].tolist() == [[1, 1]] * 200 and targets[200:].tolist() == [[0, 1]] * 200
    chosen = labeler.assign_widths(torch.Generator().manual_seed(0))
    assert set(chosen[:200].tolist()) == {0, 1} and set(chosen[200:].tolist()) == {1}
    assert 60 < int((chosen[:200] == 0).sum()) < 140


def test_no_eligible_width_falls_back_to_the_widest():
    three = ((0.9, 1.0), (0.5, 0.9), (0.0, 0.5))
    labeler = HardnessLabeler(3, three, window=2)
    run_epochs(labeler, [[0.95, 0.95, 0.95], [0.95, 0.6, 0.2]])
    # sample 1 moves between the first two intervals, sample 2 across all: neither fits one interval
    assert labeler.targets(torch.arange(3)).tolist() == [[1, 0, 0], [0, 0, 1], [0, 0, 1]]


def test_unseen_samples_take_the_widest():
    labeler = HardnessLabeler(3, TWO, window=1)
    labeler.record(torch.tensor([0]), torch.tensor([0.99]))
    labeler.end_epoch()
    assert labeler.targets(torch.arange(3)).tolist() == [[1, 0], [0, 1], [0, 1]]


def test_state_round_trip_is_exact():
    labeler = HardnessLabeler(5, TWO, window=2)
    run_epochs(labeler, [[0.1, 0.7, 0.9, 0.65, 0.2], [0.8, 0.7, 0.9, 0.3, 0.2]])
    labeler.record(torch.tensor([1, 3]), torch.tensor([0.5, 0.99]))
    copy = HardnessLabeler(5, TWO, window=2)
    copy.load_state_dict(labeler.state_dict())
    for a, b in zip(labeler.state_dict().values(), copy.state_dict().values(), strict=True):
        assert (
            torch.equal(a, b)
            or (a.isnan() == b.isnan()).all()
            and torch.equal(a.nan_to_num(), b.nan_to_num())
        )
    run_epochs(labeler, [[0.9] * 5])
    run_epochs(copy, [[0.9] * 5])
    assert torch.equal(labeler.targets(torch.arange(5)), copy.targets(torch.arange(5)))
    with pytest.raises(SharcsError, match="hardness history"):
        HardnessLabeler(6, TWO, window=2).load_state_dict(labeler.state_dict())


def test_confidence_for_classification_and_regression():
    logits = torch.tensor([[2.0, 0.0], [0.0, 2.0]])
    conf = confidence(logits, torch.tensor([0, 0]))
    assert torch.allclose(conf, torch.tensor([0.8808, 0.1192]), atol=1e-4)
    reg = confidence(torch.tensor([[3.0], [0.0], [5.0]]), torch.tensor([2.0, 5.0, 5.0]), label_range=5.0)
    assert torch.allclose(reg, torch.tensor([0.8, 0.0, 1.0]))
    with pytest.raises(SharcsError, match="label_range"):
        confidence(torch.tensor([[1.0]]), torch.tensor([1.0]))


def test_config_defaults_use_the_threshold():
    assert SharcsConfig(threshold=0.7).confidence_intervals == ((0.7, 1.0), (0.0, 0.7))
