"""Atomic file writes: a kill at any moment leaves either the old file or the new one, never half."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

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


def _atomic_write(path: Path, write) -> None:
    """Write through `write(fileobj)` into a temp file beside `path`, fsync, then os.replace."""
    path = Path(path)
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

    _atomic_write(path, lambda f: torch.save(obj, f))
