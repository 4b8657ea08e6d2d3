"""An exclusive lock on an output folder, so two `sharcs train` never write into one folder at once.

    with OutputLock(Path("runs/sst2")) as lock:   # takes the lock if the folder exists
        ...                                        # read and check what the folder holds
        lock.acquire()                             # creates the folder if needed; a no-op when held
        ...                                        # write

The lock is an OS lock (`fcntl.flock`, non-blocking) on `<folder>/.sharcs.lock`, so it is released when
its process ends, however it ends; the file holds the owner's pid for the message another process
gets. The file is removed on release, and an acquirer checks it locked the file that is still there.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from types import TracebackType

from sharcs.errors import SharcsError

try:
    import fcntl
except ImportError:  # not on Windows: runs are then not locked
    fcntl = None  # type: ignore[assignment]

LOCK_NAME = ".sharcs.lock"


class OutputLock:
    """The lock of one output folder for one run. Inactive (`active` False: ranks other than 0, or no
    fcntl) it locks nothing, and `acquire` only creates the folder."""

    def __init__(self, folder: str | Path, active: bool = True, command: str = "sharcs train") -> None:
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self.active = active and fcntl is not None
        self.command = command
        self.created_folder = False
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> OutputLock:
        if self.active and self.folder.is_dir():
            self.acquire()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.release()

    def acquire(self) -> None:
        """Create the folder if needed and take the lock; SharcsError when another process holds it."""
        if self.held:
            return
        if not self.folder.exists():
            self.folder.mkdir(parents=True, exist_ok=True)
            self.created_folder = True
        if not self.active:
            return
        for _ in range(20):  # only a concurrent release between open and flock makes us retry
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as error:
                owner = _read_pid(fd)
                os.close(fd)
                if error.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    raise
                pid = f" (pid {owner})" if owner is not None else ""
                raise SharcsError(
                    f"{self.folder} is in use by another {self.command}{pid}; "
                    "wait for it or choose another --output-dir"
                ) from None
            if _same_file(fd, self.path):
                os.ftruncate(fd, 0)
                os.write(fd, f"{os.getpid()}\n".encode())
                self._fd = fd
                return
            os.close(fd)  # the owner released and removed the file we opened: try its successor
        raise SharcsError(f"could not lock {self.path}: it keeps being replaced")

    def release(self) -> None:
        """Remove the lock file and release the lock; a folder this lock created and nothing else
        wrote into is removed too."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            if _same_file(fd, self.path):
                self.path.unlink()
            if self.created_folder and not any(self.folder.iterdir()):
                self.folder.rmdir()
        except OSError:
            pass  # a lock file left behind is harmless: the next run locks it again
        finally:
            os.close(fd)  # closing releases the flock


def _same_file(fd: int, path: Path) -> bool:
    """Whether the open file `fd` is the file at `path` (not one that replaced it)."""
    try:
        here, there = os.fstat(fd), os.stat(path)
    except OSError:
        return False
    return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)


def _read_pid(fd: int) -> int | None:
    """The pid the lock's owner wrote into the lock file, or None."""
    try:
        text = os.pread(fd, 32, 0).decode("ascii", errors="replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None
