"""`sharcs bench` and `sharcs curve` on saved runs: load, tokenize the dev data, measure, write files.

report = bench_dir("runs/sst2", threads=2)                 # dict, see sharcs.measure.bench.benchmark
files = curve_dirs(["runs/sst2"], "runs/sst2/curve")       # curve.csv/json + PNG plots
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from datasets import Dataset

from sharcs.data import tokenize
from sharcs.data.prepare import TaskInfo, first_samples
from sharcs.errors import SharcsError
from sharcs.export.manifest import ExportManifest, is_export
from sharcs.measure.bench import benchmark, pinned_threads
from sharcs.measure.curve import settings_for, sweep, write_curves
from sharcs.measure.evaluation import evaluation_examples, routing_arguments
from sharcs.measure.runtimes import alternatives, onnx_exports, runner_scores
from sharcs.methods.sharcs.model import SharcsModel
from sharcs.modeling.pretrained import pad_id
from sharcs.storage.files import atomic_write_text
from sharcs.storage.saved_run import Run, load_run


def dev_data(run: Run, max_samples: int | None) -> tuple[Dataset, list, TaskInfo]:
    """The run's own dev set, tokenized as in training: (dataset, labels, task info)."""
    examples, info = evaluation_examples(run)
    examples = first_samples(examples, max_samples)
    return tokenize(examples, run.tokenizer, info.max_seq_length), list(examples.labels), info


def bench_dir(
    directory: str | Path,
    threads: int = 0,
    latency_samples: int = 200,
    batch_sizes: Sequence[int] = (32, 128),
    repeats: int = 3,
    widths: Sequence[float] = (),
    max_samples: int | None = None,
    cascade: float | None = None,
    budget: float | None = None,
    runtimes: bool = True,
    max_drop: float | None = None,
) -> dict[str, Any]:
    """Benchmark a run (or the run an export folder came from) on CPU: routed (or as a cascade at
    confidence `cascade`, or at the operating point of FLOPs `budget` or within `max_drop` of full
    width), plus each forced width in
    `widths`, against the full model; with `runtimes`, also against the alternatives of
    `sharcs.measure.runtimes` (ONNX Runtime fp32 and int8, torch int8), each with its dev metric."""
    if any(size < 1 for size in batch_sizes) or latency_samples < 1 or repeats < 1:
        raise SharcsError("--batch-sizes, --latency-samples and --repeats must be at least 1")
    if cascade is not None and widths:
        raise SharcsError("give --widths or --cascade, not both")
    given: dict[str, Path] = {}
    if is_export(directory):
        manifest = ExportManifest.load(Path(directory).expanduser())
        if manifest.source is None or not Path(manifest.source).is_dir():
            raise SharcsError(
                f"{directory}: bench times the export against the PyTorch model it came from, and that run "
                f"({manifest.source}) is not here; bench the run folder, or copy it to that path"
            )
        given[manifest.precision] = Path(directory).expanduser()
        directory = manifest.source
        runtimes = True
    run = load_run(directory, "cpu")
    setting = routing_arguments(run.model, None, cascade, budget, max_drop)
    for width in widths:
        run.model.width_index(width)  # a clear error for a width the model does not have
    data, labels, info = dev_data(run, max_samples)
    with tempfile.TemporaryDirectory(prefix="sharcs-bench-") as scratch:
        extra = {}
        if runtimes:
            if not isinstance(run.model, SharcsModel):
                raise SharcsError(f"a {run.model.method} model does not export; pass --no-onnx")
            exports = onnx_exports(run, Path(scratch), threads, given)
            extra = alternatives(run, exports)
        report = benchmark(
            run.model,
            data,
            threads=threads,
            latency_samples=latency_samples,
            batch_sizes=tuple(batch_sizes),
            repeats=repeats,
            widths=(None, *widths),
            pad_token_id=pad_id(run.tokenizer),
            setting=setting,
            extra=extra,
        )
        if runtimes:
            with pinned_threads(threads):
                for name, mode in report["modes"].items():
                    kwargs = setting if name == "routed" else {"width": float(name.split("=")[1])}
                    mode["scores"] = runner_scores(
                        run, extra, data, labels, info.metrics, kwargs, pad_id(run.tokenizer)
                    )
    report.update({"model": str(run.model_dir), "task": info.task or "file", "split": info.dev_split})
    return report


def curve_dirs(
    directories: Sequence[str | Path],
    out_dir: str | Path,
    taus: Sequence[float] | None = None,
    batch_size: int = 64,
    repeats: int = 3,
    measure_latency: bool = True,
    max_samples: int | None = None,
    threads: int = 0,
    cascade_shares: Sequence[float] = (),
) -> list[Path]:
    """Sweep each run's curve settings (a SHARCS router: `taus` and its widths) on its dev data and
    write the curves of all of them into `out_dir`. `taus` None: `share_taus`, the taus that send 10%,
    20%, ..., 90% of the dev samples below full width."""
    with pinned_threads(threads):
        curves, metric = {}, None
        for directory in directories:
            run = load_run(directory, "cpu")
            data, labels, info = dev_data(run, max_samples)
            metric = metric or info.metrics[0]
            name = Path(directory).resolve().name
            model, pad = run.model, pad_id(run.tokenizer)
            settings = settings_for(model, data, taus, pad, cascade_shares)
            curves[name] = sweep(
                model, data, info.metrics, settings, batch_size, repeats, pad, measure_latency
            )
    return write_curves(curves, out_dir, metric)


def write_report(report: dict[str, Any], path: str | Path) -> None:
    atomic_write_text(path, json.dumps(report, indent=2) + "\n")
