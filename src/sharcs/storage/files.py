"""Atomic writes: a folder or file appears complete, or not at all, so a crash never leaves half a save.

Scratch entries are named `.<name>.<random>.tmp` beside their target; ones left by a killed save are
removed by the next save of the same target.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import os
import re
import shutil
import sys
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


@functools.cache
def _renameat2() -> Any:
    """libc's renameat2 on Linux, else None."""
    if sys.platform != "linux":
        return None
    try:
        function = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    function.restype = ctypes.c_int
    return function


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one atomic rename (RENAME_EXCHANGE); False where the system cannot."""
    function = _renameat2()
    if function is None:
        return False
    if function(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(b))


def _remove(path: Path) -> None:
    """Delete a file, symlink or folder tree."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _discard(path: Path) -> None:
    """Delete a folder by first renaming it to a scratch name, so it never lies half-deleted."""
    doomed = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    os.replace(path, doomed)
    _remove(doomed)


def remove_scratch(folder: Path, name_pattern: str, suffix: str = "tmp") -> list[Path]:
    """Delete the scratch entries `.<name>.<random>.<suffix>` in `folder`; `name_pattern` is a regex."""
    pattern = re.compile(rf"\.(?:{name_pattern})\.[^.]+\.{suffix}")
    found = [p for p in folder.iterdir() if pattern.fullmatch(p.name)] if folder.is_dir() else []
    for path in found:
        _remove(path)
    return found


@contextmanager
def atomic_directory(target: str | Path) -> Iterator[Path]:
    """Yield a scratch folder beside `target`; on success it takes `target`'s place atomically.

    The swap is one rename exchanging the two folders where the system allows it (Linux), else two
    renames; an old copy parked by a crash between those is put back by the next save. Any failure in
    the block keeps an existing `target` untouched and removes the scratch folder.
    """
    target = Path(target)
    parent = target.parent
    parent.mkdir(parents=True, exist_ok=True)
    name = re.escape(target.name)
    backups = sorted(p for p in parent.iterdir() if re.fullmatch(rf"\.{name}\.[^.]+\.old", p.name))
    if backups and not target.exists():
        os.replace(backups.pop(), target)
    for backup in backups:
        _remove(backup)
    remove_scratch(parent, name)
    scratch = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=parent))
    try:
        yield scratch
        if not target.exists():
            os.replace(scratch, target)
        elif not _exchange(scratch, target):  # after an exchange, scratch holds the old copy
            backup = scratch.with_suffix(".old")
            os.replace(target, backup)
            os.replace(scratch, target)
            shutil.rmtree(backup)
    finally:
        _remove(scratch)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write a text file through a temporary file and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# ------------------------------------------------------------------------------- versioned folders
def _versions(link: Path) -> list[tuple[tuple[int, ...], Path]]:
    """The `<link>-<n>[-<n>...]` folders beside `link`, oldest first."""
    pattern = re.compile(rf"{re.escape(link.name)}-(\d+(?:-\d+)*)")
    found = []
    for path in link.parent.iterdir() if link.parent.is_dir() else []:
        match = pattern.fullmatch(path.name)
        if match and path.is_dir() and not path.is_symlink():
            found.append((tuple(int(n) for n in match[1].split("-")), path))
    return sorted(found)


def latest_version(link: str | Path) -> Path | None:
    """The folder `link` points to; without a live link, the newest `<link>-<version>` folder, or None.

    A plain folder at `link` (written before versions existed, or a copy of a run) counts as current.
    """
    link = Path(link)
    if link.is_dir():
        return link.parent / os.readlink(link) if link.is_symlink() else link
    versions = _versions(link)
    return versions[-1][1] if versions else None


@contextmanager
def versioned_directory(link: str | Path, version: Sequence[int]) -> Iterator[Path]:
    """Yield a scratch folder that becomes `<link>-<version>`, with the symlink `link` pointing to it.

    Steps: stale scratch is removed; the block fills the scratch folder; one rename gives it its final
    name; one rename swaps a new symlink over `link`; only then are older versions deleted. A crash at
    any step leaves `link` on a complete version, or no live link and complete versions to fall back on
    (`latest_version`). A version name already taken (saved before a crash) gets a `-1`, `-2` suffix.
    """
    link = Path(link)
    parent = link.parent
    parent.mkdir(parents=True, exist_ok=True)
    remove_scratch(parent, rf"{re.escape(link.name)}(?:-\d+)*")
    name = f"{link.name}-" + "-".join(str(int(n)) for n in version)
    final, taken = parent / name, 0
    while final.exists() or final.is_symlink():
        taken += 1
        final = parent / f"{name}-{taken}"
    scratch = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=parent))
    try:
        yield scratch
        os.replace(scratch, final)
    finally:
        _remove(scratch)
    pointer = parent / f".{link.name}.{uuid.uuid4().hex[:8]}.tmp"
    os.symlink(final.name, pointer, target_is_directory=True)
    if link.is_dir() and not link.is_symlink():
        _discard(link)  # a plain folder cannot be replaced by a rename; the new version is complete
    os.replace(pointer, link)
    for _, old in _versions(link):
        if old != final:
            _discard(old)


def remove_versions(link: str | Path) -> None:
    """Delete `link`, every `<link>-<version>` folder and their scratch entries."""
    link = Path(link)
    if link.is_dir() and not link.is_symlink():
        _discard(link)
    elif link.is_symlink() or link.exists():
        link.unlink()
    for _, old in _versions(link):
        _discard(old)
    remove_scratch(link.parent, rf"{re.escape(link.name)}(?:-\d+)*")
