"""One writer per run, across processes: an `fcntl.flock` on `<run>/.writer.lock`.

Every process that trains a run (train, resume, the new run of a fork) or builds one (import) holds the
lock for as long as it writes; the kernel releases it when the process dies, so a kill -9 never leaves a
stale lock. A second writer is refused with "run X is being trained by process P". The lock file holds the
holder's pid for that message; its presence means nothing (only the flock counts).
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

from .errors import LabError
from .fsutil import TMP_PREFIX

LOCK_NAME = ".writer.lock"
META_TMP_AGE_S = 60.0  # meta.json is written without the lock (rename, tags): leave its fresh temps alone


class RunBusy(LabError):
    """Another process (or job) is writing this run."""


class RunLock:
    """The held writer lock of one run folder; `release()` (or process exit) frees it."""

    def __init__(self, fd: int, path: Path):
        self._fd: int | None = fd
        self.path = path

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        """Unlock and close (idempotent)."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing the only descriptor drops the flock

    def __enter__(self) -> "RunLock":
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _holder(fd: int) -> str:
    try:
        text = os.pread(fd, 64, 0).decode("ascii", "replace").split()
        return text[0] if text else "?"
    except OSError:
        return "?"


def acquire(folder: Path, what: str = "trained") -> RunLock:
    """Take the writer lock of a run folder without waiting; RunBusy naming the holder's pid if taken.

    On success the folder's leftover temp files (from writers that were killed) are removed.
    """
    folder = Path(folder)
    path = folder / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except FileNotFoundError:
        raise LabError(f"run folder {folder} does not exist") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        pid = _holder(fd)
        os.close(fd)
        raise RunBusy(f"run {folder.name} is being {what} by process {pid}") from None
    except BaseException:
        os.close(fd)
        raise
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    except OSError:
        pass  # a full disk: the lock holds all the same, only the pid in the message is missing
    sweep_temps(folder)
    return RunLock(fd, path)


def is_locked(folder: Path) -> bool:
    """Whether some process holds the writer lock of `folder` (this process's own locks count too)."""
    try:
        fd = os.open(Path(folder) / LOCK_NAME, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False  # no lock file: nobody ever locked it (every writer creates it)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # also drops the shared lock just taken
    return False


def sweep_temps(folder: Path) -> list[str]:
    """Remove `.tmp-*` files a killed writer left in a run folder (call while holding its lock)."""
    removed = []
    cutoff = time.time() - META_TMP_AGE_S
    for path in Path(folder).glob(TMP_PREFIX + "*"):
        try:
            if path.name.startswith(TMP_PREFIX + "meta.json.") and path.lstat().st_mtime > cutoff:
                continue
            if path.is_file() or path.is_symlink():
                path.unlink()
                removed.append(path.name)
        except OSError:
            pass
    return removed
