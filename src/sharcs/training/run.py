"""`sharcs train` from Python: data, model and trainer put together into an output folder.

    options = TrainOptions(output_dir="runs/sst2", task="sst2", data_dir="glue", epochs=2)
    results = train(options)                      # runs/sst2/{model,results.json,history.json,...}

An output folder holds everything later commands need: run_config.json (the options and the task's
labels, columns and metrics), the tokenizer, and the trained model in model/. Evaluation and
prediction live in `sharcs.measure.evaluation` and `sharcs.inference.stream`.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from datasets import Dataset

from sharcs.cli.checks import check_resumable, check_train
from sharcs.data import log_truncation, tokenize_counted
from sharcs.data.prepare import TaskInfo, label_range, prepare_data
from sharcs.errors import SharcsError, first_line
from sharcs.measure.evaluation import evaluate_model, metrics_text, reduction_text, share_text
from sharcs.methods.load import load_model
from sharcs.methods.sharcs.calibration import calibrate, calibration_line
from sharcs.methods.sharcs.model import has_router, is_cascade
from sharcs.methods.sharcs.router_fit import MIN_FIT_ROWS
from sharcs.modeling.adaptive import AdaptiveModel
from sharcs.modeling.architectures import Layout
from sharcs.modeling.packaged import resolve_model_path
from sharcs.modeling.pretrained import pad_id
from sharcs.modeling.rewire import order_residual_on_data, rewire_on_data
from sharcs.storage.files import atomic_write_text, remove_tree
from sharcs.storage.lock import LOCK_NAME, OutputLock
from sharcs.storage.run_folder import MODEL_DIR, RUN_CONFIG
from sharcs.training import distributed
from sharcs.training.build import build_model
from sharcs.training.checkpoints import BEST_DIR, find_checkpoint, remove_training_state
from sharcs.training.options import TrainOptions, load_train_options, pick_device, training_arguments
from sharcs.training.stages import finetune_folder, finetune_stage, sandwich_stage
from sharcs.training.summary import (
    collapsed_note,
    drop_note,
    epoch_line,
    few_calibration_note,
    savings_note,
)
from sharcs.training.trainer import HISTORY_NAME, Trainer

RESULTS_NAME = "results.json"
LOG_NAME = "train.log"

logger = logging.getLogger("sharcs")


class _RunLog:
    """Add a train.log file handler to the "sharcs" logger for the duration of a run."""

    def __init__(self, path: Path):
        self.handler = logging.FileHandler(path, encoding="utf-8")
        self.handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        self.level = logger.level

    def __enter__(self) -> None:
        logger.addHandler(self.handler)
        if self.level == logging.NOTSET or self.level > logging.INFO:
            logger.setLevel(logging.INFO)

    def __exit__(self, *exc: object) -> None:
        logger.removeHandler(self.handler)
        self.handler.close()
        logger.setLevel(self.level)


class _Quiet:
    """Silence the "sharcs" logger below ERROR for the duration of a run (ranks other than 0)."""

    def __init__(self) -> None:
        self.level = logger.level

    def __enter__(self) -> None:
        logger.setLevel(logging.ERROR)

    def __exit__(self, *exc: object) -> None:
        logger.setLevel(self.level)


def _device(options: TrainOptions) -> Any:
    """The run's device; under a multi-process launch each process takes the GPU of its local rank."""
    import torch

    device = pick_device(options.device)
    distributed.init_distributed(device.type)
    if distributed.is_distributed() and device.type == "cuda":
        device = torch.device("cuda", distributed.local_rank())
        torch.cuda.set_device(device)
    return device


def train(
    options: TrainOptions, resume: bool = False, overwrite: bool = False, continue_run: bool = False
) -> dict[str, Any]:
    """Train (or resume) a run into options.output_dir and return its final dev results.

    Under torchrun / accelerate launch every process trains its share of each batch (see
    `sharcs.training.trainer`); only rank 0 writes files and logs, every rank returns the results.

    The epoch kept is the one with the best held-out score (a seeded slice of the training data,
    never the dev set; for the sandwich recipe its calibration half, on which the router was not
    fitted), or with --select-tolerance the cheapest one near it. Writes the tokenizer,
    run_config.json, train.log, history.json, checkpoint-E-S/, best/, then model/ (the kept model) and
    results.json (its dev evaluation); then the checkpoints and best/ are deleted unless
    options.keep_checkpoint.

    A staged run (`options.finetune_epochs`, the default of the sandwich recipe; sharcs.training.stages)
    first trains a plain fine-tune into OUT/finetune/ (resumed or skipped like any run), then the
    sandwich recipe from it into OUT/; results.json names the fine-tune and its dev metrics.

    `continue_run` (--continue) makes one call rerunnable: a folder without a run starts one; one
    holding a run with the same options resumes it when interrupted and returns its results.json when
    finished (nothing is trained); a run with other options is a SharcsError.

    Rank 0 holds an exclusive OS lock on the folder (`sharcs.storage.lock.OutputLock`) from before its first
    write (from its first check, when the folder exists) to the end: a second `train` into the same
    folder fails at once instead of writing beside the first.
    """
    return _run(options, resume, overwrite, continue_run, [])


def _run(
    options: TrainOptions, resume: bool, overwrite: bool, continue_run: bool, notes: list[str]
) -> dict[str, Any]:
    """`train`, with `notes` for the run's log once its model is built (so that an error in building it
    is still the only line a user sees)."""
    out = Path(options.output_dir).expanduser()
    options.validate()
    if continue_run and (resume or overwrite):
        raise SharcsError(
            "--continue resumes by itself when it should: give it without --resume or --overwrite"
        )
    if out.exists() and not out.is_dir():
        raise SharcsError(f"--output-dir {out} exists and is not a folder")
    device = _device(options)  # under torchrun this starts the process group: rank 0 alone locks
    with OutputLock(out, active=distributed.is_main()) as lock:
        return _train(options, out, device, lock, resume, overwrite, continue_run, notes)


def _train(
    options: TrainOptions,
    out: Path,
    device: Any,
    lock: OutputLock,
    resume: bool,
    overwrite: bool,
    continue_run: bool,
    notes: list[str],
) -> dict[str, Any]:
    """`train` once rank 0 holds the lock of an existing output folder (`lock.acquire` creates one)."""
    restart = overwrite  # the user's --overwrite (--continue may set `overwrite` below)
    if continue_run and (out / RUN_CONFIG).is_file():
        check_resumable(load_train_options(out), options, continuing=True)
        if (out / RESULTS_NAME).is_file():
            return _finished_results(out)
        resume = find_checkpoint(out) is not None
        overwrite = not resume  # stopped before its first checkpoint: start it again
    check_train(options, resume, overwrite)  # the folder checks the command line also makes early
    distributed.barrier()  # every rank has checked the folder before rank 0 writes into it
    main = distributed.is_main()
    data = prepare_data(options)
    info = data.info
    held_out = len(data.held_out) if data.held_out else 0
    if options.is_sandwich and held_out < 2 * MIN_FIT_ROWS:
        raise SharcsError(
            "--recipe sandwich fits its router on half of the held-out slice and calibrates the budget on "
            f"the other half, but --held-out-fraction {options.held_out_fraction:g} of "
            f"{len(data.train) + held_out} rows holds {held_out}; it needs {2 * MIN_FIT_ROWS} or more: "
            "raise --held-out-fraction or add data"
        )
    recorded = options  # what run_config.json holds: the command as given, stages and all
    notes = list(notes)  # and what preparing the model did, for the log once it is open
    extra: dict[str, Any] = {}
    if options.finetune_epochs:
        if main:
            _hold(lock, out)  # before stage 1 writes OUT/finetune/
        with _RunLog(out / LOG_NAME) if main else _Quiet():  # OUT/train.log tells both stages
            options, extra["finetune"] = _fine_tune_first(options, restart)
        resume = resume and find_checkpoint(out) is not None  # stopped in stage 1: stage 2 starts
        notes.append(
            f"stage 2 of 2: {options.epochs} epoch(s) of the sandwich recipe from the fine-tune in "
            f"{options.model} (dev {metrics_text(extra['finetune']['metrics'])})"
        )

    def order_residual_first(base: Any, tokenizer: Any, layout: Layout) -> None:
        rows = data.train.subset(range(min(options.rewire_residual, len(data.train))))
        scored, _ = tokenize_counted(rows, tokenizer, options.max_seq_length)
        narrowest = min(options.widths) if options.method != "fixed" else options.fixed_width
        base.to(device)
        batch, pad = options.batch_size, pad_id(tokenizer)
        agree = distributed.from_main  # every process permutes alike
        notes.append(order_residual_on_data(base, layout, scored, len(rows), batch, pad, narrowest, agree))

    # in place, before the model is wrapped (its per-width norms copy the reordered ones) and before any
    # step; a resumed run's checkpoint holds the reordered weights
    prepare = order_residual_first if options.rewire_residual and not resume else None
    model, tokenizer = build_model(options, info, prepare)
    model.to(device)
    pad = pad_id(tokenizer)
    train_data, train_cut = tokenize_counted(data.train, tokenizer, options.max_seq_length)
    held_data, held_cut = (
        tokenize_counted(data.held_out, tokenizer, options.max_seq_length) if data.held_out else (None, 0)
    )
    dev_data, dev_cut = tokenize_counted(data.dev, tokenizer, options.max_seq_length)
    args = training_arguments(options, label_range(data.train) if info.is_regression else None)
    eval_batch = max(64, options.batch_size)
    narrowest = min(model.config.widths) if has_router(model) or is_cascade(model) else None

    calibrated = has_router(model) and options.recipe == "sandwich"
    # a calibrated run's epochs compare on the calibration rows alone (metric, then cost): on the other
    # half of the held-out slice the router was fitted, and there it looks better than it is
    calibration_metric = f"calibration_{info.main_metric}"

    def evaluate(m: AdaptiveModel) -> dict[str, Any]:
        """After each epoch: held-out scores (for choosing the epoch), dev scores and costs (for the log).
        The sandwich recipe first fits the router and calibrates the routing to --flops-budget or
        --max-drop."""
        record: dict[str, Any] = {}
        if calibrated and held_data is not None:
            summary = calibrate(
                m,
                held_data,
                options.flops_budget,
                info.main_metric,
                options.seed,
                eval_batch,
                pad,
                options.max_drop,
            )
            record["calibration"] = summary
            record[calibration_metric] = summary["chosen"]["metric"]
            record["calibration_cost"] = summary["chosen"]["cost"]
            logger.info(calibration_line(summary, info.main_metric))
            note = few_calibration_note(summary)
            if note is not None and not trainer.history:
                logger.warning(note)
        if held_data is not None:
            record.update(evaluate_model(m, held_data, info.metrics, eval_batch, None, pad).record("heldout"))
            if narrowest is not None:  # the narrow path alone: one that collapsed to a class shows here
                narrow = evaluate_model(m, held_data, info.metrics, eval_batch, narrowest, pad)
                record[f"heldout_narrowest_{info.main_metric}"] = narrow.metrics[info.main_metric]
                if narrow.top_class_share is not None:
                    record["heldout_narrowest_top_class_share"] = narrow.top_class_share
                    note = collapsed_note(narrow.top_class_share, narrowest)
                    if note is not None:
                        logger.warning(note)
        dev = evaluate_model(m, dev_data, info.metrics, eval_batch, None, pad)
        record.update(dev.record("dev"))
        record["full_flops_per_sample"] = dev.full_flops_per_sample
        record["flops_reduction"] = dev.flops_reduction
        sums = trainer.epoch_sums
        train_loss = sums["loss"] / max(1, sums["steps"])
        logger.info(epoch_line(len(trainer.history) + 1, {"train_loss": train_loss, **record}, info))
        return record

    select = (
        None if held_data is None else calibration_metric if calibrated else f"heldout_{info.main_metric}"
    )
    cost = None if held_data is None else "calibration_cost" if calibrated else "heldout_flops_per_sample"
    trainer = Trainer(model, train_data, args, out, evaluate, select, pad, select_cost=cost)
    if resume:
        trainer.load_checkpoint()  # fail early (before any log line) on a missing or corrupt checkpoint
        if any(record.get("best") for record in trainer.history):
            load_model(out / BEST_DIR)  # and on a broken best/, which the end of training reads

    if main:
        _hold(lock, out)
    if main and not resume:
        # an --overwrite must never resume, report or serve the old run
        remove_training_state(out)
        remove_tree(out / MODEL_DIR)
        for name in (RESULTS_NAME, HISTORY_NAME):
            (out / name).unlink(missing_ok=True)
        run_config = {
            "options": recorded.to_dict(),
            "task_info": info.to_dict(),
            "model_path": resolve_model_path(recorded.model),
            "paths": {name: _absolute(getattr(options, name)) for name in ("data_dir", "validation_file")},
            "num_samples": {
                "train": len(data.train),
                "held_out": len(data.held_out) if data.held_out else 0,
                "dev": len(data.dev),
            },
        }
        tokenizer.save_pretrained(str(out))
        atomic_write_text(out / RUN_CONFIG, json.dumps(run_config, indent=2) + "\n")
    distributed.barrier()
    with _RunLog(out / LOG_NAME) if main else _Quiet():
        logger.info(
            "%s %s: %d train, %d held-out, %d dev samples; model %s (%d layers), method %s: %s",
            "resuming" if resume else "training",
            info.task or Path(options.train_file or "").name,
            len(data.train),
            len(data.held_out) if data.held_out else 0,
            len(data.dev),
            options.model,
            model.dims.layers,
            options.method,
            model.config,
        )
        cuts = (
            ("training", train_cut, data.train),
            ("held-out", held_cut, data.held_out),
            ("dev", dev_cut, data.dev),
        )
        for what, cut, examples in cuts:
            if examples:
                log_truncation(cut, len(examples), options.max_seq_length, what)
        if resume:
            logger.info("resuming at epoch %d, step %d", trainer.epoch + 1, trainer.step_in_epoch)
        for note in notes:
            logger.info(note)
        if not resume and options.rewire_samples:  # in place, before any step (a checkpoint holds it)
            line = rewire_on_data(
                model, train_data, options.rewire_samples, options.batch_size, pad, distributed.from_main
            )
            logger.info(line)
        history = trainer.train(resume=resume)
        results = _finish(model, history, out, info, dev_data, eval_batch, pad, select, extra)
        if main and not options.keep_checkpoint:
            remove_training_state(out)  # a finished run keeps its model and metrics, not optimizer state
        kept = history[results["best_epoch"] - 1] if history else {}
        for key, note in (
            ("drop_note", drop_note(kept.get("calibration"), info.main_metric, str(out))),
            ("savings_note", savings_note(results, options)),
        ):
            if note is not None:
                results[key] = note
                logger.warning(note)
        logger.info(
            "done: dev %s, %s fewer FLOPs than the full model, routes %s; model in %s",
            metrics_text(results["metrics"]),
            reduction_text(results["flops_reduction"]),
            share_text(results["width_share"]),
            out / MODEL_DIR,
        )
    return results


RESULT_KEYS = ("task", "split", "best_epoch", "selected_on", "epochs", "metrics", "flops_per_sample",
               "full_flops_per_sample", "flops_reduction", "width_share", "num_samples")  # fmt: skip


def _fine_tune_first(options: TrainOptions, restart: bool) -> tuple[TrainOptions, dict[str, Any]]:
    """Stage 1 of a staged run (sharcs.training.stages): train, resume or find finished the plain
    fine-tune in OUT/finetune/ (`restart`: train it again); stage 2's options and the fine-tune's
    folder and dev metrics."""
    folder, stage = finetune_folder(options), finetune_stage(options)
    if not restart and (folder / RESULTS_NAME).is_file() and (folder / RUN_CONFIG).is_file():
        check_resumable(load_train_options(folder), stage, continuing=True)
        results = _finished_results(folder, warn=False)  # quietly: stage 2 is what goes on
    else:
        note = (
            f"stage 1 of 2: a plain fine-tune of the full model for {options.finetune_epochs} of the "
            f"{options.epochs} epochs, into {folder}"
        )
        results = _run(stage, False, restart, not restart, [note])
    return sandwich_stage(options), {"folder": str(folder), "metrics": results["metrics"]}


def _hold(lock: OutputLock, out: Path) -> None:
    """Take the output folder's lock (creating the folder); a SharcsError if another process wrote
    into a folder that did not exist when this run checked it."""
    late = lock.active and not lock.held
    lock.acquire()
    if late and any(p.name != LOCK_NAME for p in out.iterdir()):
        raise SharcsError(f"{out} was written by another process while this run loaded its data; run again")


def _finished_results(out: Path, warn: bool = True) -> dict[str, Any]:
    """The results.json of a finished run, which --continue reports instead of training it again
    (`warn`: saying so)."""
    path = out / RESULTS_NAME
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise SharcsError(
            f"{path} is unreadable ({first_line(error)}); pass --overwrite to train again"
        ) from None
    missing = [key for key in RESULT_KEYS if not isinstance(results, dict) or key not in results]
    if missing:
        raise SharcsError(
            f"{path} is not a sharcs results file (no {missing[0]}); pass --overwrite to train again"
        )
    if not (out / MODEL_DIR).is_dir():
        raise SharcsError(f"{out} holds {RESULTS_NAME} but no {MODEL_DIR}/; pass --overwrite to train again")
    if warn:
        logger.warning(
            "%s already holds this run, finished: not training it again (--overwrite retrains it)", out
        )
    return results


def _absolute(path: str | None) -> str | None:
    return None if path is None else str(Path(path).expanduser().resolve())


def _finish(
    model: AdaptiveModel,
    history: list[dict[str, Any]],
    out: Path,
    info: TaskInfo,
    dev_data: Dataset,
    batch_size: int,
    pad: int,
    select: str | None,
    extra: dict[str, Any],
) -> dict[str, Any]:
    """Save the kept model to model/, evaluate it on dev and write results.json (with `extra`)."""
    best_epochs = [i + 1 for i, record in enumerate(history) if record.get("best")]
    if not best_epochs:
        select = None  # no epoch ever scored (e.g. a NaN held-out metric): keep the last one
    if select is not None:
        kept = load_model(out / BEST_DIR).to(next(model.parameters()).device)
        best_epoch = max(best_epochs)
    else:
        kept, best_epoch = model, len(history)
    if distributed.is_main():
        kept.save_pretrained(out / MODEL_DIR)
    evaluation = evaluate_model(kept, dev_data, info.metrics, batch_size, None, pad)
    results = {
        "task": info.task or "file",
        "split": info.dev_split,
        "best_epoch": best_epoch,
        "selected_on": select or "last epoch",
        "epochs": len(history),
        **evaluation.to_dict(),
        **extra,
    }
    if select is not None:
        results["held_out_" + info.main_metric] = history[best_epoch - 1].get(select)
    if distributed.is_main():
        atomic_write_text(out / RESULTS_NAME, json.dumps(results, indent=2) + "\n")
    distributed.barrier()
    return results


__all__ = ["LOG_NAME", "RESULTS_NAME", "logger", "train"]
