"""Data: the GLUE task table, loading GLUE and user files, tokenization and metrics."""

from sharcs.data.examples import Examples, validate_texts
from sharcs.data.files import load_file
from sharcs.data.glue import load_glue
from sharcs.data.metrics import METRIC_NAMES, compute_metrics, default_metrics
from sharcs.data.tasks import GLUE_TASKS, TaskSpec, get_task
from sharcs.data.tokenize import log_truncation, tokenize, tokenize_counted, truncation_line

__all__ = [
    "GLUE_TASKS",
    "METRIC_NAMES",
    "Examples",
    "TaskSpec",
    "compute_metrics",
    "default_metrics",
    "get_task",
    "load_file",
    "load_glue",
    "log_truncation",
    "tokenize",
    "tokenize_counted",
    "truncation_line",
    "validate_texts",
]
