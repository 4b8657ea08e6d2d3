"""A SHARCS model routed on ONNX Runtime, from an export folder (sharcs.export.writer).

    model = OnnxSharcsModel("runs/sst2-onnx", threads=2)
    out = model(input_ids=ids, attention_mask=mask)   # SharcsOutput, as the PyTorch model returns
    run = load_export("runs/sst2-onnx")               # a Run: predict, evaluate and bench take it

The model is a `SharcsModel` whose two compute steps (`prefix`, `run_width`) run ONNX Runtime sessions;
routing, grouping by width, padding trimming, the cascade and the scatter back into input order are
the PyTorch model's own code, so both runtimes route alike. Its PyTorch modules live on the meta device:
they hold the structure (sizes, FLOPs, the routing rule), never weights, and cannot compute.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import AutoModelForSequenceClassification

from sharcs.errors import SharcsError, first_line
from sharcs.export.manifest import ONNX_PACKAGES, ExportManifest
from sharcs.methods.registry import model_classes
from sharcs.methods.sharcs.model import SharcsModel
from sharcs.modeling.adaptive import read_calibration, read_configs


def require_onnx() -> None:
    """A clear error when the optional ONNX packages are not installed."""
    missing = [name for name in ONNX_PACKAGES if importlib.util.find_spec(name) is None]
    if missing:
        raise SharcsError(
            f"ONNX export and inference need {', '.join(missing)}: "
            "pip install 'sharcs[onnx]' (or make install)"
        )


def session(path: Path, threads: int = 0) -> Any:
    """An ONNX Runtime CPU session on `path` with `threads` intra-op threads (0: ONNX Runtime's choice).

    Its threads do not busy-wait between runs: a routed model runs several sessions in turn (and a
    benchmark interleaves them with PyTorch), and threads left spinning by one would take the cores
    from the next (measured here: the Hugging Face model 10x slower beside spinning sessions)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3  # errors only
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as error:  # ORT raises its own exception types for a bad graph
        raise SharcsError(f"{path} is not a loadable ONNX graph ({first_line(error)})") from None


class OnnxSharcsModel(SharcsModel):
    """A SHARCS model whose graphs run on ONNX Runtime (see the module docstring)."""

    def __init__(self, folder: str | Path, threads: int = 0):
        require_onnx()
        folder = Path(folder).expanduser()
        manifest = ExportManifest.load(folder)
        manifest.verify(folder)
        cls, base_config, config = read_configs(folder, _model_class)
        if not issubclass(cls, SharcsModel):
            raise SharcsError(f"{folder}: the manifest describes a {cls.method} model, which does not export")
        with torch.device("meta"):
            base = AutoModelForSequenceClassification.from_config(base_config, trust_remote_code=False)
            super().__init__(base, config)
        if tuple(config.widths) != manifest.widths or base_config.num_labels != manifest.num_labels:
            raise SharcsError(f"{folder}: the manifest and sharcs_config.json describe different models")
        self.calibration = read_calibration(folder)
        self.folder = folder
        self.manifest = manifest
        self.threads = threads
        self.sessions = {role: session(folder / name, threads) for role, name in manifest.graphs.items()}
        self._check_signatures()
        self.eval()

    def _check_signatures(self) -> None:
        """Each graph takes and returns what the manifest says, at this model's sizes."""
        expected = {
            "prefix": (
                self.manifest.inputs,
                {"hidden": self.dims.hidden, "router_logits": len(self.config.widths)},
            ),
            "full": (self.manifest.inputs, {"logits": self.num_labels}),
            **{
                f"{w:g}": (("hidden", "attention_mask"), {"logits": self.num_labels})
                for w in self.config.widths
            },
        }
        for role, (inputs, outputs) in expected.items():
            graph = self.sessions[role]
            stamps = graph.get_modelmeta().custom_metadata_map
            if stamps.get("sharcs_role") != role or stamps.get("sharcs_export") != self.manifest.export_id:
                raise SharcsError(
                    f"{self.folder / self.manifest.graphs[role]} does not belong here: it is the "
                    f"{stamps.get('sharcs_role', 'unknown')!r} graph of export "
                    f"{stamps.get('sharcs_export', 'unknown')}, not the {role!r} graph of this one"
                )
            names = tuple(i.name for i in graph.get_inputs())
            sizes = {o.name: o.shape[-1] for o in graph.get_outputs()}
            if names != tuple(inputs) or sizes != outputs:
                raise SharcsError(
                    f"{self.folder / self.manifest.graphs[role]} does not match this export: it takes "
                    f"{list(names)} and returns {sizes}, expected {list(inputs)} and {outputs}"
                )

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    def _tokens(self, **tokens: torch.Tensor | None) -> dict[str, np.ndarray]:
        feed = {}
        for name in self.manifest.inputs:
            value = tokens.get(name)
            if value is None:  # token types default to segment 0, as in the Hugging Face model
                value = torch.zeros_like(tokens["input_ids"])
            feed[name] = value.to(torch.int64).numpy()
        return feed

    def prefix(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None,
        needs_router: bool,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        feed = self._tokens(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
        hidden, router_logits = self.sessions["prefix"].run(None, feed)
        return torch.from_numpy(hidden), torch.from_numpy(router_logits) if needs_router else None

    def run_width(self, hidden: torch.Tensor, attention_mask: torch.Tensor, width: float) -> torch.Tensor:
        feed = {
            "hidden": hidden.contiguous().numpy(),
            "attention_mask": attention_mask.to(torch.int64).numpy(),
        }
        return torch.from_numpy(self.sessions[f"{width:g}"].run(None, feed)[0])

    def full_logits(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The exported plain full model (full.onnx): the alternative a user would run instead."""
        feed = self._tokens(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
        return torch.from_numpy(self.sessions["full"].run(None, feed)[0])

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        if kwargs.get("output_hidden_states") or kwargs.get("labels") is not None:
            raise SharcsError("an ONNX export computes logits and routes only (no hidden states or losses)")
        return super().forward(*args, **kwargs)

    def width_pass(self, *args: Any, **kwargs: Any) -> Any:
        raise SharcsError("an ONNX export runs whole widths only (no per-layer outputs)")

    def save_pretrained(self, directory: str | Path) -> None:
        raise SharcsError("an ONNX export holds no PyTorch weights to save; export again from the run")

    def full_width_base(self) -> Any:
        raise SharcsError("an ONNX export holds no PyTorch weights; start from the run it was exported from")

    def training_hooks(self, *args: Any, **kwargs: Any) -> Any:
        raise SharcsError("an ONNX export cannot be trained; train the run it was exported from")


def _model_class(method: str) -> type:
    classes = model_classes()
    if method not in classes:
        raise SharcsError(f"unknown method {method!r} in an export (known: {sorted(classes)})")
    return classes[method]
