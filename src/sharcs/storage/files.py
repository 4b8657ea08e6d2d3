"""Atomic saves, one scheme for everything: write into a temporary sibling, fsync, then `os.replace` it
into place, so a crash never leaves half a file or folder under the real name.

- A file (`atomic_write_text`) is replaced in one rename.
- A folder that already exists (`atomic_directory`, e.g. model/ or best/) cannot be renamed over, so
  its old copy is first renamed aside (`.<name>.<random>.old`), the new one renamed in, and the old one
  deleted; an old copy left aside by a crash between those two renames is put back by the next save.
- Checkpoints are numbered folders (`numbered_directory`): each save gets a new name `<stem>-<n>[-<n>]`,
  so its one rename is atomic; the newest complete one is current (`newest_numbered`), and the older
  ones are deleted only once the new one is in place.

Scratch entries are named `.<name>.<random>.tmp`; ones left by a killed save are removed by the next save
of the same target.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path


def _remove(path: Path) -> None:
    """Delete a file, symlink or folder tree."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def remove_scratch(folder: Path, name_pattern: str, suffix: str = "tmp") -> list[Path]:
    """Delete the scratch entries `.<name>.<random>.<suffix>` in `folder`; `name_pattern` is a regex."""
    pattern = re.compile(rf"\.(?:{name_pattern})\.[^.]+\.{suffix}")
    found = [p for p in folder.iterdir() if pattern.fullmatch(p.name)] if folder.is_dir() else []
    for path in found:
        _remove(path)
    return found


def _fsync(path: Path) -> None:
    """Flush a file, or a folder's entries, to disk (where the system allows it)."""
    try:
        handle = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(handle)
    except OSError:
        pass  # some systems cannot fsync a folder
    finally:
        os.close(handle)


def _fsync_tree(folder: Path) -> None:
    for path in sorted(folder.rglob("*"), reverse=True):
        _fsync(path)
    _fsync(folder)


@contextmanager
def _scratch_for(target: Path) -> Iterator[Path]:
    """A fresh scratch folder beside `target`, removed afterwards unless it was renamed away."""
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        yield scratch
    finally:
        _remove(scratch)


@contextmanager
def atomic_directory(target: str | Path) -> Iterator[Path]:
    """Yield a scratch folder beside `target`; when the block succeeds it takes `target`'s place.

    Any failure in the block keeps an existing `target` untouched and removes the scratch folder.
    """
    target = Path(target)
    parent, name = target.parent, re.escape(target.name)
    parent.mkdir(parents=True, exist_ok=True)
    parked = sorted(p for p in parent.iterdir() if re.fullmatch(rf"\.{name}\.[^.]+\.old", p.name))
    if parked and not target.exists():
        os.replace(parked.pop(), target)  # a crash parked the old copy and never put the new one in
    for old in parked:
        _remove(old)
    remove_scratch(parent, name)
    with _scratch_for(target) as scratch:
        yield scratch
        _fsync_tree(scratch)
        if target.exists():
            old = scratch.with_suffix(".old")
            os.replace(target, old)
            os.replace(scratch, target)
            _remove(old)
        else:
            os.replace(scratch, target)
        _fsync(parent)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write a text file through a temporary sibling, fsync and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync(path.parent)


# -------------------------------------------------------------------------------- numbered folders
def _numbered(stem: Path) -> list[tuple[tuple[int, ...], Path]]:
    """The `<stem>-<n>[-<n>...]` folders beside `stem`, oldest first."""
    pattern = re.compile(rf"{re.escape(stem.name)}-(\d+(?:-\d+)*)")
    found = []
    for path in stem.parent.iterdir() if stem.parent.is_dir() else []:
        match = pattern.fullmatch(path.name)
        if match and path.is_dir() and not path.is_symlink():
            found.append((tuple(int(n) for n in match[1].split("-")), path))
    return sorted(found)


def newest_numbered(stem: str | Path) -> Path | None:
    """The newest `<stem>-<number>` folder (every one is complete: it got its name last), or None."""
    found = _numbered(Path(stem))
    return found[-1][1] if found else None


@contextmanager
def numbered_directory(stem: str | Path, number: Sequence[int]) -> Iterator[Path]:
    """Yield a scratch folder that becomes `<stem>-<number>`; then the older numbered folders (and a
    leftover `stem` entry of earlier versions of sharcs) are deleted. A number already taken (saved
    before a crash) gets a `-1`, `-2` suffix, so a save never renames over a complete folder."""
    stem = Path(stem)
    parent = stem.parent
    parent.mkdir(parents=True, exist_ok=True)
    remove_scratch(parent, rf"{re.escape(stem.name)}(?:-\d+)*")
    name = f"{stem.name}-" + "-".join(str(int(n)) for n in number)
    final, taken = parent / name, 0
    while final.exists() or final.is_symlink():
        taken += 1
        final = parent / f"{name}-{taken}"
    with _scratch_for(final) as scratch:
        yield scratch
        _fsync_tree(scratch)
        os.replace(scratch, final)
        _fsync(parent)
    for _, old in _numbered(stem):
        if old != final:
            _remove(old)
    if stem.is_symlink() or stem.exists():
        _remove(stem)


def remove_numbered(stem: str | Path) -> None:
    """Delete every `<stem>-<number>` folder, `stem` itself and their scratch entries."""
    stem = Path(stem)
    for _, old in _numbered(stem):
        _remove(old)
    if stem.is_symlink() or stem.exists():
        _remove(stem)
    remove_scratch(stem.parent, rf"{re.escape(stem.name)}(?:-\d+)*")


def remove_tree(path: str | Path) -> None:
    """Delete a folder saved by `atomic_directory`, with its scratch and parked copies."""
    path = Path(path)
    _remove(path)
    remove_scratch(path.parent, re.escape(path.name))
    remove_scratch(path.parent, re.escape(path.name), suffix="old")
