"""The data of a run: what the task is (TaskInfo), and its training, held-out and dev examples."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch

from sharcs.data import Examples, TaskSpec, default_metrics, get_task, load_file, load_glue
from sharcs.errors import SharcsError
from sharcs.modeling.pretrained import quiet_transformers
from sharcs.training.options import TrainOptions


@dataclass
class TaskInfo:
    """What later commands need to know about the data a model was trained on.

    `task` is the GLUE task name, or None for user files. `label_list` None means regression.
    """

    task: str | None
    text_columns: tuple[str, ...]
    label_column: str | None
    label_list: tuple[str, ...] | None
    metrics: tuple[str, ...]
    dev_split: str | None
    max_seq_length: int

    @classmethod
    def for_glue(cls, spec: TaskSpec, dev_split: str, max_seq_length: int) -> TaskInfo:
        """The TaskInfo of a GLUE task evaluated on `dev_split`."""
        return cls(
            spec.name,
            spec.text_columns,
            spec.label_column,
            spec.label_list,
            spec.metrics,
            dev_split,
            max_seq_length,
        )

    @property
    def is_regression(self) -> bool:
        return self.label_list is None

    @property
    def num_labels(self) -> int:
        return 1 if self.label_list is None else len(self.label_list)

    @property
    def main_metric(self) -> str:
        return self.metrics[0]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, with a derived "regression" flag."""
        data = asdict(self)
        data["regression"] = self.is_regression
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TaskInfo:
        """TaskInfo from the "task_info" entry of run_config.json."""
        try:
            label_list = data["label_list"]
            return cls(
                task=data["task"],
                text_columns=tuple(data["text_columns"]),
                label_column=data["label_column"],
                label_list=None if label_list is None else tuple(label_list),
                metrics=tuple(data["metrics"]),
                dev_split=data["dev_split"],
                max_seq_length=int(data["max_seq_length"]),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise SharcsError(f"run config: task information is incomplete ({error!r})") from None


@dataclass
class PreparedData:
    """The examples of a training run: trained-on, held-out (for choosing the epoch) and dev (reported)."""

    info: TaskInfo
    train: Examples
    held_out: Examples | None
    dev: Examples


def held_out_split(num_samples: int, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """A seeded random split of range(n) into (train, held-out) indices, each in ascending order."""
    if fraction <= 0.0:
        return list(range(num_samples)), []
    count = max(1, round(num_samples * fraction))
    if count >= num_samples:
        raise SharcsError(
            f"--held-out-fraction {fraction} of {num_samples} training samples leaves nothing to train on"
        )
    order = torch.randperm(num_samples, generator=torch.Generator().manual_seed(seed)).tolist()
    return sorted(order[count:]), sorted(order[:count])


def first_samples(examples: Examples, limit: int | None) -> Examples:
    """The first `limit` examples (all of them when `limit` is None)."""
    return examples if limit is None or limit >= len(examples) else examples.subset(range(limit))


def load_glue_quietly(spec: TaskSpec, split: str, data_dir: str | None) -> Examples:
    """`load_glue` without the hub's retry warnings when the hub is unreachable."""
    with quiet_transformers():
        return load_glue(spec, split, data_dir)


def prepare_data(options: TrainOptions) -> PreparedData:
    """Load the training and dev examples, cap them, and split the held-out slice off the training data."""
    if options.task is not None:
        spec = get_task(options.task)
        train_all = load_glue_quietly(spec, "train", options.data_dir)
        dev_split = spec.dev_splits[0]
        dev = load_glue_quietly(spec, dev_split, options.data_dir)
        info = TaskInfo.for_glue(spec, dev_split, options.max_seq_length)
    else:
        assert options.train_file is not None and options.validation_file is not None
        columns = options.text_columns or ()
        train_all = load_file(
            options.train_file, columns, options.label_column, None, options.regression, options.encoding
        )
        dev = load_file(
            options.validation_file,
            columns,
            options.label_column,
            train_all.label_list,
            options.regression,
            options.encoding,
        )
        info = TaskInfo(
            None,
            tuple(columns),
            options.label_column,
            train_all.label_list,
            default_metrics(options.regression),
            None,
            options.max_seq_length,
        )
    if train_all.labels is None or dev.labels is None:
        raise SharcsError("training and validation data need labels")
    if not info.is_regression and len(info.label_list or ()) < 2:
        raise SharcsError(
            f"{train_all.source}: classification needs at least 2 labels, found {info.label_list}"
        )
    train_all = first_samples(train_all, options.max_train_samples)
    dev = first_samples(dev, options.max_eval_samples)
    train_idx, held_idx = held_out_split(len(train_all), options.held_out_fraction, options.seed)
    held_out = train_all.subset(held_idx) if held_idx else None
    return PreparedData(info, train_all.subset(train_idx), held_out, dev)


def label_range(examples: Examples) -> float:
    """max - min of regression targets (> 0), for the regression confidence 1 - |error| / range."""
    values = [float(v) for v in examples.labels or ()]
    spread = max(values) - min(values) if values else 0.0
    if spread <= 0:
        raise SharcsError(f"{examples.source}: every regression target is the same; nothing to learn")
    return spread
