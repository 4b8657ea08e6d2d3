"""`sharcs export`: a trained SHARCS run as ONNX graphs that run routed on ONNX Runtime.

    folder = export_run("runs/sst2", "runs/sst2-onnx")                  # fp32
    folder = export_run("runs/sst2", "runs/sst2-int8", quantize="int8")  # dynamic int8 weights

The folder is written atomically (nothing half-written survives a crash) and checked before it is kept:
the fp32 graphs, run routed on ONNX Runtime, must reproduce the PyTorch model's logits at every width
and routed within `TOLERANCE`. int8 changes the logits by design; the change on the check batch is
recorded in the manifest, and `sharcs evaluate` on the folder measures what it does to accuracy.
ONNX Runtime's transformer fusions (skip + LayerNorm, bias + GELU) are applied where they match;
attention fusion is left off, since a narrow graph has fewer heads than the model's config names.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import io
import logging
import uuid
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sharcs.errors import SharcsError, first_line
from sharcs.export.graphs import FullGraph, PrefixGraph, WidthGraph, export_onnx
from sharcs.export.manifest import ExportManifest, file_sha256, width_file
from sharcs.export.runtime import OnnxSharcsModel, require_onnx
from sharcs.methods.sharcs.model import SharcsModel
from sharcs.modeling.pretrained import pad_id
from sharcs.storage.files import atomic_directory
from sharcs.storage.saved_run import Run, load_run

TOLERANCE = 1e-4  # fp32: largest logit difference from PyTorch that an export may have
logger = logging.getLogger("sharcs.export")


def export_run(
    directory: str | Path | Run, out: str | Path, quantize: str | None = None, optimize: bool = True
) -> Path:
    """Export the SHARCS run (or model folder) `directory` into the folder `out`; returns `out`."""
    require_onnx()
    if quantize not in (None, "int8"):
        raise SharcsError(f"only int8 is supported, got {quantize!r}", option="quantize")
    run = directory if isinstance(directory, Run) else load_run(directory, "cpu")
    model = run.model
    if not isinstance(model, SharcsModel):
        raise SharcsError(
            f"{run.model_dir} holds a {model.method} model; export supports the SHARCS family "
            "(sharcs, cascade, full, fixed, random)"
        )
    model = model.cpu().eval()
    out = Path(out).expanduser()
    graphs: dict[str, Any] = {
        "prefix.onnx": PrefixGraph(model),
        **{width_file(w): WidthGraph(model, w) for w in model.config.widths},
        "full.onnx": FullGraph(model.full_width_base().eval(), model.layout.uses_token_types),
    }
    with atomic_directory(out) as scratch:
        fusions: dict[str, int] = {}
        for step, (name, graph) in enumerate(graphs.items(), 1):
            logger.info("exporting %s (%d/%d)", name, step, len(graphs))
            _export(graph, scratch / name)
            if optimize:
                for fused, count in fuse(scratch / name, model).items():
                    fusions[fused] = fusions.get(fused, 0) + count
        model.save_configs(scratch)
        run.tokenizer.save_pretrained(scratch)
        manifest = ExportManifest(
            export_id=uuid.uuid4().hex,
            precision="fp32",
            widths=model.config.widths,
            inputs=graphs["prefix.onnx"].input_names,
            hidden_size=model.dims.hidden,
            num_labels=model.num_labels,
            sha256={},
            run=_run_facts(run),
            source=str((run.run_dir or run.model_dir).resolve()),
            optimizations=fusions,
            versions={name: _version(name) for name in ("torch", "onnx", "onnxruntime", "sharcs")},
        )
        _stamp(scratch, manifest)
        _write_manifest(manifest, scratch)
        logger.info("checking the graphs against PyTorch")
        full_base, pad = graphs["full.onnx"].base, pad_id(run.tokenizer)
        difference = max(compare(model, full_base, OnnxSharcsModel(scratch), pad).values())
        if difference > TOLERANCE:
            raise SharcsError(
                f"the exported graphs do not reproduce the model (largest logit difference "
                f"{difference:.2e} > {TOLERANCE:g}); please report this"
            )
        manifest.checks["fp32_max_logit_difference"] = difference
        if quantize == "int8":
            for name in graphs:
                logger.info("quantizing %s to int8", name)
                quantize_int8(scratch / name)
            manifest.precision = "int8"
            _stamp(scratch, manifest)
            _write_manifest(manifest, scratch)
            change = compare(model, full_base, OnnxSharcsModel(scratch), pad)
            manifest.checks["int8_max_logit_change"] = max(change.values())
        _write_manifest(manifest, scratch)
    return out


def _run_facts(run: Run) -> dict[str, Any]:
    """What evaluate needs of the run: its task, data paths and text encoding."""
    facts = {key: run.run_config[key] for key in ("task_info", "paths") if key in run.run_config}
    encoding = run.run_config.get("options", {}).get("encoding")
    return {**facts, "options": {"encoding": encoding}} if encoding else facts


def _stamp(folder: Path, manifest: ExportManifest) -> None:
    """Write each graph's role and the export's id into the graph itself (ONNX metadata), so that a
    graph from another export, or put in another graph's place, is refused when loaded."""
    import onnx

    for role, name in manifest.graphs.items():
        graph = onnx.load(str(folder / name))
        stamps = {"sharcs_role": role, "sharcs_export": manifest.export_id}
        kept = [p for p in graph.metadata_props if p.key not in stamps]
        del graph.metadata_props[:]
        graph.metadata_props.extend(kept)
        for key, value in stamps.items():
            graph.metadata_props.add(key=key, value=value)
        onnx.save(graph, str(folder / name))


def _write_manifest(manifest: ExportManifest, folder: Path) -> None:
    manifest.sha256 = {name: file_sha256(folder / name) for name in manifest.graphs.values()}
    manifest.save(folder)


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


@contextlib.contextmanager
def _quiet() -> Any:
    """The exporter's progress prints and warnings, held back (they are about its own internals)."""
    names = ("", "torch.onnx", "onnxscript", "onnx_ir", "onnxruntime")  # "": the quantizer logs on root
    loggers = [logging.getLogger(name) for name in names]
    levels = [log.level for log in loggers]
    silent = logging.NullHandler()  # with a handler on root, a root warning installs no stderr handler
    loggers[0].addHandler(silent)
    for log in loggers:
        log.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        loggers[0].removeHandler(silent)
        for log, level in zip(loggers, levels, strict=True):
            log.setLevel(level)


def _export(graph: Any, path: Path) -> None:
    try:
        with _quiet():
            export_onnx(graph, path)
    except Exception as error:  # the exporter raises many types; the user needs one line
        raise SharcsError(f"exporting {path.name} failed: {first_line(error)}") from None


def fuse(path: Path, model: SharcsModel) -> dict[str, int]:
    """Apply ONNX Runtime's transformer fusions to the graph at `path` in place; the fused op counts."""
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    options = FusionOptions("bert")
    options.enable_attention = False  # its head count would come from the config, wrong for narrow graphs
    options.enable_embed_layer_norm = False  # position ids differ between architectures
    if any(isinstance(m, nn.LayerNorm) and m.bias is None for m in model.modules()):
        # ORT's skip + LayerNorm fusion expects a LayerNorm bias input (ModernBERT's norms have none)
        options.enable_skip_layer_norm = options.enable_bias_skip_layer_norm = False
    with _quiet():
        optimized = optimize_model(
            str(path), model_type="bert", num_heads=0, hidden_size=0, optimization_options=options
        )
        optimized.save_model_to_file(str(path))
    return {name: count for name, count in optimized.get_fused_operator_statistics().items() if count}


def quantize_int8(path: Path) -> None:
    """Dynamic int8 quantization of the graph's matrix products, in place (embeddings stay fp32)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    scratch = path.with_name(path.stem + ".int8.onnx")
    with _quiet():
        quantize_dynamic(
            str(path),
            str(scratch),
            weight_type=QuantType.QInt8,
            op_types_to_quantize=["MatMul", "Gemm"],
            extra_options={"MatMulConstBOnly": True},
        )
    scratch.replace(path)


def probe_batch(model: SharcsModel, pad_token_id: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Three rows of random tokens, two of them padded, for checking an export against PyTorch."""
    generator = torch.Generator().manual_seed(seed)
    vocab = model.base.config.vocab_size
    ids = torch.randint(min(5, vocab - 1), vocab, (3, 16), generator=generator)
    mask = torch.ones_like(ids)
    mask[1, 11:] = 0
    mask[2, 5:] = 0
    ids[mask == 0] = pad_token_id
    batch = {"input_ids": ids, "attention_mask": mask}
    if model.layout.uses_token_types:
        batch["token_type_ids"] = torch.zeros_like(ids)
    return batch


@torch.inference_mode()
def compare(
    model: SharcsModel, full_base: Any, exported: OnnxSharcsModel, pad_token_id: int
) -> dict[str, float]:
    """Largest logit difference between PyTorch and the export: at each forced width, routed by the
    model's own rule, and the plain full graph against the Hugging Face model it was exported from."""
    batch = probe_batch(model, pad_token_id)
    settings = {f"width={w:g}": {"width": w} for w in model.config.widths}
    if model.config.routing != "cascade" or model.num_labels > 1:
        settings["routed"] = {}
    differences = {
        name: float((model(**batch, **kwargs).logits - exported(**batch, **kwargs).logits).abs().max())
        for name, kwargs in settings.items()
    }
    full = full_base(**batch).logits
    differences["full"] = float((full - exported.full_logits(**batch)).abs().max())
    return differences
