"""Atomic file writes: a kill at any moment leaves either the old file or the new one, never half."""

from __future__ import annotations

import errno
import io
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from .errors import DiskFullError

TMP_PREFIX = ".tmp-"  # temp files start with a dot so run listings and exports skip them


def _fsync_dir(path: Path) -> None:
    """Persist a rename on POSIX; best effort elsewhere."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def free_mb(folder: Path) -> int:
    """Megabytes free for unprivileged writes on the filesystem of `folder` (-1 if unknown)."""
    try:
        return shutil.disk_usage(folder).free // (1 << 20)
    except OSError:
        return -1


@contextmanager
def disk_full_as_message(path: Path) -> Iterator[None]:
    """Turn ENOSPC / EDQUOT while writing `path` into DiskFullError naming the file and the space left."""
    try:
        yield
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT) or isinstance(exc, DiskFullError):
            raise
        path = Path(path)
        full = DiskFullError(f"no space left on device while writing {path} ({free_mb(path.parent)} MB free)")
        full.errno = exc.errno
        raise full from None


def _atomic_write(path: Path, write) -> None:
    """Write through `write(fileobj)` into a temp file beside `path`, fsync, then os.replace."""
    with disk_full_as_message(path):
        _atomic_write_raw(Path(path), write)


def _atomic_write_raw(path: Path, write) -> None:
    fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX + path.name + ".", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_dir(path.parent)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Replace `path` with `data` atomically (temp file in the same folder + fsync + os.replace)."""
    _atomic_write(path, lambda f: f.write(data))


def json_default(obj: Any) -> Any:
    """Make tensors, numpy values, paths and sets JSON-serialisable."""
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if hasattr(obj, "item"):
        return obj.item()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def dumps(obj: Any, indent: int | None = None) -> str:
    """json.dumps with the lab's converters (NaN stays NaN: diverged losses are data)."""
    return json.dumps(obj, default=json_default, indent=indent, ensure_ascii=False)


def atomic_write_json(path: Path, obj: Any) -> None:
    """Write `obj` as pretty JSON, atomically."""
    atomic_write_bytes(path, (dumps(obj, indent=2) + "\n").encode("utf-8"))


def atomic_torch_save(path: Path, obj: Any) -> None:
    """torch.save `obj` atomically (never pickle modules: save state_dicts and plain values)."""
    import torch

    # serialized in memory first: torch.save writing straight to a full disk fails with an opaque
    # "[enforce fail at inline_container.cc] unexpected pos"; a plain write gives ENOSPC
    buf = io.BytesIO()
    torch.save(obj, buf)
    _atomic_write(path, lambda f: f.write(buf.getbuffer()))
