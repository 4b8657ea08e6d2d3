"""What an export folder holds, and checking that it is whole; imports nothing heavy.

sharcs_export.json   this manifest: format, precision, widths, graph files and their SHA-256 sums,
                     the token inputs, the run's task information and where it was exported from
config.json, sharcs_config.json, calibration.json   the model's configs (no weights)
prefix.onnx          embeddings, layers 1..K and the router
width-W.onnx         layers K+1..N and the head at width W, one per width
full.onnx            the plain Hugging Face model at full width: what a user would export instead
tokenizer files

Nothing in the folder runs code when loaded: ONNX graphs, JSON and the tokenizer's JSON files.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sharcs.errors import SharcsError, first_line

MANIFEST = "sharcs_export.json"
FORMAT = 1
PRECISIONS = ("fp32", "int8")
ONNX_PACKAGES = ("onnx", "onnxruntime", "onnxscript")  # the `onnx` extra: export and ONNX Runtime inference


def width_file(width: float) -> str:
    return f"width-{width:g}.onnx"


@dataclass
class ExportManifest:
    """The facts a routed ONNX Runtime model is rebuilt from (see the module docstring)."""

    export_id: str  # also written into every graph's metadata: graphs of one export belong together
    precision: str
    widths: tuple[float, ...]
    inputs: tuple[str, ...]  # the token inputs of prefix.onnx and full.onnx, in order
    hidden_size: int
    num_labels: int
    sha256: dict[str, str]  # graph file -> checksum
    run: dict[str, Any] = field(default_factory=dict)  # "task_info" and "paths" of the run, when known
    source: str | None = None  # the folder it was exported from
    optimizations: dict[str, int] = field(default_factory=dict)  # ONNX Runtime fusions applied
    checks: dict[str, float] = field(default_factory=dict)  # largest logit differences from PyTorch
    versions: dict[str, str] = field(default_factory=dict)
    format: int = FORMAT

    @property
    def graphs(self) -> dict[str, str]:
        """Role -> file: "prefix", "full" and one entry per width ("0.25": "width-0.25.onnx")."""
        return {
            "prefix": "prefix.onnx",
            "full": "full.onnx",
            **{f"{w:g}": width_file(w) for w in self.widths},
        }

    def save(self, folder: Path) -> None:
        (folder / MANIFEST).write_text(json.dumps(dataclasses.asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, folder: str | Path) -> ExportManifest:
        """The manifest of an export folder; a SharcsError when it is missing or malformed."""
        path = Path(folder) / MANIFEST
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise SharcsError(f"{folder} is not a sharcs export folder (no {MANIFEST})") from None
        except (OSError, ValueError) as error:
            raise SharcsError(f"{path} is unreadable ({first_line(error)})") from None
        names = {f.name for f in dataclasses.fields(cls)}
        if (
            not isinstance(data, dict)
            or not {"export_id", "precision", "widths", "sha256"} <= set(data) <= names
        ):
            raise SharcsError(f"{path} is not a sharcs export manifest")
        if data.get("format") != FORMAT:
            raise SharcsError(f"{path}: export format {data.get('format')!r}, this sharcs reads {FORMAT}")
        try:
            manifest = cls(**data)
            manifest.widths = tuple(float(w) for w in manifest.widths)
            manifest.inputs = tuple(str(name) for name in manifest.inputs)
        except (TypeError, ValueError) as error:
            raise SharcsError(f"{path}: bad manifest ({first_line(error)})") from None
        if manifest.precision not in PRECISIONS:
            raise SharcsError(f"{path}: unknown precision {manifest.precision!r}")
        if set(manifest.sha256) != set(manifest.graphs.values()):
            raise SharcsError(
                f"{path}: the checksums do not list its graphs {sorted(manifest.graphs.values())}"
            )
        return manifest

    def verify(self, folder: str | Path) -> None:
        """Every graph file is present and has the checksum recorded at export."""
        for name, expected in self.sha256.items():
            path = Path(folder) / name
            if not path.is_file():
                raise SharcsError(f"{folder} is an incomplete export: {name} is missing")
            if file_sha256(path) != expected:
                raise SharcsError(f"{path} is corrupt or was changed after export (checksum mismatch)")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def is_export(folder: str | Path) -> bool:
    return (Path(folder).expanduser() / MANIFEST).is_file()
