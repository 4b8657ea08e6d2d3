"""Training checkpoints: what `Trainer` saves to resume a run to the same weights, never pickled.

A checkpoint is a numbered folder `checkpoint-<epoch>-<step>` in the output folder (sharcs.storage.files:
written aside and renamed in, so every such folder is complete; the newest is the one resumed):

    model/                      the model (save_pretrained)
    trainer_state.json          position, history, selection state, optimizer settings and scalars
    trainer_state.safetensors   optimizer moments, the method's state (e.g. hardness history), RNG

Loading reads only JSON and safetensors and checks them against each other and against the run; the
pickle of earlier versions (trainer_state.pt) is refused unread, as unpickling can run code.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from sharcs.errors import SharcsError, first_line
from sharcs.storage.files import newest_numbered, numbered_directory, remove_numbered, remove_tree

CHECKPOINT_DIR = "checkpoint"
BEST_DIR = "best"
STATE_NAME = "trainer_state.json"  # positions, history, optimizer settings: JSON, never pickle
TENSORS_NAME = "trainer_state.safetensors"  # optimizer moments, the method's state, RNG state
OLD_STATE_NAME = "trainer_state.pt"  # the pickle earlier versions wrote: refused, never loaded
STATE_FORMAT = 1
# the training hooks' tensors (sharcs.training.hooks); "labeler" is the name of SHARCS's hardness
# labeler, the first method with a state, kept so that checkpoints of earlier versions still resume
METHOD_PREFIX = "labeler."
METHOD_FLAG = "labeler"


def write_checkpoint(
    output_dir: Path,
    position: tuple[int, int],
    model: Any,
    state: dict[str, Any],
    tensors: dict[str, torch.Tensor],
) -> None:
    """Save `model`, the JSON `state` and the `tensors` as the checkpoint of `position` (epoch, step)."""
    with numbered_directory(output_dir / CHECKPOINT_DIR, position) as scratch:
        model.save_pretrained(scratch / "model")
        cpu = {name: t.detach().cpu().contiguous() for name, t in tensors.items()}
        save_file(cpu, str(scratch / TENSORS_NAME))
        (scratch / STATE_NAME).write_text(json.dumps(state, indent=1) + "\n", encoding="utf-8")


def find_checkpoint(output_dir: str | Path) -> Path | None:
    """The newest checkpoint folder in `output_dir`, or None."""
    return newest_numbered(Path(output_dir) / CHECKPOINT_DIR)


def remove_checkpoints(output_dir: str | Path) -> None:
    """Delete every checkpoint in `output_dir` (a run started afresh must not resume them)."""
    remove_numbered(Path(output_dir) / CHECKPOINT_DIR)


def remove_training_state(output_dir: str | Path) -> None:
    """Delete what only training needs, every checkpoint and best/: a finished run keeps model/."""
    remove_checkpoints(output_dir)
    remove_tree(Path(output_dir) / BEST_DIR)


def old_format_error(path: Path) -> SharcsError:
    """The refusal of a trainer_state.pt, which is never unpickled."""
    return SharcsError(
        f"{path} is in the old pickle format, which sharcs no longer loads because it can run code; "
        "start the run again with --overwrite"
    )


def read_trainer_state(
    folder: Path, method_tensors: Iterable[str]
) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """trainer_state.json and trainer_state.safetensors of a checkpoint folder, checked for their
    structure and against each other; anything missing, unreadable or inconsistent is a SharcsError
    naming the file. `method_tensors`: the names of the tensors this run's training hooks keep."""
    path = folder / STATE_NAME
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise SharcsError(f"{path} is corrupt or unreadable ({first_line(error)})") from None
    problem = _state_problem(state)
    if problem is not None:
        raise SharcsError(f"{path} is corrupt ({problem})")
    where = folder / TENSORS_NAME
    if not where.is_file():
        raise SharcsError(f"{where} is missing: the checkpoint is incomplete")
    try:
        tensors = load_file(str(where))
    except (SafetensorError, OSError, ValueError, RuntimeError) as error:
        raise SharcsError(f"{where} is corrupt or unreadable ({first_line(error)})") from None
    expected = {"torch_rng"}
    if state[METHOD_FLAG]:
        names = set(method_tensors)  # none: this run keeps no state, and checked_method_state says so
        saved = {k for k in tensors if k.startswith(METHOD_PREFIX)}
        expected |= {METHOD_PREFIX + n for n in names} if names else saved
    for key, entry in state["optimizer"]["state"].items():
        expected |= {f"optimizer.state.{key}.{name}" for name in entry["tensors"]}
    missing, unexpected = sorted(expected - set(tensors)), sorted(set(tensors) - expected)
    if missing or unexpected:
        raise SharcsError(
            f"{where} does not match {STATE_NAME}: {len(missing)} missing and {len(unexpected)} "
            f"unexpected tensors (first: {(missing or unexpected)[0]})"
        )
    rng = tensors["torch_rng"]
    if rng.dtype != torch.uint8 or rng.dim() != 1:
        raise SharcsError(
            f"{where}: torch_rng is {rng.dtype} {tuple(rng.shape)}, not a random generator state"
        )
    return state, tensors


def checked_optimizer_state(
    optimizer: torch.optim.Optimizer, state: dict[str, Any], tensors: dict[str, torch.Tensor], folder: Path
) -> dict[str, Any]:
    """The optimizer state_dict of a checkpoint, checked against `optimizer`'s parameters."""
    saved = state["optimizer"]
    where = folder / TENSORS_NAME
    sizes = [len(group["params"]) for group in saved["param_groups"]]
    expected = [len(group["params"]) for group in optimizer.param_groups]
    if sizes != expected:
        raise SharcsError(
            f"{folder / STATE_NAME}: the optimizer has parameter groups of {sizes} tensors, "
            f"this run {expected}"
        )
    ids = [i for group in saved["param_groups"] for i in group["params"]]
    params = [p for group in optimizer.param_groups for p in group["params"]]
    if ids != list(range(len(params))):
        raise SharcsError(
            f"{folder / STATE_NAME}: the optimizer's parameter ids are not 0..{len(params) - 1}"
        )
    per_param: dict[int, dict[str, Any]] = {}
    for key, entry in saved["state"].items():
        index = int(key)
        if index >= len(params):
            raise SharcsError(
                f"{folder / STATE_NAME}: optimizer state for parameter {index} of {len(params)}"
            )
        values = dict(entry["scalars"])
        for name in entry["tensors"]:
            tensor = tensors[f"optimizer.state.{key}.{name}"]
            shape = tuple(params[index].shape)
            if not tensor.is_floating_point() or (tensor.dim() > 0 and tuple(tensor.shape) != shape):
                raise SharcsError(
                    f"{where}: optimizer.state.{key}.{name} is {tensor.dtype} {tuple(tensor.shape)}, "
                    f"its parameter {shape}"
                )
            values[name] = tensor
        per_param[index] = values
    groups = [
        {k: tuple(v) if isinstance(v, list) and k != "params" else v for k, v in group.items()}
        for group in saved["param_groups"]
    ]  # JSON turned tuples (AdamW's betas) into lists
    return {"state": per_param, "param_groups": groups}


def checked_method_state(
    state: dict[str, Any], tensors: dict[str, torch.Tensor], folder: Path, live: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """The training hooks' tensors of a checkpoint, checked against this run's (`live`)."""
    if state[METHOD_FLAG] != bool(live):
        has = "holds hardness labels" if state[METHOD_FLAG] else "holds no hardness labels"
        raise SharcsError(f"{folder / STATE_NAME} {has}, unlike this run's model")
    saved = {name: tensors[METHOD_PREFIX + name] for name in live}
    for name, tensor in saved.items():
        want = live[name]
        if tensor.dtype != want.dtype or tensor.shape != want.shape:
            raise SharcsError(
                f"{folder / TENSORS_NAME}: hardness history {METHOD_PREFIX}{name} is {tensor.dtype} "
                f"{tuple(tensor.shape)}, this run needs {want.dtype} {tuple(want.shape)} "
                "(another training set, window or widths?)"
            )
    return saved


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _state_problem(state: object) -> str | None:
    """What is wrong with the structure of a parsed trainer_state.json, or None."""
    if not isinstance(state, dict):
        return "not a JSON object"
    if state.get("format") != STATE_FORMAT:
        return f"format {state.get('format')!r}, expected {STATE_FORMAT}"
    for name in ("epoch", "step_in_epoch"):
        if not _is_count(state.get(name)):
            return f"{name} is {state.get(name)!r}, not a count"
    sums = state.get("epoch_sums")
    if not isinstance(sums, dict) or not _is_number(sums.get("loss")) or not _is_count(sums.get("steps")):
        return "epoch_sums is not {loss, steps}"
    history = state.get("history")
    if not isinstance(history, list) or not all(isinstance(record, dict) for record in history):
        return "history is not a list of records"
    kept = state.get("kept")
    if not _is_number(state.get("best_value")) or not (
        isinstance(kept, list) and len(kept) == 2 and all(_is_number(v) for v in kept)
    ):
        return "best_value or kept is not a number"
    if not isinstance(state.get(METHOD_FLAG), bool):
        return f"{METHOD_FLAG} is not true or false"
    optimizer = state.get("optimizer")
    if not isinstance(optimizer, dict):
        return "no optimizer state"
    groups, per_param = optimizer.get("param_groups"), optimizer.get("state")
    if not isinstance(groups, list) or not isinstance(per_param, dict):
        return "no optimizer param_groups or state"
    for group in groups:
        if not isinstance(group, dict) or not isinstance(group.get("params"), list):
            return "an optimizer param group without params"
        if not all(_is_count(i) for i in group["params"]):
            return "an optimizer param group with bad parameter ids"
    for key, entry in per_param.items():
        if not key.isdigit() or not isinstance(entry, dict):
            return f"bad optimizer state for parameter {key!r}"
        names, scalars = entry.get("tensors"), entry.get("scalars")
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            return f"bad optimizer tensor names for parameter {key}"
        if not isinstance(scalars, dict) or any(name in scalars for name in names):
            return f"bad optimizer scalars for parameter {key}"
    return None
