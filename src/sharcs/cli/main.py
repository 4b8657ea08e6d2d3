"""The `sharcs` command: train, evaluate, predict, bench and curve for width-adaptive (SHARCS) encoders.

    sharcs train --task sst2 --data-dir glue --output-dir runs/sst2
    sharcs evaluate runs/sst2 --json
    echo "a gripping, funny film" | sharcs predict runs/sst2
    sharcs bench runs/sst2 --threads 2
    sharcs curve runs/sst2 --out runs/sst2/curve

The work is done in `sharcs.training.run`, `sharcs.measure.evaluation` and `sharcs.inference.stream`,
imported inside the command functions so that `--help` and argument errors come back at once (no torch
import); the options, files and folders of every command are checked (`sharcs.cli.checks`) before those
imports too.
Every user error ends as one line "sharcs: error: <message>" on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from sharcs.cli.checks import (
    batch_sizes,
    check_bench,
    check_curve,
    check_evaluate,
    check_export,
    check_predict,
    check_run_to_resume,
    check_train,
)
from sharcs.cli.parser import build_parser
from sharcs.errors import SharcsError, first_line
from sharcs.storage.run_folder import MODEL_DIR
from sharcs.training.options import TrainOptions, load_train_options, parse_names

EXIT_ERROR = 2


# -------------------------------------------------------------------------------------------- commands
def train_options(args: argparse.Namespace) -> TrainOptions:
    """TrainOptions from parsed arguments; with --resume, the saved ones updated by what was given."""
    given = {
        f.name: getattr(args, f.name)
        for f in dataclasses.fields(TrainOptions)
        if getattr(args, f.name, None) is not None
    }
    if not args.resume:
        return TrainOptions(**given)
    out = Path(args.output_dir).expanduser()
    check_run_to_resume(out)
    return dataclasses.replace(load_train_options(out), **given)


def _train(args: argparse.Namespace) -> int:
    if args.continue_run and (args.resume or args.overwrite):
        raise SharcsError(
            "--continue resumes by itself when it should: give it without --resume or --overwrite"
        )
    options = train_options(args)
    # before torch: a bad option answers at once (--continue: runs.train decides what the folder needs)
    check_train(options, args.resume, args.overwrite or args.continue_run)

    import torch

    from sharcs.measure.evaluation import metrics_text, reduction_text, share_text
    from sharcs.training import distributed
    from sharcs.training import run as runs

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("sharcs: %(message)s"))
    runs.logger.addHandler(handler)
    try:
        results = runs.train(
            options, resume=args.resume, overwrite=args.overwrite, continue_run=args.continue_run
        )
    finally:
        runs.logger.removeHandler(handler)
    if distributed.is_distributed():
        main = distributed.is_main()
        torch.distributed.destroy_process_group()
        if not main:
            return 0  # rank 0 reports
    where = f"{results['task']} {results['split']}" if results["split"] else "validation file"
    print(f"dev {metrics_text(results['metrics'])}  ({where}, {results['num_samples']} samples)")
    if "finetune" in results:
        plain, folder = metrics_text(results["finetune"]["metrics"]), results["finetune"]["folder"]
        print(f"the plain fine-tune it started from: dev {plain}  ({folder})")
    if results["selected_on"] != "last epoch":
        print(f"kept epoch {results['best_epoch']} of {results['epochs']} (best {results['selected_on']})")
    routed, full = _flops(results["flops_per_sample"]), _flops(results["full_flops_per_sample"])
    reduction = reduction_text(results["flops_reduction"])
    print(f"FLOPs per sample: {routed}, full model {full} -> {reduction} fewer")
    kind = "exit" if any(key.startswith("exit") for key in results["width_share"]) else "width"
    print(f"{kind} share: {share_text(results['width_share'])}")
    if "savings_note" in results:
        print(results["savings_note"])
    print(f"model saved in {Path(options.output_dir) / MODEL_DIR}")
    return 0


def _route_name(label: str) -> str:
    """A width share key "0.25" -> "width 0.25"; an early-exit key "exit 3" stays as it is."""
    return label if label.startswith("exit") else f"width {label}"


@contextlib.contextmanager
def _info_on_stderr() -> Iterator[None]:
    """Show the "sharcs" logger's INFO lines (e.g. how many inputs were truncated) on stderr."""
    logger = logging.getLogger("sharcs")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("sharcs: %(message)s"))
    level = logger.level
    logger.addHandler(handler)
    if level == logging.NOTSET or level > logging.INFO:
        logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def _evaluate(args: argparse.Namespace) -> int:
    from sharcs.data.examples import check_encoding
    from sharcs.measure.evaluation import evaluate_dir, reduction_text

    if args.encoding is not None:
        check_encoding(args.encoding)
    with _info_on_stderr():  # how many inputs were truncated
        report = evaluate_dir(
            args.dir,
            task=args.task,
            data_dir=args.data_dir,
            validation_file=args.validation_file,
            text_columns=parse_names(args.text_columns, "--text-columns") if args.text_columns else None,
            label_column=args.label_column,
            split=args.split,
            max_samples=args.max_eval_samples,
            max_seq_length=args.max_seq_length,
            batch_size=args.batch_size,
            tau=args.tau,
            width=args.width,
            device=args.device,
            encoding=args.encoding,
            cascade=args.cascade,
            budget=args.flops_budget,
            max_drop=args.max_drop,
        )
    if args.json:
        print(json.dumps(report))
        return 0
    if report["routing"] == "tau":
        routing = f"tau = {report['tau']:g}"
    elif report["routing"] == "cascade":
        routing = f"cascade: full width below confidence {report['cascade']:g}"
    elif report["routing"] == "width":
        routing = f"every sample at width {report['width']:g}"
    elif report["routing"] == "argmax":
        routing = "argmax (paper)"
    else:
        routing = report["routing"]  # fixed, random, dynabert, early_exit
    rows = [
        ("model", report["model"]),
        (
            "data",
            f"{report['task']} {report['split'] or ''} ({report['num_samples']} samples)".replace("  ", " "),
        ),
        ("routing", routing),
        *((name, f"{value:.4f}") for name, value in report["metrics"].items()),
        ("FLOPs/sample", _flops(report["flops_per_sample"])),
        ("full model", _flops(report["full_flops_per_sample"])),
        ("reduction", reduction_text(report["flops_reduction"])),
        *((_route_name(w), f"{100 * p:.1f}%") for w, p in report["width_share"].items()),
    ]
    size = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{size}}  {value}")
    return 0


def _predict(args: argparse.Namespace) -> int:
    from sharcs.data import truncation_line
    from sharcs.data.examples import check_encoding

    check_encoding(args.encoding)
    if args.file is not None and args.texts:
        raise SharcsError("give texts as arguments or --file FILE, not both")

    from sharcs.inference.stream import batched, input_lines, parse_lines, predict_batch
    from sharcs.measure.evaluation import check_width, routing_arguments
    from sharcs.storage.saved_run import load_run

    run = load_run(args.dir, args.device)
    check_width(run.model, args.width, args.cascade)  # fail before waiting for stdin
    setting = routing_arguments(run.model, args.tau, args.cascade, args.flops_budget, args.max_drop)
    pairs = len(run.info.text_columns) if run.info is not None else None
    size = args.batch_size
    with contextlib.ExitStack() as stack:
        if args.file is not None:
            source = args.file
            try:
                handle = stack.enter_context(Path(args.file).expanduser().open("rb"))
            except OSError as error:
                raise SharcsError(f"cannot read --file {args.file}: {_reason(error)}") from None
            texts = parse_lines(input_lines(handle, args.encoding, source), pairs, source)
        elif args.texts and args.texts != ["-"]:
            source = "arguments"  # all checked before the first answer
            texts = iter(list(parse_lines(args.texts, pairs, source, "argument", trailing_blanks=False)))
        else:
            source = "stdin"
            if sys.stdin.isatty():  # typed: answer each line as it is entered
                print("sharcs: reading texts from stdin, one per line (Ctrl-D to end)", file=sys.stderr)
                size = 1
            texts = parse_lines(input_lines(sys.stdin, args.encoding, source), pairs, source)
        answered = truncated = 0
        try:
            for batch in batched(texts, size):  # each batch is answered as soon as it is read
                rows, cut = predict_batch(run, batch, args.width, source, setting=setting)
                sys.stdout.write("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
                sys.stdout.flush()
                answered, truncated = answered + len(rows), truncated + cut
        except BrokenPipeError:  # the reader stopped reading (e.g. `| head`): stop quietly
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 0
        except SharcsError as error:
            if answered:  # what came before the bad line has been printed
                before = "the text before it was" if answered == 1 else f"the {answered} texts before it were"
                raise SharcsError(f"{error}; {before} answered") from None
            raise
    if not answered:
        raise SharcsError(f"{source}: no texts to predict")
    if truncated:
        line = truncation_line(truncated, answered, run.max_seq_length, "")
        print(f"sharcs: {line} (the run's --max-seq-length)", file=sys.stderr)
    return 0


def _bench(args: argparse.Namespace) -> int:
    from sharcs.measure.report_text import format_report, format_runtimes
    from sharcs.measure.run_dirs import bench_dir, write_report
    from sharcs.training.options import parse_floats

    sizes = batch_sizes(args.batch_sizes)
    widths = parse_floats(args.widths, "--widths") if args.widths else ()
    report = bench_dir(
        args.dir,
        args.threads,
        args.latency_samples,
        sizes,
        args.repeats,
        widths,
        args.max_eval_samples,
        args.cascade,
        args.flops_budget,
        runtimes=not args.no_onnx,
        max_drop=args.max_drop,
    )
    if args.out:
        write_report(report, args.out)
    print(json.dumps(report) if args.json else format_report(report) + "\n\n" + format_runtimes(report))
    return 0


def _export(args: argparse.Namespace) -> int:
    from sharcs.export.writer import export_run

    with _info_on_stderr():  # one line per graph: exporting, checking, quantizing
        out = export_run(args.dir, args.out, args.quantize, optimize=not args.no_fusions)
    from sharcs.export.manifest import ExportManifest

    manifest = ExportManifest.load(out)
    checks = manifest.checks
    print(
        f"exported {manifest.precision} graphs for widths {list(manifest.widths)} to {out}: fp32 matches "
        f"PyTorch within {checks['fp32_max_logit_difference']:.1e} (largest logit difference)"
    )
    if "int8_max_logit_change" in checks:
        print(
            f"int8 moves the logits by up to {checks['int8_max_logit_change']:.2g} on a check batch: "
            f"sharcs evaluate {out} measures what that does to the metric"
        )
    print(f"run them with: sharcs evaluate {out}   |   sharcs predict {out} TEXT   |   sharcs bench {out}")
    return 0


def _curve(args: argparse.Namespace) -> int:
    from sharcs.measure.run_dirs import curve_dirs
    from sharcs.training.options import parse_floats

    cascade_shares = parse_floats(args.cascade_shares, "--cascade-shares") if args.cascade_shares else ()
    files = curve_dirs(
        args.dirs,
        args.out,
        parse_floats(args.taus, "--taus") if args.taus is not None else None,
        args.batch_size,
        args.repeats,
        not args.no_latency,
        args.max_eval_samples,
        args.threads,
        cascade_shares,
    )
    for path in files:
        print(path)
    return 0


# run before a command's heavy imports (train checks its options itself, in `_train`)
_CHECKS: dict[str, Callable[[argparse.Namespace], None]] = {
    "evaluate": check_evaluate,
    "predict": check_predict,
    "bench": check_bench,
    "curve": check_curve,
    "export": check_export,
}

_COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "train": _train,
    "evaluate": _evaluate,
    "predict": _predict,
    "bench": _bench,
    "curve": _curve,
    "export": _export,
}


# ----------------------------------------------------------------------------------------------- main
def _flops(value: float) -> str:
    for unit, scale in (("GFLOPs", 1e9), ("MFLOPs", 1e6), ("kFLOPs", 1e3)):
        if value >= scale:
            return f"{value / scale:.3g} {unit}"
    return f"{value:.3g} FLOPs"


def _reason(error: BaseException) -> str:
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return first_line(error)


def _fail(message: str) -> int:
    line = " ".join(message.split())
    print(f"sharcs: error: {line}", file=sys.stderr)
    return EXIT_ERROR


def main(argv: Sequence[str] | None = None) -> int:
    """Run the `sharcs` command line; returns the exit code (2 for any user error)."""
    parser = build_parser()
    try:
        args, extra = parser.parse_known_args(argv)
        if extra and args.command == "predict" and not any(a.startswith("-") for a in extra):
            args.texts += extra  # texts given after options: predict DIR --width 1.0 "some text"
        elif extra:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        if args.command in _CHECKS:
            _CHECKS[args.command](args)
        return _COMMANDS[args.command](args)
    except SharcsError as error:
        return _fail(error.command_line())
    except OSError as error:  # unreadable or unwritable files, full disk, ...
        where = f" ({error.filename})" if getattr(error, "filename", None) else ""
        return _fail(f"{_reason(error)}{where}")
    except KeyboardInterrupt:
        print("sharcs: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
