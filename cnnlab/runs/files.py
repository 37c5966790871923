"""The run folder's format: file names, statuses, size limits, and small cached readers of its files."""

from __future__ import annotations

import json
import platform
import re
import threading
import zipfile
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

from cnnlab.errors import LabError
from cnnlab.status import ACTIVE, RESUMABLE, STATUSES  # noqa: F401 (the package re-exports them)

CHECKPOINTS = ("last", "best")
JSON_FILES = ("config.json", "meta.json", "status.json", "result.json")
JSONL_FILES = ("metrics.jsonl", "events.jsonl")
PT_FILES = ("last.pt", "best.pt")
RUN_FILES = JSON_FILES + JSONL_FILES + PT_FILES
EPOCH_PT_RE = re.compile(r"^epoch_([0-9]{1,5})\.pt$")  # weights-only per-epoch files (fork from any epoch)
MAX_EPOCH_FILES = 1000  # TrainConfig allows at most 1000 epochs
MB = 1 << 20
JSONL_MAX = 32 * MB  # a 20-epoch full-MNIST run at batch 32 logs ~7 MB of steps
JSONL_PER_STEP, JSONL_PER_EPOCH = 400, 2048  # bytes a record takes, with room (measured: ~170 and ~300)


def read_json(path: Path, where: str | None = None) -> dict:
    """Read a JSON object; LabError naming the file if missing, unparseable or not an object."""
    where = f" in {path.parent}" if where is None else where
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise LabError(f"{path.name} is missing{where}") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise LabError(f"{path.name}{where} is unreadable: {exc}") from None
    if not isinstance(obj, dict):
        raise LabError(f"{path.name}{where} is not a JSON object")
    return obj


def load_error_cause(exc: Exception) -> str:
    """The informative line of a torch.load failure (weights-only errors open with a generic preamble)."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()] or [type(exc).__name__]
    line = lines[1] if lines[0].startswith("Weights only load failed") and len(lines) > 1 else lines[0]
    line = line.split(". ")[0]  # miniz and friends append advice paragraphs
    return f"{type(exc).__name__}: {line[:200]}"


def finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v == v and abs(v) != float("inf")


def _int(value: Any, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else default


def jsonl_limit(config: dict) -> int:
    """Bytes a run's metrics.jsonl / events.jsonl may hold: what its recipe's epochs and steps log, with room.

    From config.json's recipe (epochs, batch size, training images); never more than JSONL_MAX.
    """
    recipe = config.get("recipe") if isinstance(config.get("recipe"), dict) else {}
    data = recipe.get("data") if isinstance(recipe.get("data"), dict) else {}
    epochs = min(_int(recipe.get("epochs"), 1000), 1000)
    train = _int(data.get("subset"), 0) or max(1, 60_000 - _int(data.get("val_size"), 5000))
    steps = epochs * -(-min(train, 60_000) // _int(recipe.get("batch_size"), 1))
    return min(JSONL_MAX, MB + steps * JSONL_PER_STEP + epochs * JSONL_PER_EPOCH)


def pt_intact(path: Path) -> str | None:
    """Cheap check that a torch.save file is a complete zip archive; None if fine, else the problem."""
    try:
        with zipfile.ZipFile(path) as zf:
            if not any(n.endswith("data.pkl") for n in zf.namelist()):
                return f"{path.name} is not a torch checkpoint (no data.pkl)"
    except (OSError, zipfile.BadZipFile, ValueError) as exc:
        return f"{path.name} is corrupt or truncated ({exc})"
    return None


def _stat_cached(cache: dict, path: Path, read: Callable[[Path], Any],
                 gone: type[OSError] | tuple[type[OSError], ...] = FileNotFoundError) -> Any:
    """`read(path)`, cached by path, mtime and size (a changed file is read again); None where `stat` raises
    `gone` (the file is missing)."""
    try:
        st = path.stat()
    except gone:
        return None
    key = (str(path), st.st_mtime_ns, st.st_size)
    if key not in cache:
        if len(cache) > 4096:
            cache.clear()
        cache[key] = read(path)
    return cache[key]


_pt_cache: dict[tuple[str, int, int], str | None] = {}


def pt_problem(path: Path) -> str | None:
    """`pt_intact` of a checkpoint file, cached; None if it is fine or absent."""
    return _stat_cached(_pt_cache, path, pt_intact)


_epoch_cache: dict[tuple[str, int, int], int | None] = {}


def _stored_epoch(path: Path) -> int | None:
    import torch

    try:  # mmap: only the pickled header is read, not the tensors
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # noqa: BLE001 - damaged files are reported by pt_problem
        return None
    epoch = obj.get("epoch") if isinstance(obj, dict) else None
    return int(epoch) if isinstance(epoch, int) and not isinstance(epoch, bool) else None


def checkpoint_epoch(path: Path) -> int | None:
    """The "epoch" stored in a checkpoint (cached by mtime and size); None if absent or unreadable."""
    return _stat_cached(_epoch_cache, path, _stored_epoch, gone=OSError)


def versions() -> dict:
    from importlib import metadata

    import torch

    import cnnlab

    try:
        tv = metadata.version("torchvision")
    except metadata.PackageNotFoundError:
        tv = None
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": tv,
        "cnnlab": getattr(cnnlab, "__version__", None),
    }


def now_iso() -> str:
    return datetime.now().astimezone().isoformat(timespec="seconds")


def timestamp(iso: Any, fallback: float) -> float:
    try:
        return datetime.fromisoformat(str(iso)).timestamp()
    except ValueError:
        return fallback


_locks: dict[str, threading.RLock] = {}
_locks_guard = threading.Lock()


def lock_for(path: Path) -> threading.RLock:
    """One lock per run folder, shared by every handle in this process (writers + list_runs)."""
    with _locks_guard:
        return _locks.setdefault(str(path), threading.RLock())
