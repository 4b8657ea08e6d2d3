"""The argument parser of the `sharcs` command: train, evaluate, predict, bench and curve.

Imports nothing heavy: `sharcs --help` and argument errors return at once.
"""

from __future__ import annotations

import argparse
import dataclasses
from importlib import metadata
from typing import Any

from sharcs.errors import SharcsError, option_name
from sharcs.training.options import TrainOptions


class _UsageError(SharcsError):
    """A command line argparse could not parse."""


class _Parser(argparse.ArgumentParser):
    """ArgumentParser whose errors become one-line SharcsErrors instead of usage dumps."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise _UsageError(f"{message} (see '{self.prog} --help')")


_FORMATTER = argparse.RawDescriptionHelpFormatter
GROUPS = ("data", "model", "training", "run")


def _type_of(field: dataclasses.Field) -> Any:
    """The argparse type of a declared option, from its annotation (comma lists stay strings and are
    parsed by the dataclass)."""
    annotation = str(field.type)
    if "tuple" in annotation or annotation.startswith("str"):
        return None
    if annotation.startswith("int"):
        return int
    if annotation.startswith("float"):
        return float
    return None


def _default_text(value: Any) -> str:
    if isinstance(value, tuple):
        value = ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value)
    return f"(default: {value})"


def add_declared_options(parser: argparse.ArgumentParser, cls: type) -> dict[str, Any]:
    """One argument per field of the dataclass `cls` declared with `sharcs.training.arguments.option`,
    in argument groups; every default is None, so a caller sees which options were given."""
    groups = {name: parser.add_argument_group(name) for name in GROUPS}
    for field in dataclasses.fields(cls):
        meta = field.metadata
        if not meta.get("cli"):
            continue
        flag = option_name(field.name)
        required = field.default is dataclasses.MISSING
        text = meta["help"]() if callable(meta["help"]) else meta["help"]
        if meta["show_default"] and not required and field.default is not None:
            text = f"{text} {_default_text(field.default)}"
        kwargs: dict[str, Any] = {"help": text, "default": None}
        if str(field.type).startswith("bool"):
            kwargs["action"] = argparse.BooleanOptionalAction if field.default is None else "store_true"
        else:
            choices = meta["choices"]() if callable(meta["choices"]) else meta["choices"]
            kwargs.update(type=_type_of(field), choices=choices, metavar=meta["metavar"])
        if required:
            kwargs["required"] = True
        groups[meta["group"]].add_argument(flag, **kwargs)
    return groups


def _add_train(commands: Any) -> None:
    parser = commands.add_parser(
        "train",
        help="train a SHARCS model (or a baseline) on a GLUE task or your own data",
        description=(
            "Fine-tune an encoder with a SHARCS router after layer K. The epoch kept is the one with the\n"
            "best score on a held-out slice of the training data (never on the dev set it reports).\n"
            "Run it again with --resume to continue an interrupted run; with --continue the same command\n"
            "starts, resumes or only reports the run, whichever the output folder needs."
        ),
        epilog=(
            "examples:\n"
            "  sharcs train --task sst2 --data-dir glue --output-dir runs/sst2\n"
            "  sharcs train --task sst2 --data-dir glue --output-dir runs/sst2-pabee --method pabee\n"
            "  sharcs train --train-file train.csv --validation-file dev.csv --text-columns text \\\n"
            "      --label-column label --output-dir runs/mine --widths 0.25,0.5,1.0 --threshold 0.8,0.5\n"
            "  sharcs train --output-dir runs/sst2 --resume\n"
            "  sharcs train --task sst2 --data-dir glue --output-dir runs/sst2 --continue   # rerunnable"
        ),
        formatter_class=_FORMATTER,
    )
    run = add_declared_options(parser, TrainOptions)["run"]
    run.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --output-dir from its checkpoint, with its saved settings",
    )
    run.add_argument("--overwrite", action="store_true", help="start afresh in a folder that holds a run")
    run.add_argument(
        "--continue",
        dest="continue_run",
        action="store_true",
        help="make the command rerunnable: start the run; or, when --output-dir holds a run with the same "
        "options, resume it if it was interrupted, or only print its results if it finished (a run with "
        "other options is an error)",
    )


_RUN_DIR = "a train output folder, its model/ subfolder, or an export folder (sharcs export)"


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
    parser.add_argument("dir", metavar="DIR", help=_RUN_DIR)
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
    parser.add_argument(
        "--encoding",
        metavar="NAME",
        help="text encoding of --validation-file, e.g. latin-1 (default: the run's, else utf-8)",
    )
    parser.add_argument("--max-eval-samples", metavar="N", type=int, help="use only the first N samples")
    parser.add_argument(
        "--max-seq-length", metavar="N", type=int, help="truncate inputs to N tokens (default: the run's)"
    )
    _add_inference_options(parser)
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")


def _add_predict(commands: Any) -> None:
    parser = commands.add_parser(
        "predict",
        help="label new texts with a trained model (JSON lines)",
        description=(
            "Predict labels for texts given as arguments, in a file (one per line) or on stdin.\n"
            "For sentence-pair models separate the two texts with a tab. Prints one JSON object per\n"
            'text: {"text", "label", "probability", "width"} ("score" instead of label for regression);\n'
            '"text" echoes at most 200 characters (then "text_truncated": true). A file or stdin is read\n'
            "as it comes: each --batch-size lines are answered as soon as they have arrived."
        ),
        epilog=(
            "examples:\n"
            '  sharcs predict runs/sst2 "a gripping, funny film" "dull and overlong"\n'
            "  sharcs predict runs/sst2 --file reviews.txt\n"
            "  cat reviews.txt | sharcs predict runs/sst2"
        ),
        formatter_class=_FORMATTER,
    )
    parser.add_argument("dir", metavar="DIR", help=_RUN_DIR)
    parser.add_argument("texts", nargs="*", metavar="TEXT", help="texts to label; '-' or none: read stdin")
    parser.add_argument("--file", metavar="FILE", help="read texts from this file, one per line")
    parser.add_argument(
        "--encoding",
        metavar="NAME",
        default="utf-8",
        help="text encoding of --file or stdin, e.g. latin-1 (default: utf-8)",
    )
    _add_inference_options(parser)


def _add_bench(commands: Any) -> None:
    parser = commands.add_parser(
        "bench",
        help="CPU latency and throughput of a trained model against the full-width model",
        description=(
            "Measure a trained model on its dev set against the full-width model (the wrapped Hugging Face\n"
            "model), side by side in one run, with pinned threads, a warm-up and medians: FLOPs per sample,\n"
            "batch-1 latency (p50, p90), batched throughput, speed-ups and efficiency = measured speed-up /\n"
            "FLOPs-predicted speed-up, each timing with its spread over repeats; the speed-ups also against\n"
            "the model's own full width (same sharcs code, width 1): the width's share of the gain, without\n"
            "the code's. Routed always (or the --cascade); --widths adds forced-width modes."
        ),
        epilog=(
            "examples:\n  sharcs bench runs/sst2 --threads 2\n  sharcs bench runs/sst2 --widths 0.25 --json\n"
            "  sharcs bench runs/sst2 --cascade 0.9"
        ),
        formatter_class=_FORMATTER,
    )
    parser.add_argument("dir", metavar="DIR", help="a train output folder, or an export of one")
    parser.add_argument("--threads", metavar="N", type=int, default=0, help="torch threads (default: all)")
    parser.add_argument("--latency-samples", metavar="N", type=int, default=200, help="(default: 200)")
    parser.add_argument("--batch-sizes", metavar="B[,B]", default="32,128", help="(default: 32,128)")
    parser.add_argument("--repeats", metavar="N", type=int, default=3, help="(default: 3)")
    parser.add_argument("--widths", metavar="W[,W]", default="", help="also force every sample to each width")
    parser.add_argument(
        "--cascade", metavar="C", type=float, help="time the cascade at confidence C (see evaluate --cascade)"
    )
    parser.add_argument(
        "--flops-budget",
        metavar="B",
        type=float,
        help="time the operating point at budget B (evaluate --flops-budget)",
    )
    parser.add_argument(
        "--max-drop",
        metavar="D",
        type=float,
        help="time the cheapest operating point within D of full width (evaluate --max-drop)",
    )
    parser.add_argument("--max-eval-samples", metavar="N", type=int, help="use only the first N dev samples")
    parser.add_argument(
        "--no-onnx",
        action="store_true",
        help="skip the alternatives (the full and the routed model on ONNX Runtime fp32 and int8, the full "
        "model in torch dynamic int8), which need exporting the run (about a minute per precision)",
    )
    parser.add_argument("--out", metavar="FILE", help="also write the report as JSON to FILE")
    parser.add_argument("--json", action="store_true", help="print the report as JSON instead of a table")


def _add_export(commands: Any) -> None:
    parser = commands.add_parser(
        "export",
        help="ONNX graphs of a trained SHARCS model, to run routed on ONNX Runtime",
        description=(
            "Export a trained SHARCS-family model (sharcs, cascade, full, fixed, random) to ONNX: one graph\n"
            "for layers 1..K and the router, one per width for the remaining layers and the head, and the\n"
            "plain full model for comparison; batch and length are dynamic. The folder (a manifest with\n"
            "checksums, the configs and the tokenizer) is what evaluate, predict and bench then take.\n"
            "fp32 graphs are checked to reproduce the PyTorch logits within 1e-4 before the folder is kept."
        ),
        epilog=(
            "examples:\n  sharcs export runs/sst2 --out runs/sst2-onnx\n"
            "  sharcs export runs/sst2 --out runs/sst2-int8 --quantize int8\n"
            "  sharcs evaluate runs/sst2-int8"
        ),
        formatter_class=_FORMATTER,
    )
    parser.add_argument("dir", metavar="DIR", help="a train output folder, or its model/ subfolder")
    parser.add_argument("--out", metavar="DIR", required=True, help="the export folder to write")
    parser.add_argument(
        "--quantize", choices=("int8",), help="dynamic int8 weights for every matrix product (default: fp32)"
    )
    parser.add_argument(
        "--no-fusions", action="store_true", help="skip ONNX Runtime's transformer fusions (LayerNorm, GELU)"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing export in --out")


def _add_curve(commands: Any) -> None:
    parser = commands.add_parser(
        "curve",
        help="accuracy vs FLOPs and vs latency, sweeping each model's trade-off knob",
        description=(
            "Evaluate every inference setting of one or more trained models and write curve.csv,\n"
            "curve.json, accuracy_vs_flops.png and accuracy_vs_latency.png into --out. The settings: for\n"
            "SHARCS the argmax rule, each --taus threshold, each forced width and any --cascade-shares;\n"
            "for DynaBERT each width; for DeeBERT entropy thresholds and for PABEE patiences; full, fixed\n"
            "and random give one point. The plots show the settings as dots, each model's Pareto front as a\n"
            "step line and the full model as a star; timings come with their spread over repeats."
        ),
        epilog=(
            "examples:\n  sharcs curve runs/sst2 --out runs/sst2/curve\n"
            "  sharcs curve runs/sst2 runs/sst2-pabee runs/sst2-full --out cmp\n"
            "  sharcs curve runs/sst2 --cascade-shares 0.1,0.2,0.3 --out runs/sst2/cascade"
        ),
        formatter_class=_FORMATTER,
    )
    parser.add_argument("dirs", nargs="+", metavar="DIR", help="train output folders (same task)")
    parser.add_argument("--out", metavar="DIR", required=True, help="folder for the CSV, JSON and plots")
    parser.add_argument(
        "--taus",
        metavar="X[,X]",
        help="SHARCS tau values to sweep (default: the taus that send 10%%, 20%%, ..., 90%% of the samples "
        "below full width, read from the router's scores)",
    )
    parser.add_argument(
        "--cascade-shares",
        metavar="S[,S]",
        help="also sweep SHARCS classifiers as a cascade (see evaluate --cascade) at the confidences that "
        "re-run these shares of the samples at full width, e.g. 0.1,0.2,0.3",
    )
    parser.add_argument("--no-latency", action="store_true", help="skip the timing passes (FLOPs only)")
    parser.add_argument("--batch-size", metavar="N", type=int, default=64, help="(default: 64)")
    parser.add_argument("--repeats", metavar="N", type=int, default=3, help="timing repeats (default: 3)")
    parser.add_argument("--threads", metavar="N", type=int, default=0, help="torch threads (default: all)")
    parser.add_argument("--max-eval-samples", metavar="N", type=int, help="use only the first N dev samples")


def _add_inference_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--tau",
        metavar="X",
        type=float,
        help="route with rule tau: the narrowest width whose router probability >= X (default: argmax)",
    )
    parser.add_argument(
        "--cascade",
        metavar="C",
        type=float,
        help="instead of the router (beyond the paper; classifiers): every sample runs the narrowest "
        "width, and those whose top class probability is below C run again at full width",
    )
    parser.add_argument(
        "--flops-budget",
        metavar="B",
        type=float,
        help="a model trained with the sandwich recipe: the best operating point (router or cascade) whose "
        "mean FLOPs are at most B of the full model's, from its held-out calibration table",
    )
    parser.add_argument(
        "--max-drop",
        metavar="D",
        type=float,
        help="a model trained with the sandwich recipe: the cheapest operating point whose main metric on "
        "its held-out calibration rows is within D of full width's (in the metric's units: 0.01 = 1 point)",
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
    _add_bench(commands)
    _add_curve(commands)
    _add_export(commands)
    return parser


def _version() -> str:
    try:
        return metadata.version("sharcs")
    except metadata.PackageNotFoundError:
        return "unknown"
