"""Atomic folders and versioned checkpoint folders: a crash at any step never loses the last good copy."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sharcs.storage import files
from sharcs.storage.files import atomic_directory, latest_version, remove_versions, versioned_directory


def write(folder: Path, text: str) -> None:
    (folder / "data.txt").write_text(text)


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.mark.parametrize("exchange", [True, False], ids=["exchange", "two-renames"])
def test_atomic_directory_replaces_and_keeps_the_old_copy_on_failure(tmp_path, monkeypatch, exchange):
    if not exchange:
        monkeypatch.setattr(files, "_exchange", lambda a, b: False)
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


def test_atomic_directory_puts_back_an_old_copy_parked_by_a_crash(tmp_path, monkeypatch):
    monkeypatch.setattr(files, "_exchange", lambda a, b: False)  # the two-rename fallback
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


def test_versioned_directory_points_at_the_newest_and_deletes_the_rest(tmp_path):
    link = tmp_path / "checkpoint"
    assert latest_version(link) is None
    for version in ((0, 2), (0, 4), (1, 0)):
        with versioned_directory(link, version) as scratch:
            write(scratch, str(version))
    assert link.is_symlink() and (link / "data.txt").read_text() == "(1, 0)"
    assert latest_version(link) == tmp_path / "checkpoint-1-0"
    assert names(tmp_path) == ["checkpoint", "checkpoint-1-0"]

    with pytest.raises(RuntimeError), versioned_directory(link, (1, 2)) as scratch:
        write(scratch, "half")
        raise RuntimeError("killed while writing")
    assert latest_version(link) == tmp_path / "checkpoint-1-0"
    assert names(tmp_path) == ["checkpoint", "checkpoint-1-0"]

    remove_versions(link)
    assert names(tmp_path) == [] and latest_version(link) is None


def test_versioned_directory_without_a_live_link_falls_back_to_the_newest_complete_folder(tmp_path):
    link = tmp_path / "checkpoint"
    for version in ((0, 2), (0, 10)):
        with versioned_directory(link, version) as scratch:
            write(scratch, str(version))
    os.mkdir(tmp_path / "checkpoint-0-3")  # an older complete version (0, 3) < (0, 10)
    os.mkdir(tmp_path / ".checkpoint-0-12.abcd1234.tmp")  # a killed save: never a candidate
    os.symlink("checkpoint-9-9", tmp_path / ".checkpoint.abcd1234.tmp")  # a link never swapped in
    link.unlink()
    assert latest_version(link) == tmp_path / "checkpoint-0-10"
    os.symlink("checkpoint-7-7", link)  # dangling
    assert latest_version(link) == tmp_path / "checkpoint-0-10"

    with versioned_directory(link, (0, 10)) as scratch:  # the same position again: a suffix
        write(scratch, "again")
    assert latest_version(link) == tmp_path / "checkpoint-0-10-1"
    assert names(tmp_path) == ["checkpoint", "checkpoint-0-10-1"], "stale scratch and old versions gone"


def test_a_plain_checkpoint_folder_is_current_and_gets_replaced(tmp_path):
    link = tmp_path / "checkpoint"
    link.mkdir()
    write(link, "plain")
    with versioned_directory(link, (3, 0)) as scratch:
        assert latest_version(link) == link
        write(scratch, "versioned")
    assert link.is_symlink() and (link / "data.txt").read_text() == "versioned"
    assert names(tmp_path) == ["checkpoint", "checkpoint-3-0"]
