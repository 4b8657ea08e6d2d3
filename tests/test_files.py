"""One atomic-save scheme (temporary sibling, fsync, os.replace): a crash at any step never loses the last
good copy, and numbered checkpoint folders resume from the newest complete one."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sharcs.storage.files import (
    atomic_directory,
    atomic_write_text,
    newest_numbered,
    numbered_directory,
    remove_numbered,
    remove_tree,
)


def write(folder: Path, text: str) -> None:
    (folder / "data.txt").write_text(text)


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_atomic_directory_replaces_and_keeps_the_old_copy_on_failure(tmp_path: Path) -> None:
    with atomic_directory(tmp_path / "m") as scratch:
        write(scratch, "one")
    with atomic_directory(tmp_path / "m") as scratch:
        write(scratch, "two")
    assert (tmp_path / "m" / "data.txt").read_text() == "two"
    with pytest.raises(RuntimeError), atomic_directory(tmp_path / "m") as scratch:
        write(scratch, "three")
        raise RuntimeError("killed")
    assert (tmp_path / "m" / "data.txt").read_text() == "two"
    assert names(tmp_path) == ["m"]
    remove_tree(tmp_path / "m")
    assert names(tmp_path) == []


def test_atomic_directory_puts_back_an_old_copy_parked_by_a_crash(tmp_path: Path, monkeypatch) -> None:
    with atomic_directory(tmp_path / "m") as scratch:
        write(scratch, "old")
    real_replace, calls = os.replace, []

    def crash_on_the_second_rename(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            raise OSError("killed between the renames")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", crash_on_the_second_rename)
    with pytest.raises(OSError), atomic_directory(tmp_path / "m") as scratch:
        write(scratch, "new")
    monkeypatch.setattr(os, "replace", real_replace)
    assert not (tmp_path / "m").exists() and any(n.endswith(".old") for n in names(tmp_path))
    with atomic_directory(tmp_path / "other"):  # another folder's save leaves it alone
        pass
    with pytest.raises(RuntimeError), atomic_directory(tmp_path / "m"):
        raise RuntimeError("the next save of m fails too")
    assert (tmp_path / "m" / "data.txt").read_text() == "old"  # the parked copy is back
    assert names(tmp_path) == ["m", "other"]


def test_atomic_write_text_leaves_the_old_file_when_killed(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "results.json"
    atomic_write_text(path, "old")

    def killed(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        atomic_write_text(path, "new")
    monkeypatch.undo()
    assert path.read_text() == "old" and names(tmp_path) == ["results.json"]


def test_numbered_directory_keeps_the_newest_and_deletes_the_rest(tmp_path: Path) -> None:
    stem = tmp_path / "checkpoint"
    assert newest_numbered(stem) is None
    for number in ((0, 2), (0, 10), (1, 0)):
        with numbered_directory(stem, number) as scratch:
            write(scratch, str(number))
    assert newest_numbered(stem) == tmp_path / "checkpoint-1-0"  # (1, 0) > (0, 10): numbers, not text
    assert names(tmp_path) == ["checkpoint-1-0"]

    with pytest.raises(RuntimeError), numbered_directory(stem, (1, 2)) as scratch:
        write(scratch, "half")
        raise RuntimeError("killed while writing")
    assert newest_numbered(stem) == tmp_path / "checkpoint-1-0"
    assert names(tmp_path) == ["checkpoint-1-0"]

    remove_numbered(stem)
    assert names(tmp_path) == [] and newest_numbered(stem) is None


def test_a_crash_after_the_rename_keeps_both_and_the_next_save_cleans_up(tmp_path: Path) -> None:
    stem = tmp_path / "checkpoint"
    with numbered_directory(stem, (0, 2)) as scratch:
        write(scratch, "a")
    os.mkdir(tmp_path / "checkpoint-0-4")  # renamed in, then killed before the old ones were deleted
    os.mkdir(tmp_path / ".checkpoint-0-6.abcd1234.tmp")  # a killed save: never a candidate
    os.symlink("checkpoint-0-2", tmp_path / "checkpoint")  # the pointer earlier versions kept
    assert newest_numbered(stem) == tmp_path / "checkpoint-0-4"
    with numbered_directory(stem, (0, 4)) as scratch:  # the same position again: a suffix
        write(scratch, "again")
    assert newest_numbered(stem) == tmp_path / "checkpoint-0-4-1"
    assert names(tmp_path) == ["checkpoint-0-4-1"], "stale scratch, the old pointer and older folders gone"
