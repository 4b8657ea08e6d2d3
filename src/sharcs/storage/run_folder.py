"""What a `sharcs train` output folder holds, and finding its parts; imports nothing heavy.

run_config.json      the options and task of the run (TrainOptions, TaskInfo)
model/               the trained model (sharcs_config.json, config.json, model.safetensors)
results.json, history.json, train.log, checkpoint-E-S/ (while training)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sharcs.errors import SharcsError, first_line

RUN_CONFIG = "run_config.json"
MODEL_DIR = "model"
MODEL_CONFIG = (
    "sharcs_config.json"  # the method's config in a model folder (sharcs.modeling.adaptive.CONFIG_NAME)
)


def read_run_config(run_dir: str | Path) -> dict[str, Any]:
    """run_config.json of an output folder; missing or unreadable is a SharcsError."""
    path = Path(run_dir) / RUN_CONFIG
    if not path.is_file():
        raise SharcsError(f"{path} does not exist (is {run_dir} a sharcs train output folder?)")
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise SharcsError(f"{path} is unreadable: {first_line(error)}") from None
    if not isinstance(data, dict) or not isinstance(data.get("options"), dict):
        raise SharcsError(f"{path} is not a sharcs run config")
    return data


def find_model_dir(directory: str | Path) -> tuple[Path, Path | None]:
    """(model folder, output folder or None) for an output folder, its model/ or a bare model folder."""
    path = Path(directory).expanduser()
    if not path.is_dir():
        raise SharcsError(f"{path}: no such folder")
    if (path / RUN_CONFIG).is_file():
        model_dir = path / MODEL_DIR
        if not (model_dir / MODEL_CONFIG).is_file():
            raise SharcsError(
                f"{path} holds no finished model ({model_dir} is missing); "
                f"finish the run with: sharcs train --output-dir {path} --resume"
            )
        return model_dir, path
    if (path / MODEL_CONFIG).is_file():
        return path, path.parent if (path.parent / RUN_CONFIG).is_file() else None
    raise SharcsError(
        f"{path} is neither a sharcs output folder (no {RUN_CONFIG}) nor a model folder (no {MODEL_CONFIG})"
    )
