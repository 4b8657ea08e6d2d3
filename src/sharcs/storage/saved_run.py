"""A finished run loaded back: model, tokenizer and task information from an output or model folder."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sharcs.data.prepare import TaskInfo
from sharcs.errors import SharcsError
from sharcs.export.manifest import is_export
from sharcs.methods.load import load_model
from sharcs.modeling.adaptive import AdaptiveModel
from sharcs.modeling.pretrained import load_tokenizer
from sharcs.storage.run_folder import find_model_dir, read_run_config
from sharcs.training.options import pick_device

TOKENIZER_FILE = "tokenizer_config.json"


@dataclass
class Run:
    """A trained model loaded from an output folder (or a bare model folder), ready to use."""

    model: AdaptiveModel
    tokenizer: Any
    info: TaskInfo | None
    model_dir: Path
    run_dir: Path | None
    run_config: dict[str, Any] = field(default_factory=dict)

    @property
    def label_list(self) -> tuple[str, ...] | None:
        """The label strings, in logit order (None for regression)."""
        return self.info.label_list if self.info is not None else model_label_list(self.model)

    @property
    def max_seq_length(self) -> int:
        """The truncation length the model was trained with (128 for a bare model folder)."""
        return self.info.max_seq_length if self.info is not None else 128


def model_label_list(model: AdaptiveModel) -> tuple[str, ...] | None:
    """The label strings stored in the model's config (None for regression)."""
    if model.num_labels == 1:
        return None
    id2label = model.base.config.id2label
    return tuple(str(id2label[i]) for i in range(model.num_labels))


def load_run(directory: str | Path, device: str = "auto") -> Run:
    """Load the model, tokenizer and task information of an output folder, a model folder or an ONNX
    export folder (`sharcs export`, run on ONNX Runtime)."""
    if is_export(directory):
        return load_export(directory, device)
    model_dir, run_dir = find_model_dir(directory)
    run_config = read_run_config(run_dir) if run_dir is not None else {}
    info = TaskInfo.from_dict(run_config["task_info"]) if "task_info" in run_config else None
    model = load_model(model_dir).to(pick_device(device))
    for candidate in (run_dir, model_dir):
        if candidate is not None and (candidate / TOKENIZER_FILE).is_file():
            tokenizer = load_tokenizer(candidate)
            break
    else:
        raise SharcsError(f"no tokenizer found in {run_dir or model_dir} (no {TOKENIZER_FILE})")
    return Run(model, tokenizer, info, model_dir, run_dir, run_config)


def load_export(directory: str | Path, device: str = "auto", threads: int = 0) -> Run:
    """An export folder as a Run whose model runs on ONNX Runtime (`threads`: its intra-op threads)."""
    from sharcs.export.runtime import OnnxSharcsModel  # onnxruntime is an optional extra

    if device not in ("auto", "cpu"):
        raise SharcsError(f"an ONNX export runs on the CPU, not {device}", option="device")
    model = OnnxSharcsModel(directory, threads)
    facts = model.manifest.run
    info = TaskInfo.from_dict(facts["task_info"]) if "task_info" in facts else None
    return Run(model, load_tokenizer(model.folder), info, model.folder, None, facts)
