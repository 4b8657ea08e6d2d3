"""The `sharcs` command: train, evaluate and predict with width-adaptive (SHARCS) encoders.

    sharcs train --task sst2 --data-dir glue --output-dir runs/sst2
    sharcs evaluate runs/sst2 --json
    echo "a gripping, funny film" | sharcs predict runs/sst2

The work is done in `sharcs.runs`; this module only parses arguments and prints. Every user error
ends as one line "sharcs: error: <message>" on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from sharcs import runs
from sharcs.errors import SharcsError

EXIT_ERROR = 2


class _UsageError(SharcsError):
    """A command line argparse could not parse."""


class _Parser(argparse.ArgumentParser):
    """ArgumentParser whose errors become one-line SharcsErrors instead of usage dumps."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise _UsageError(f"{message} (see '{self.prog} --help')")


_FORMATTER = argparse.RawDescriptionHelpFormatter
_DEFAULTS = runs.TrainOptions(output_dir="")


def _default(name: str) -> str:
    value = getattr(_DEFAULTS, name)
    if isinstance(value, tuple):
        value = ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value)
    return f"(default: {value})"


# ---------------------------------------------------------------------------------------------- parser
def _add_train(commands: Any) -> None:
    parser = commands.add_parser(
        "train",
        help="train a SHARCS model on a GLUE task or your own data",
        description=(
            "Fine-tune an encoder with a SHARCS router after layer K. The epoch kept is the one with the\n"
            "best score on a held-out slice of the training data (never on the dev set it reports).\n"
            "Run it again with --resume to continue an interrupted run."
        ),
        epilog=(
            "examples:\n"
            "  sharcs train --task sst2 --data-dir glue --output-dir runs/sst2\n"
            "  sharcs train --train-file train.csv --validation-file dev.csv --text-columns text \\\n"
            "      --label-column label --output-dir runs/mine --widths 0.25,0.5,1.0 --threshold 0.8,0.5\n"
            "  sharcs train --output-dir runs/sst2 --resume"
        ),
        formatter_class=_FORMATTER,
    )
    data = parser.add_argument_group("data")
    data.add_argument(
        "--task", metavar="NAME", help="GLUE task: cola, sst2, mrpc, stsb, qqp, mnli, qnli, rte"
    )
    data.add_argument(
        "--data-dir",
        metavar="DIR",
        help="folder holding SST-2/, MRPC/, ... (default: $SHARCS_GLUE_DIR, else the Hugging Face hub)",
    )
    data.add_argument(
        "--train-file", metavar="FILE", help="your training data: .csv, .tsv or .jsonl (instead of --task)"
    )
    data.add_argument(
        "--validation-file", metavar="FILE", help="your dev data, same format; the metrics are reported on it"
    )
    data.add_argument(
        "--text-columns", metavar="COL[,COL2]", help="text column, or two comma-separated for sentence pairs"
    )
    data.add_argument(
        "--label-column", metavar="COL", help=f"label column of your files {_default('label_column')}"
    )
    data.add_argument("--regression", action="store_true", default=None, help="the labels are numbers")
    data.add_argument(
        "--max-train-samples", metavar="N", type=int, help="use only the first N training samples"
    )
    data.add_argument("--max-eval-samples", metavar="N", type=int, help="use only the first N dev samples")
    data.add_argument(
        "--max-seq-length",
        metavar="N",
        type=int,
        help=f"truncate inputs to N tokens {_default('max_seq_length')}",
    )
    data.add_argument(
        "--held-out-fraction",
        metavar="F",
        type=float,
        help="fraction of the training data held out to choose the best epoch; 0 keeps the last epoch "
        + _default("held_out_fraction"),
    )

    model = parser.add_argument_group("model")
    model.add_argument(
        "--model",
        metavar="NAME_OR_DIR",
        help="'minilm-l6' (the packaged all-MiniLM-L6-v2), a model folder or a hub id " + _default("model"),
    )
    model.add_argument(
        "--widths", metavar="W1,W2,...", help=f"ascending widths ending at 1.0 {_default('widths')}"
    )
    model.add_argument(
        "--adaptive-layer",
        metavar="K",
        type=int,
        help="K: full-width layers before the router (default: a third of the layers, at least 1)",
    )
    model.add_argument(
        "--threshold",
        metavar="T[,T2,...]",
        help="confidence threshold for the narrow width; with more widths one per boundary, descending "
        "(default: 0.6 for two widths)",
    )
    model.add_argument(
        "--window",
        metavar="E",
        type=int,
        help=f"epochs of confidence history behind each label {_default('window')}",
    )
    model.add_argument(
        "--router-hidden-size",
        metavar="N",
        type=int,
        help=f"router MLP size {_default('router_hidden_size')}",
    )
    model.add_argument(
        "--norm-init",
        choices=("copy", "scratch"),
        help=f"per-width LayerNorms: copied from the model or fresh {_default('norm_init')}",
    )

    training = parser.add_argument_group("training")
    training.add_argument("--epochs", metavar="N", type=int, help=_default("epochs"))
    training.add_argument(
        "--batch-size", metavar="N", type=int, help=f"per width bucket {_default('batch_size')}"
    )
    training.add_argument("--lr", metavar="LR", type=float, help=f"peak learning rate {_default('lr')}")
    training.add_argument("--seed", metavar="N", type=int, help=_default("seed"))
    training.add_argument("--device", metavar="DEVICE", help=f"auto, cpu or cuda[:N] {_default('device')}")

    run = parser.add_argument_group("run")
    run.add_argument(
        "--output-dir", metavar="DIR", required=True, help="folder for the model, logs and checkpoints"
    )
    run.add_argument(
        "--save-every-steps",
        metavar="N",
        type=int,
        help="also checkpoint every N optimizer steps (default: 0, at epoch ends only)",
    )
    run.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --output-dir from its checkpoint, with its saved settings",
    )
    run.add_argument("--overwrite", action="store_true", help="start afresh in a folder that holds a run")
    parser.set_defaults(handler=_train)


def _add_evaluate(commands: Any) -> None:
    parser = commands.add_parser(
        "evaluate",
        help="dev metrics, width shares and FLOPs of a trained model",
        description=(
            "Evaluate a trained model on the dev set of its task (or another task or file): task metrics,\n"
            "the share of samples routed to each width and the average FLOPs per sample."
        ),
        epilog=(
            "examples:\n"
            "  sharcs evaluate runs/sst2\n"
            "  sharcs evaluate runs/sst2 --tau 0.3 --json\n"
            "  sharcs evaluate runs/sst2 --width 1.0"
        ),
        formatter_class=_FORMATTER,
    )
    parser.add_argument("dir", metavar="DIR", help="a train output folder, or its model/ subfolder")
    parser.add_argument("--task", metavar="NAME", help="evaluate on this GLUE task (default: the run's task)")
    parser.add_argument(
        "--data-dir", metavar="DIR", help="GLUE folder (default: the run's, $SHARCS_GLUE_DIR, the hub)"
    )
    parser.add_argument(
        "--split", metavar="SPLIT", help="GLUE split (default: dev; for MNLI dev_matched or dev_mismatched)"
    )
    parser.add_argument(
        "--validation-file", metavar="FILE", help="evaluate on this .csv/.tsv/.jsonl file instead"
    )
    parser.add_argument(
        "--text-columns",
        metavar="COL[,COL2]",
        help="text column(s) of --validation-file (default: the run's)",
    )
    parser.add_argument(
        "--label-column", metavar="COL", help="label column of --validation-file (default: the run's)"
    )
    parser.add_argument("--max-eval-samples", metavar="N", type=int, help="use only the first N samples")
    parser.add_argument(
        "--max-seq-length", metavar="N", type=int, help="truncate inputs to N tokens (default: the run's)"
    )
    _add_inference_options(parser)
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    parser.set_defaults(handler=_evaluate)


def _add_predict(commands: Any) -> None:
    parser = commands.add_parser(
        "predict",
        help="label new texts with a trained model (JSON lines)",
        description=(
            "Predict labels for texts given as arguments, in a file (one per line) or on stdin.\n"
            "For sentence-pair models separate the two texts with a tab. Prints one JSON object per\n"
            'text: {"text", "label", "probability", "width"} ("score" instead of label for regression).'
        ),
        epilog=(
            "examples:\n"
            '  sharcs predict runs/sst2 "a gripping, funny film" "dull and overlong"\n'
            "  sharcs predict runs/sst2 --file reviews.txt\n"
            "  cat reviews.txt | sharcs predict runs/sst2"
        ),
        formatter_class=_FORMATTER,
    )
    parser.add_argument("dir", metavar="DIR", help="a train output folder, or its model/ subfolder")
    parser.add_argument("texts", nargs="*", metavar="TEXT", help="texts to label; '-' or none: read stdin")
    parser.add_argument("--file", metavar="FILE", help="read texts from this file, one per line")
    _add_inference_options(parser)
    parser.set_defaults(handler=_predict)


def _add_inference_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--tau",
        metavar="X",
        type=float,
        help="route with rule tau: the narrowest width whose router probability >= X (default: argmax)",
    )
    parser.add_argument(
        "--width", metavar="W", type=float, help="run every sample at this width instead of routing"
    )
    parser.add_argument("--batch-size", metavar="N", type=int, default=64, help="(default: 64)")
    parser.add_argument(
        "--device", metavar="DEVICE", default="auto", help="auto, cpu or cuda[:N] (default: auto)"
    )


def build_parser() -> argparse.ArgumentParser:
    """The `sharcs` argument parser with its train, evaluate and predict subcommands."""
    parser = _Parser(
        prog="sharcs",
        description=(
            "SHARCS: give each input only the encoder width it needs (arXiv 2310.12126).\n"
            "A router after layer K sends easy inputs through the remaining layers at a reduced width."
        ),
        epilog="Run 'sharcs COMMAND --help' for the options of each command.",
        formatter_class=_FORMATTER,
    )
    parser.add_argument("--version", action="version", version=f"sharcs {_version()}")
    commands = parser.add_subparsers(title="commands", dest="command", metavar="COMMAND", required=True)
    _add_train(commands)
    _add_evaluate(commands)
    _add_predict(commands)
    return parser


def _version() -> str:
    try:
        return metadata.version("sharcs")
    except metadata.PackageNotFoundError:
        return "unknown"


# -------------------------------------------------------------------------------------------- commands
def train_options(args: argparse.Namespace) -> runs.TrainOptions:
    """TrainOptions from parsed arguments; with --resume, the saved ones updated by what was given."""
    given = {
        f.name: getattr(args, f.name)
        for f in dataclasses.fields(runs.TrainOptions)
        if getattr(args, f.name, None) is not None
    }
    if not args.resume:
        return runs.TrainOptions(**given)
    out = Path(args.output_dir).expanduser()
    if not (out / runs.RUN_CONFIG).is_file():
        raise SharcsError(f"nothing to resume: {out / runs.RUN_CONFIG} does not exist")
    return dataclasses.replace(runs.load_train_options(out), **given)


def _train(args: argparse.Namespace) -> int:
    options = train_options(args)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("sharcs: %(message)s"))
    runs.logger.addHandler(handler)
    try:
        results = runs.train(options, resume=args.resume, overwrite=args.overwrite)
    finally:
        runs.logger.removeHandler(handler)
    metrics = ", ".join(f"{name} {value:.4f}" for name, value in results["metrics"].items())
    where = f"{results['task']} {results['split']}" if results["split"] else "validation file"
    print(f"dev {metrics}  ({where}, {results['num_samples']} samples)")
    if "selected_on" in results and results["selected_on"] != "last epoch":
        print(f"kept epoch {results['best_epoch']} of {results['epochs']} (best {results['selected_on']})")
    routed, full = _flops(results["flops_per_sample"]), _flops(results["full_flops_per_sample"])
    reduction = runs.reduction_text(results["flops_reduction"])
    print(f"FLOPs per sample: {routed}, full model {full} -> {reduction} fewer")
    print(f"width share: {runs.share_text(results['width_share'])}")
    print(f"model saved in {Path(options.output_dir) / runs.MODEL_DIR}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    report = runs.evaluate_dir(
        args.dir,
        task=args.task,
        data_dir=args.data_dir,
        validation_file=args.validation_file,
        text_columns=runs.parse_names(args.text_columns, "--text-columns") if args.text_columns else None,
        label_column=args.label_column,
        split=args.split,
        max_samples=args.max_eval_samples,
        max_seq_length=args.max_seq_length,
        batch_size=args.batch_size,
        tau=args.tau,
        width=args.width,
        device=args.device,
    )
    if args.json:
        print(json.dumps(report))
        return 0
    if report["routing"] == "tau":
        routing = f"tau = {report['tau']:g}"
    elif report["routing"] == "width":
        routing = f"every sample at width {report['width']:g}"
    else:
        routing = "argmax (paper)"
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
        ("reduction", runs.reduction_text(report["flops_reduction"])),
        *((f"width {w}", f"{100 * p:.1f}%") for w, p in report["width_share"].items()),
    ]
    size = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{size}}  {value}")
    return 0


def _predict(args: argparse.Namespace) -> int:
    run = runs.load_run(args.dir, args.device)
    runs.check_width(run.model, args.width)
    runs.with_routing(run.model, args.tau)
    pairs = len(run.info.text_columns) if run.info is not None else None
    if args.file is not None and args.texts:
        raise SharcsError("give texts as arguments or --file FILE, not both")
    if args.file is not None:
        source = args.file
        try:
            lines = Path(args.file).expanduser().read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as error:
            raise SharcsError(f"cannot read --file {args.file}: {_reason(error)}") from None
    elif args.texts and args.texts != ["-"]:
        source, lines = "arguments", list(args.texts)
    else:
        if sys.stdin.isatty():
            print("sharcs: reading texts from stdin, one per line (Ctrl-D to end)", file=sys.stderr)
        source, lines = "stdin", sys.stdin.read().splitlines()
    while args.texts == [] and lines and not lines[-1].strip():
        lines.pop()  # trailing blank lines of a file or stdin
    texts = runs.read_texts(lines, pairs, source)
    for row in runs.predict_texts(run, texts, args.batch_size, args.width, args.tau, source):
        print(json.dumps(row, ensure_ascii=False))
    return 0


# ----------------------------------------------------------------------------------------------- main
def _flops(value: float) -> str:
    for unit, scale in (("GFLOPs", 1e9), ("MFLOPs", 1e6), ("kFLOPs", 1e3)):
        if value >= scale:
            return f"{value / scale:.3g} {unit}"
    return f"{value:.3g} FLOPs"


def _reason(error: BaseException) -> str:
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


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
        return args.handler(args)
    except SharcsError as error:
        return _fail(str(error))
    except OSError as error:  # unreadable or unwritable files, full disk, ...
        where = f" ({error.filename})" if getattr(error, "filename", None) else ""
        return _fail(f"{_reason(error)}{where}")
    except KeyboardInterrupt:
        print("sharcs: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
