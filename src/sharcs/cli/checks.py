"""Checks of a `sharcs` command line that need neither torch nor transformers nor datasets.

`sharcs.cli.main` runs them before the heavy imports, so a bad option, a missing file or a folder that is
not a run answers in about a second:

    check_train(options, resume=False, overwrite=False)   # options, data files, GLUE folder, model, output
    check_evaluate(args); check_predict(args); check_bench(args); check_curve(args); check_export(args)

Each raises a SharcsError naming the option at fault. The commands check again what only the loaded
model or data can tell (a width the model lacks, a column missing from a file, ...).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import os
from pathlib import Path
from typing import Any

from sharcs.errors import SharcsError, first_line, option_name
from sharcs.export.manifest import ONNX_PACKAGES, ExportManifest, is_export
from sharcs.methods.registry import METHODS, SHARCS_MODEL
from sharcs.methods.sharcs.config import check_budget, check_max_drop
from sharcs.modeling.packaged import resolve_model_path
from sharcs.storage.files import newest_numbered
from sharcs.storage.run_folder import MODEL_CONFIG, RUN_CONFIG, find_model_dir, read_run_config
from sharcs.training.options import (
    FREE_ON_RESUME,
    TrainOptions,
    load_train_options,
    parse_floats,
)
from sharcs.training.stages import FINETUNE_DIR

CHECKPOINT_DIR = "checkpoint"  # = sharcs.training.checkpoints.CHECKPOINT_DIR
MODEL_FILES = ("config.json", "model.safetensors")  # besides sharcs_config.json (sharcs.modeling.adaptive)
GLUE_DIR_ENV = "SHARCS_GLUE_DIR"  # = sharcs.data.glue.GLUE_DIR_ENV
EXPORTABLE = "sharcs"  # the saved method name (SharcsModel.method) of the models sharcs export takes


# ---------------------------------------------------------------------------------------- pieces
def at_least(value: int | float | None, option: str, minimum: int) -> None:
    """SharcsError unless `value` is None or >= `minimum`."""
    if value is not None and not value >= minimum:
        raise SharcsError(f"{option}: must be at least {minimum}, got {value}")


def in_unit_interval(value: float | None, option: str) -> None:
    """SharcsError unless `value` is None or lies in [0, 1]."""
    if value is not None and not 0.0 <= value <= 1.0:
        raise SharcsError(f"{option}: must lie in [0, 1], got {value}")


def check_width_value(value: float | None, option: str) -> None:
    """SharcsError unless `value` is None or a width in (0, 1] (whether the model has it is checked later)."""
    if value is not None and not 0.0 < value <= 1.0:
        raise SharcsError(f"{option}: a width must lie in (0, 1], got {value}")


def check_data_file(path: str | Path, option: str) -> Path:
    """`path` must be an existing, readable file."""
    file = Path(path).expanduser()
    if not file.exists():
        raise SharcsError(f"{option}: data file not found: {file}")
    if not file.is_file():
        raise SharcsError(f"{option}: data file {file} is not a file")
    if not os.access(file, os.R_OK):
        raise SharcsError(f"{option}: cannot read {file}: permission denied")
    return file


def check_glue_dir(task: str, data_dir: str | Path | None, option: str = "--data-dir") -> None:
    """`task` must be a GLUE task and the GLUE folder (`data_dir`, else $SHARCS_GLUE_DIR; neither: the
    hub, not checked here) must hold the task's folder."""
    from sharcs.data.tasks import get_task  # no torch, no datasets

    spec = get_task(task)
    if data_dir is None and os.environ.get(GLUE_DIR_ENV, "").strip():
        data_dir, option = os.environ[GLUE_DIR_ENV].strip(), f"${GLUE_DIR_ENV}"
    if data_dir is None:
        return
    folder = Path(data_dir).expanduser()
    if not folder.is_dir():
        raise SharcsError(f"{option}: GLUE data directory {folder} does not exist")
    task_dir = folder / spec.glue_dir
    if not task_dir.is_dir():
        raise SharcsError(f"{option}: GLUE folder for {spec.name} not found: {task_dir} (in {folder})")


def check_run_dir(directory: str | Path, need_run_dir: bool = False) -> dict[str, Any]:
    """An output folder (or its model/, or with `need_run_dir` False a bare model folder) that holds a
    finished model, or an export folder; returns its run config ({} for a bare model folder; an
    export's task information)."""
    if is_export(directory):
        return ExportManifest.load(Path(directory).expanduser()).run
    model_dir, run_dir = find_model_dir(directory)
    for name in MODEL_FILES:
        if not (model_dir / name).is_file():
            raise SharcsError(f"{model_dir} is not a sharcs model folder: {name} is missing")
    if run_dir is None:
        if need_run_dir:
            raise SharcsError(
                f"{directory} is a bare model folder; this command measures on the run's own dev data, "
                f"so give the train output folder (the one with {RUN_CONFIG})"
            )
        return {}
    return read_run_config(run_dir)


def _nearest_existing(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path(".")


def check_writable_folder(path: str | Path, option: str) -> None:
    """`path` must be a folder, or a path where one can be created."""
    folder = Path(path).expanduser()
    if folder.exists() and not folder.is_dir():
        raise SharcsError(f"{option} {folder} exists and is not a folder")
    nearest = _nearest_existing(folder.absolute())
    if not nearest.is_dir():
        raise SharcsError(f"{option} {folder}: {nearest} is a file, not a folder")
    if not os.access(nearest, os.W_OK | os.X_OK):
        raise SharcsError(f"{option} {folder}: {nearest} is not writable")


def check_writable_file(path: str | Path, option: str) -> None:
    """`path` must be a file name (not a folder) in a folder that exists or can be created."""
    file = Path(path).expanduser()
    if file.is_dir():
        raise SharcsError(f"{option} {file} is a folder; give a file name")
    check_writable_folder(file.absolute().parent, option)


# ----------------------------------------------------------------------------------------- train
def check_resumable(saved: TrainOptions, options: TrainOptions, continuing: bool = False) -> None:
    """On resume (or `continuing` with --continue) every option must equal the saved one, but for
    FREE_ON_RESUME (the device, the output folder, --keep-checkpoint)."""
    for f in dataclasses.fields(TrainOptions):
        if f.name in FREE_ON_RESUME:
            continue
        old, new = getattr(saved, f.name), getattr(options, f.name)
        if old != new and continuing:
            raise SharcsError(
                f"{options.output_dir} holds a run with other settings: {option_name(f.name)} is {new!r} "
                f"here and {old!r} in its {RUN_CONFIG}; pass --overwrite to replace that run, or choose "
                "another --output-dir"
            )
        if old != new:
            raise SharcsError(
                f"--resume continues with the saved settings, but {option_name(f.name)} is {new!r} "
                f"here and {old!r} in {Path(options.output_dir) / RUN_CONFIG}"
            )


def check_run_to_resume(out: Path) -> None:
    """--resume needs the folder's run_config.json, which a staged run writes only in its stage 2."""
    if not (out / RUN_CONFIG).is_file() and (out / FINETUNE_DIR / RUN_CONFIG).is_file():
        raise SharcsError(
            f"{out} stopped in its fine-tune stage ({out / FINETUNE_DIR}): rerun the same command with "
            "--continue instead of --resume, which resumes that stage"
        )
    if not (out / RUN_CONFIG).is_file():
        raise SharcsError(f"nothing to resume: {out / RUN_CONFIG} does not exist")


def check_train(options: TrainOptions, resume: bool = False, overwrite: bool = False) -> None:
    """Everything about a `sharcs train` command line that needs no torch: the options (all but the
    device), the data files, the GLUE folder, a local --model and the output folder."""
    options.validate(check_device=False)
    for name in ("train_file", "validation_file"):
        value = getattr(options, name)
        if value is not None:
            check_data_file(value, option_name(name))
    if options.task is not None:
        check_glue_dir(options.task, options.data_dir)
    elif options.data_dir is not None and not Path(options.data_dir).expanduser().is_dir():
        raise SharcsError(f"--data-dir: GLUE data directory {options.data_dir} does not exist")
    source = Path(resolve_model_path(options.model)).expanduser()
    out = Path(options.output_dir).expanduser()
    if source.exists() and out.resolve() in (source.resolve(), *source.resolve().parents):
        raise SharcsError(f"--model {options.model} is inside --output-dir {out}: the run would overwrite it")
    if resume:
        check_run_to_resume(out)
        check_resumable(load_train_options(out), options)
        if newest_numbered(out / CHECKPOINT_DIR) is None and (out / "results.json").is_file():
            raise SharcsError(
                f"nothing to resume: {out} holds a finished run, whose checkpoint was deleted at the end "
                "(--keep-checkpoint keeps it); pass --overwrite to train it again"
            )
        if newest_numbered(out / CHECKPOINT_DIR) is None:
            raise SharcsError(f"nothing to resume: {out} holds no {CHECKPOINT_DIR}-E-S/ folder")
    elif (out / RUN_CONFIG).exists() and not overwrite:
        raise SharcsError(f"{out} already holds a run; continue it with --resume, or pass --overwrite")
    check_writable_folder(out, "--output-dir")


# ------------------------------------------------------------------------------ using a trained run
def _check_inference_options(args: argparse.Namespace) -> None:
    """--batch-size, --tau, --cascade, --flops-budget, --max-drop and --width of evaluate and predict."""
    at_least(args.batch_size, "--batch-size", 1)
    if sum(x is not None for x in (args.tau, args.cascade, args.flops_budget, args.max_drop)) > 1:
        raise SharcsError("give one of --tau, --cascade, --flops-budget and --max-drop")
    routing = (
        ("--cascade", args.cascade),
        ("--flops-budget", args.flops_budget),
        ("--max-drop", args.max_drop),
    )
    for name, value in routing:
        if args.width is not None and value is not None:
            raise SharcsError(f"give --width or {name}, not both")
    check_budget(args.flops_budget)
    check_max_drop(args.max_drop)
    in_unit_interval(args.tau, "--tau")
    in_unit_interval(args.cascade, "--cascade")
    check_width_value(args.width, "--width")


def check_evaluate(args: argparse.Namespace) -> None:
    """`sharcs evaluate`: the run folder, the options' ranges and the data to evaluate on."""
    config = check_run_dir(args.dir)
    _check_inference_options(args)
    at_least(args.max_eval_samples, "--max-eval-samples", 1)
    at_least(args.max_seq_length, "--max-seq-length", 1)
    if args.task is not None and args.validation_file is not None:
        raise SharcsError("give --task or --validation-file, not both")
    saved = config.get("task_info") or {}
    paths = config.get("paths") or {}
    if args.validation_file is not None:
        check_data_file(args.validation_file, "--validation-file")
        return
    task = args.task or saved.get("task")
    if task is None and saved and paths.get("validation_file"):  # a run trained on files
        check_data_file(paths["validation_file"], "the run's validation file (pass --validation-file FILE)")
    elif task is not None:
        if args.data_dir is not None:
            check_glue_dir(task, args.data_dir)
        else:
            check_glue_dir(task, paths.get("data_dir"), "the run's --data-dir (pass --data-dir DIR)")


def check_predict(args: argparse.Namespace) -> None:
    """`sharcs predict`: the run folder, the options' ranges and --file."""
    check_run_dir(args.dir)
    _check_inference_options(args)
    if args.file is not None and args.texts:
        raise SharcsError("give texts as arguments or --file FILE, not both")
    if args.file is not None:
        file = Path(args.file).expanduser()
        if not file.is_file() or not os.access(file, os.R_OK):
            reason = "No such file or directory" if not file.exists() else "not a readable file"
            raise SharcsError(f"cannot read --file {args.file}: {reason}")


def batch_sizes(text: str) -> tuple[int, ...]:
    """--batch-sizes "32,128" -> (32, 128): whole numbers of at least 1."""
    values = parse_floats(text, "--batch-sizes")
    if any(v < 1 or v != int(v) for v in values):
        raise SharcsError(f"--batch-sizes: give whole numbers of at least 1, got {text!r}")
    return tuple(int(v) for v in values)


def check_bench(args: argparse.Namespace) -> None:
    """`sharcs bench`: the run folder, the numbers and --out."""
    check_run_dir(args.dir, need_run_dir=True)
    at_least(args.threads, "--threads", 0)
    at_least(args.latency_samples, "--latency-samples", 1)
    at_least(args.repeats, "--repeats", 1)
    at_least(args.max_eval_samples, "--max-eval-samples", 1)
    batch_sizes(args.batch_sizes)
    widths = parse_floats(args.widths, "--widths") if args.widths else ()
    for width in widths:
        check_width_value(width, "--widths")
    if widths and args.cascade is not None:
        raise SharcsError("give --widths or --cascade, not both")
    if sum(x is not None for x in (args.cascade, args.flops_budget, args.max_drop)) > 1:
        raise SharcsError("give one of --cascade, --flops-budget and --max-drop")
    check_budget(args.flops_budget)
    check_max_drop(args.max_drop)
    in_unit_interval(args.cascade, "--cascade")
    if args.out:
        check_writable_file(args.out, "--out")


def check_export(args: argparse.Namespace) -> None:
    """`sharcs export`: a finished SHARCS-family model, a free (or --overwrite) --out, the ONNX extra."""
    check_run_dir(args.dir)
    if is_export(args.dir):
        raise SharcsError(f"{args.dir} is an export already; export from the train output folder")
    model_dir, _ = find_model_dir(args.dir)
    method = _saved_method(model_dir)
    if method != EXPORTABLE:
        family = ", ".join(m.name for m in METHODS.values() if m.model == SHARCS_MODEL)
        raise SharcsError(f"{args.dir} holds a {method} model; export supports the SHARCS family ({family})")
    out = Path(args.out).expanduser()
    if out.exists() and not args.overwrite:
        raise SharcsError(f"{out} exists; pass --overwrite to replace it", option="out")
    if out.resolve() in (model_dir.resolve(), *model_dir.resolve().parents):
        raise SharcsError(f"{out} would replace the run being exported", option="out")
    check_writable_folder(out, "--out")
    missing = [name for name in ONNX_PACKAGES if importlib.util.find_spec(name) is None]
    if missing:
        raise SharcsError(f"export needs {', '.join(missing)}: pip install 'sharcs[onnx]' (or make install)")


def _saved_method(model_dir: Path) -> str:
    try:
        data = json.loads((model_dir / MODEL_CONFIG).read_text())
    except (OSError, ValueError) as error:
        raise SharcsError(f"{model_dir / MODEL_CONFIG} is unreadable ({first_line(error)})") from None
    return str(data.get("method", "sharcs")) if isinstance(data, dict) else "unknown"


def check_curve(args: argparse.Namespace) -> None:
    """`sharcs curve`: every run folder, the numbers and --out."""
    for directory in args.dirs:
        check_run_dir(directory, need_run_dir=True)
    at_least(args.threads, "--threads", 0)
    at_least(args.batch_size, "--batch-size", 1)
    at_least(args.repeats, "--repeats", 1)
    at_least(args.max_eval_samples, "--max-eval-samples", 1)
    for tau in parse_floats(args.taus, "--taus") if args.taus is not None else ():
        in_unit_interval(tau, "--taus")
    shares = parse_floats(args.cascade_shares, "--cascade-shares") if args.cascade_shares else ()
    if any(not 0.0 <= share <= 1.0 for share in shares):
        raise SharcsError(f"--cascade-shares: each share must lie in [0, 1], got {list(shares)}")
    check_writable_folder(args.out, "--out")
