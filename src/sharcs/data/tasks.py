"""The GLUE task table: where each task's files live, its columns, labels and metrics."""

from __future__ import annotations

from dataclasses import dataclass

from sharcs.errors import SharcsError


@dataclass(frozen=True)
class TaskSpec:
    """One GLUE task: its folder, TSV columns, label strings, metrics and dev splits."""

    name: str
    glue_dir: str
    text_columns: tuple[str, ...]
    label_column: str
    label_list: tuple[str, ...] | None
    metrics: tuple[str, ...]
    dev_splits: tuple[str, ...]
    hub_name: str

    @property
    def is_regression(self) -> bool:
        """True for a regression task (STS-B), which has no label list."""
        return self.label_list is None


_BINARY = ("0", "1")
_ENTAILMENT = ("entailment", "not_entailment")
_NLI = ("contradiction", "entailment", "neutral")
_ACC = ("accuracy",)
_F1_ACC = ("f1", "accuracy")
_PAIR = ("sentence1", "sentence2")
_DEV = ("dev",)

GLUE_TASKS: dict[str, TaskSpec] = {
    spec.name: spec
    for spec in (
        TaskSpec("cola", "CoLA", ("sentence",), "label", _BINARY, ("matthews_correlation",), _DEV, "cola"),
        TaskSpec("sst2", "SST-2", ("sentence",), "label", _BINARY, _ACC, _DEV, "sst2"),
        TaskSpec("mrpc", "MRPC", ("#1 String", "#2 String"), "Quality", _BINARY, _F1_ACC, _DEV, "mrpc"),
        TaskSpec("stsb", "STS-B", _PAIR, "score", None, ("pearson", "spearmanr"), _DEV, "stsb"),
        TaskSpec("qqp", "QQP", ("question1", "question2"), "is_duplicate", _BINARY, _F1_ACC, _DEV, "qqp"),
        TaskSpec("mnli", "MNLI", _PAIR, "gold_label", _NLI, _ACC, ("dev_matched", "dev_mismatched"), "mnli"),
        TaskSpec("qnli", "QNLI", ("question", "sentence"), "label", _ENTAILMENT, _ACC, _DEV, "qnli"),
        TaskSpec("rte", "RTE", _PAIR, "label", _ENTAILMENT, _ACC, _DEV, "rte"),
    )
}


def get_task(name: str) -> TaskSpec:
    """Look a GLUE task up by name, ignoring case and dashes/underscores ("SST-2", "sst2", "sts_b")."""
    key = name.strip().lower().replace("-", "").replace("_", "")
    if key not in GLUE_TASKS:
        raise SharcsError(f"unknown GLUE task {name!r}; known tasks: {', '.join(GLUE_TASKS)}")
    return GLUE_TASKS[key]
