"""The run store: one folder per run under `settings.checkpoint_dir()`.

Layout of `<root>/<run id>/`:
  config.json    immutable: id, created (ISO), preset, spec, recipe, versions, parent, + caller's keys
  meta.json      mutable: name, tags, notes (free text, never used as a path)
  status.json    status, message, traceback, pid, proc_start, updated, epoch, step, best_val_acc,
                 test_acc, wall_s
  metrics.jsonl  step and epoch records, one JSON object a line, appended and flushed per write
  events.jsonl   pause/resume/stop/set/diverged events, same format
  last.pt        torch.save(dict), atomic; best.pt likewise
  epoch_<n>.pt   {"model": state_dict, "epoch": n, "step": ...} after epoch n (what a fork starts from)
  result.json    test_acc, test_loss, confusion (10x10), per_class_acc, wall_s

The store deals in plain dicts and state_dicts; it knows nothing about models or trainers.
"""

from __future__ import annotations

import csv
import io
import json
import os
import platform
import re
import secrets
import shutil
import stat
import tempfile
import threading
import time
import unicodedata
import zipfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Iterable

from cnnlab import settings
from cnnlab.errors import CheckpointError, LabError
from cnnlab.fsutil import (TMP_PREFIX, atomic_torch_save, atomic_write_bytes, atomic_write_json,
                           disk_full_as_message, dumps)
from cnnlab.records import read_jsonl
from cnnlab.runlock import RunLock, acquire, is_locked
from cnnlab.status import ACTIVE, RESUMABLE, STATUSES  # noqa: F401 (ACTIVE: read from here too)

CHECKPOINTS = ("last", "best")
JSON_FILES = ("config.json", "meta.json", "status.json", "result.json")
JSONL_FILES = ("metrics.jsonl", "events.jsonl")
PT_FILES = ("last.pt", "best.pt")
RUN_FILES = JSON_FILES + JSONL_FILES + PT_FILES
EPOCH_PT_RE = re.compile(r"^epoch_([0-9]{1,5})\.pt$")  # weights-only per-epoch files (fork from any epoch)
MAX_EPOCH_FILES = 1000  # TrainConfig allows at most 1000 epochs

_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
NAME_MAX = 200
TAG_MAX, TAGS_MAX = 50, 50
NOTES_MAX = 20_000
MB = 1 << 20
IMPORT_MAX_MEMBER = 512 * MB  # MNIST nets are small; a .pt with optimizer state is a few MB
IMPORT_MAX_TOTAL = 1024 * MB
JSONL_MAX = 32 * MB  # a 20-epoch full-MNIST run at batch 32 logs ~7 MB of steps
JSONL_PER_STEP, JSONL_PER_EPOCH = 400, 2048  # bytes a record takes, with room (measured: ~170 and ~300)


class RunNotFound(LabError):
    """No run folder with that id in the store."""


class InvalidRunId(LabError, ValueError):
    """An id that is not a safe folder name (path traversal, control characters, too long...)."""


class ImportRefused(LabError):
    """A run zip failed validation; nothing was written."""


# ---------------------------------------------------------------- ids and text


def validate_run_id(run_id: Any) -> str:
    """Return `run_id` if it is a safe folder name, else raise InvalidRunId."""
    if not isinstance(run_id, str) or not _ID_RE.match(run_id) or ".." in run_id:
        shown = repr(run_id)[:60]
        raise InvalidRunId(
            f"invalid run id {shown}: use 1-100 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit, without '..'"
        )
    return run_id


def _slug(text: str) -> str:
    slug = re.sub(r"[^a-z0-9_]+", "-", str(text).lower()).strip("-_")
    return slug[:40].strip("-_") or "run"


def new_run_id(preset: str = "run") -> str:
    """A fresh id like `20261122-010203-seed004-a1b2` (local time, preset slug, 4 random hex)."""
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{_slug(preset)}-{secrets.token_hex(2)}"


_WS = "\t\n\r\v\f\x1c\x1d\x1e\x1f\x85\u2028\u2029"


def _strip_controls(text: str, keep: str = "") -> str:
    # Cc = control chars, Cf = invisible format chars (bidi overrides), Zl/Zp = line separators
    return "".join(
        ch for ch in text if ch in keep or unicodedata.category(ch) not in ("Cc", "Cf", "Zl", "Zp")
    )


def clean_name(name: Any, fallback: str) -> str:
    """A display name: control characters removed, whitespace collapsed, <= 200 chars, never empty."""
    # whitespace controls (tab, newline) become single spaces; other controls vanish
    text = " ".join(_strip_controls(str(name if name is not None else ""), _WS).split())[:NAME_MAX].strip()
    return text or fallback


def clean_tags(tags: Iterable[Any]) -> list[str]:
    """Tags: cleaned like names, <= 50 chars each, de-duplicated in order, at most 50."""
    if isinstance(tags, str):
        tags = [tags]
    out: list[str] = []
    for tag in tags or []:
        text = " ".join(_strip_controls(str(tag), _WS).split())[:TAG_MAX].strip()
        if text and text not in out:
            out.append(text)
    return out[:TAGS_MAX]


def clean_notes(notes: Any) -> str:
    """Notes: control characters removed except newlines and tabs, <= 20000 chars."""
    text = _strip_controls(str(notes or "").replace("\r\n", "\n"), keep="\n\t")
    return text[:NOTES_MAX]


# ---------------------------------------------------------------- processes


def proc_start_time(pid: int) -> int | None:
    """Start time of `pid` in clock ticks since boot (Linux /proc/<pid>/stat field 22), else None."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
        return int(raw.rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def _proc_state(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def pid_alive(pid: int, proc_start: int | None = None) -> bool:
    """True if `pid` runs and (when both are known) started at `proc_start`, i.e. was not reused."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    except OSError:
        return False
    if _proc_state(pid) == "Z":  # exited, not yet reaped
        return False
    if proc_start is not None:
        now = proc_start_time(pid)
        if now is not None and now != proc_start:
            return False
    return True


_OWN_START = proc_start_time(os.getpid())


def _effective_status(status: dict, live_ids: set[str] | None, run_id: str,
                      run_dir: Path | None = None) -> tuple[str, str, bool]:
    """(status, message, persist): active runs whose process is gone are reported "interrupted".

    Runs of this process are live only if `run_id in live_ids`; with `live_ids=None` (caller does not
    know) they are reported as stored. Only dead/reused pids are persisted: an own-pid verdict depends
    on the caller and a job being registered could race with it.
    """
    state, message = status.get("status"), status.get("message") or ""
    if state not in ACTIVE:
        return state, message, False
    pid = status.get("pid")
    if isinstance(pid, int) and pid == os.getpid() and status.get("proc_start") in (None, _OWN_START):
        if live_ids is None or run_id in live_ids:
            return state, message, False
        return "interrupted", f"this app restarted its job manager while the run was {state}", False
    if isinstance(pid, int) and pid_alive(pid, status.get("proc_start")):
        return state, message, False
    if run_dir is not None and is_locked(run_dir):
        return state, message, False  # a new writer took the run over and is about to say so
    who = f"process {pid}" if isinstance(pid, int) else "the process"
    return "interrupted", f"{who} ended while the run was {state} (app or CLI stopped or killed)", True


# ---------------------------------------------------------------- small readers


def _read_json(path: Path, where: str | None = None) -> dict:
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


def _load_error_cause(exc: Exception) -> str:
    """The informative line of a torch.load failure (weights-only errors open with a generic preamble)."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()] or [type(exc).__name__]
    line = lines[1] if lines[0].startswith("Weights only load failed") and len(lines) > 1 else lines[0]
    line = line.split(". ")[0]  # miniz and friends append advice paragraphs
    return f"{type(exc).__name__}: {line[:200]}"


def _finite(v: Any) -> bool:
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


def _pt_intact(path: Path) -> str | None:
    """Cheap check that a torch.save file is a complete zip archive; None if fine, else the problem."""
    try:
        with zipfile.ZipFile(path) as zf:
            if not any(n.endswith("data.pkl") for n in zf.namelist()):
                return f"{path.name} is not a torch checkpoint (no data.pkl)"
    except (OSError, zipfile.BadZipFile, ValueError) as exc:
        return f"{path.name} is corrupt or truncated ({exc})"
    return None


_pt_cache: dict[tuple[str, int, int], str | None] = {}


def _pt_problem(path: Path) -> str | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    key = (str(path), st.st_mtime_ns, st.st_size)
    if key not in _pt_cache:
        if len(_pt_cache) > 4096:
            _pt_cache.clear()
        _pt_cache[key] = _pt_intact(path)
    return _pt_cache[key]


_epoch_cache: dict[tuple[str, int, int], int | None] = {}


def _saved_epoch(path: Path) -> int | None:
    """The "epoch" stored in a checkpoint (cached by mtime and size); None if absent or unreadable."""
    import torch

    try:
        st = path.stat()
    except OSError:
        return None
    key = (str(path), st.st_mtime_ns, st.st_size)
    if key not in _epoch_cache:
        if len(_epoch_cache) > 4096:
            _epoch_cache.clear()
        try:  # mmap: only the pickled header is read, not the tensors
            obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            epoch = obj.get("epoch") if isinstance(obj, dict) else None
            _epoch_cache[key] = int(epoch) if isinstance(epoch, int) and not isinstance(epoch, bool) else None
        except Exception:  # noqa: BLE001 - damaged files are reported by _pt_problem
            _epoch_cache[key] = None
    return _epoch_cache[key]


def _versions() -> dict:
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


def _now() -> str:
    return datetime.now().astimezone().isoformat(timespec="seconds")


def _timestamp(iso: Any, fallback: float) -> float:
    try:
        return datetime.fromisoformat(str(iso)).timestamp()
    except ValueError:
        return fallback


_locks: dict[str, threading.RLock] = {}
_locks_guard = threading.Lock()


def _lock_for(path: Path) -> threading.RLock:
    """One lock per run folder, shared by every handle in this process (writers + list_runs)."""
    with _locks_guard:
        return _locks.setdefault(str(path), threading.RLock())


# ---------------------------------------------------------------- run info and handle


@dataclass
class RunInfo:
    """One row of the run list. `status` is "error" (and `error` says why) for a damaged folder."""

    id: str
    path: Path
    name: str
    tags: list[str] = field(default_factory=list)
    notes: str = ""
    preset: str | None = None
    created: str | None = None
    status: str = "error"
    message: str = ""
    best_val_acc: float | None = None
    test_acc: float | None = None
    params: int | None = None
    parent: dict | None = None
    epochs: int | None = None  # epochs completed so far
    epochs_planned: int | None = None  # status.json's epochs_planned (live-editable), else recipe["epochs"]
    error: str | None = None
    sweep: str | None = None  # id of the sweep this run is a trial of
    title: str = ""  # config.json's title (a seed's long name)
    recipe: dict = field(default_factory=dict)  # config.json's recipe as stored (may be odd in an imported run)
    train_s: float | None = None  # status.json's training seconds (train_s, else wall_s)
    steps_per_epoch: int | None = None  # status.json's, once the run has started


class RunHandle:
    """Read/write access to one run folder. Safe to share between threads of one process."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.id = self.path.name
        self._lock = _lock_for(self.path)
        self._config: dict | None = None
        self._checked_tail: set[str] = set()
        self.writer: RunLock | None = None  # held while this handle trains or builds the run

    def lock_writer(self, what: str = "trained") -> RunLock:
        """Take the cross-process writer lock (RunBusy if another process or job holds it); kept on the handle."""
        if self.writer is None or not self.writer.held:
            self.writer = acquire(self.path, what)
        return self.writer

    def release_writer(self) -> None:
        """Drop the writer lock if this handle holds it."""
        if self.writer is not None:
            self.writer.release()

    def __repr__(self) -> str:
        return f"RunHandle({self.id!r})"

    # -- reads
    @property
    def config(self) -> dict:
        """config.json (immutable, cached). LabError if missing or corrupt."""
        if self._config is None:
            self._config = _read_json(self.path / "config.json")
        return self._config

    @property
    def meta(self) -> dict:
        """meta.json: {"name", "tags", "notes"}."""
        return _read_json(self.path / "meta.json")

    @property
    def status(self) -> dict:
        """status.json as stored (see `RunStore.get/list_runs` for the interrupted verdict)."""
        return _read_json(self.path / "status.json")

    @property
    def result(self) -> dict | None:
        """result.json, or None before the run has been tested."""
        if not (self.path / "result.json").exists():
            return None
        return _read_json(self.path / "result.json")

    def read_metrics(self, since: int = 0) -> list[dict]:
        """Metric records from index `since` on (a truncated last line is skipped)."""
        return read_jsonl(self.path / "metrics.jsonl", since)

    def read_events(self, since: int = 0) -> list[dict]:
        """Event records from index `since` on."""
        return read_jsonl(self.path / "events.jsonl", since)

    def has_checkpoint(self, which: str = "last") -> bool:
        """Whether last.pt / best.pt exists."""
        return self._ckpt_path(which).exists()

    def load_checkpoint(self, which: str = "last") -> dict:
        """torch.load(map_location="cpu", weights_only=True); any failure -> CheckpointError naming the file."""
        import torch

        path = self._ckpt_path(which)
        if not path.exists():
            raise CheckpointError(f"no {path.name} in run '{self.id}' ({path})")
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # truncated zip, foreign pickle, unsupported global...
            raise CheckpointError(f"cannot load {path}: {_load_error_cause(exc)}") from exc
        if not isinstance(obj, dict):
            raise CheckpointError(f"{path} holds a {type(obj).__name__}, expected a dict")
        return obj

    # -- writes
    def _append(self, filename: str, recs: Iterable[dict]) -> None:
        lines = "".join(dumps(r) + "\n" for r in recs)
        if not lines:
            return
        path = self.path / filename
        with self._lock:
            if filename not in self._checked_tail:
                self._drop_partial_tail(path)
                self._checked_tail.add(filename)
            try:
                with disk_full_as_message(path), open(path, "a", encoding="utf-8") as f:
                    f.write(lines)
                    f.flush()  # a kill -9 then loses at most what follows
            except OSError:
                self._checked_tail.discard(filename)  # part of a line may be on disk: cut it next time
                raise

    @staticmethod
    def _drop_partial_tail(path: Path) -> None:
        """After a kill mid-line, cut the partial record so the next append starts a clean line."""
        try:
            with open(path, "rb+") as f:
                size = f.seek(0, os.SEEK_END)
                if size == 0:
                    return
                f.seek(max(0, size - 65536))
                tail = f.read()
                if tail.endswith(b"\n"):
                    return
                cut = tail.rfind(b"\n")
                f.truncate(size - len(tail) + cut + 1 if cut >= 0 else max(0, size - len(tail)))
        except FileNotFoundError:
            pass

    def append_metrics(self, recs: list[dict]) -> None:
        """Append step/epoch records to metrics.jsonl (one line each, flushed)."""
        self._append("metrics.jsonl", recs)

    def append_event(self, rec: dict) -> None:
        """Append one event record to events.jsonl."""
        self._append("events.jsonl", [rec])

    def write_status(self, **fields: Any) -> dict:
        """Merge `fields` into status.json (atomic) and return the new status.

        Setting an active status (queued/running/paused) records this process's pid and start time
        unless given, so a later reader can tell a live run from an interrupted one.
        """
        if "status" in fields and fields["status"] not in STATUSES:
            raise ValueError(f"unknown status {fields['status']!r}; known: {', '.join(STATUSES)}")
        with self._lock:
            try:
                cur = self.status
            except LabError:
                cur = {}
            cur.update(fields)
            if fields.get("status") in ACTIVE and "pid" not in fields:
                cur["pid"], cur["proc_start"] = os.getpid(), _OWN_START
            cur["updated"] = _now()
            atomic_write_json(self.path / "status.json", cur)
            return cur

    def save_checkpoint(self, state: dict, which: str = "last") -> Path:
        """torch.save `state` (a plain dict of tensors/values) to last.pt or best.pt atomically."""
        if not isinstance(state, dict):
            raise TypeError("checkpoint state must be a dict (state_dicts and plain values)")
        path = self._ckpt_path(which)
        atomic_torch_save(path, state)
        return path

    def write_result(self, result: dict) -> None:
        """Write result.json (test_acc, test_loss, confusion, per_class_acc, wall_s) atomically."""
        atomic_write_json(self.path / "result.json", dict(result))

    def _write_meta(self, **fields: Any) -> dict:
        with self._lock:
            try:
                meta = self.meta
            except LabError:
                meta = {}
            meta = {"name": meta.get("name", self.id), "tags": meta.get("tags", []),
                    "notes": meta.get("notes", ""), **fields}
            atomic_write_json(self.path / "meta.json", meta)
            return meta

    def _ckpt_path(self, which: str) -> Path:
        if which not in CHECKPOINTS and not (isinstance(which, str) and EPOCH_PT_RE.match(which + ".pt")):
            raise ValueError(f"checkpoint must be one of {CHECKPOINTS} or 'epoch_<n>', got {which!r}")
        return self.path / f"{which}.pt"

    def saved_epoch(self, which: str = "last") -> int | None:
        """The epoch a checkpoint holds (None if it is absent or unreadable); cheap and cached."""
        return _saved_epoch(self._ckpt_path(which))

    def epoch_checkpoints(self) -> list[int]:
        """Epochs with a saved epoch_<n>.pt (sorted)."""
        try:
            names = [p.name for p in self.path.iterdir()]
        except OSError:
            return []
        return sorted(int(m.group(1)) for m in map(EPOCH_PT_RE.match, names) if m)

    def rewind(self, step: int, epoch: int) -> int:
        """Drop what was written after a checkpoint taken at global `step` with `epoch` epochs done.

        Called before resuming from that checkpoint, so the continued curve does not repeat steps:
        metrics with a later step, events with a later step (or at `step` but in a later epoch, i.e.
        after the checkpoint) and epoch_<n>.pt files with n > epoch go. Returns the records dropped.
        """
        def after(r: dict) -> bool:
            s, e = int(r.get("step") or 0), int(r.get("epoch") or 0)
            return s > step or (s == step and r.get("kind") == "event" and e > epoch)

        dropped = 0
        with self._lock:
            for filename in JSONL_FILES:
                path = self.path / filename
                if not path.exists():
                    continue
                recs = read_jsonl(path)
                kept = [r for r in recs if not after(r)]
                if len(kept) != len(recs) or not path.read_bytes().endswith(b"\n"):
                    atomic_write_bytes(path, "".join(dumps(r) + "\n" for r in kept).encode("utf-8"))
                dropped += len(recs) - len(kept)
            for n in self.epoch_checkpoints():
                if n > epoch:
                    (self.path / f"epoch_{n}.pt").unlink(missing_ok=True)
        return dropped

    # -- summary
    def info(self, live_ids: set[str] | None = None) -> RunInfo:
        """A RunInfo for the list; damaged files give status "error" instead of raising."""
        info = RunInfo(id=self.id, path=self.path, name=self.id)
        problems: list[str] = []
        try:
            meta = self.meta
            info.name = clean_name(meta.get("name"), self.id)
            info.tags = clean_tags(meta.get("tags") or [])
            info.notes = str(meta.get("notes") or "")
        except LabError as exc:
            problems.append(str(exc))
        try:
            cfg = self.config
            info.preset, info.created = cfg.get("preset"), cfg.get("created")
            info.params, info.parent = cfg.get("params"), cfg.get("parent")
            info.sweep = cfg.get("sweep") if isinstance(cfg.get("sweep"), str) else None
            recipe = cfg.get("recipe") if isinstance(cfg.get("recipe"), dict) else {}
            info.recipe, info.title = recipe, str(cfg.get("title") or "")
            info.epochs_planned = recipe.get("epochs")
        except LabError as exc:
            problems.append(str(exc))
        try:
            st = self.status
            state, info.message, persist = _effective_status(st, live_ids, self.id, self.path)
            if persist:
                self._persist_interrupted(st, state, info.message)
            info.status = state if state in STATUSES else "error"
            if state not in STATUSES:
                problems.append(f"status.json has unknown status {state!r}")
            info.epochs, info.best_val_acc, info.test_acc = st.get("epoch"), st.get("best_val_acc"), st.get("test_acc")
            if state in RESUMABLE and self.has_checkpoint("last"):
                # a kill between last.pt and status.json leaves the status an epoch behind: last.pt is
                # what a resume continues from
                info.epochs = self.saved_epoch("last") if self.saved_epoch("last") is not None else info.epochs
            if isinstance(st.get("epochs_planned"), int):  # a live epochs change outdates the recipe's
                info.epochs_planned = st["epochs_planned"]
            info.train_s = next((float(v) for v in (st.get("train_s"), st.get("wall_s")) if _finite(v)), None)
            spe = st.get("steps_per_epoch")
            info.steps_per_epoch = spe if isinstance(spe, int) and not isinstance(spe, bool) and spe > 0 else None
        except LabError as exc:
            problems.append(str(exc))
        if info.test_acc is None:
            try:
                info.test_acc = (self.result or {}).get("test_acc")
            except LabError as exc:
                problems.append(str(exc))
        problems += [p for p in (_pt_problem(self.path / f) for f in PT_FILES) if p]
        if problems:
            info.status, info.error = "error", "; ".join(problems)
        return info

    def _persist_interrupted(self, st: dict, state: str, message: str) -> None:
        if is_locked(self.path):
            return  # a live writer holds the run: its own status write is on its way
        with self._lock:
            try:
                if self.status.get("updated") != st.get("updated"):
                    return  # someone wrote meanwhile; their word wins
            except LabError:
                return
            st = {**st, "status": state, "message": message, "updated": _now()}
            atomic_write_json(self.path / "status.json", st)


# ---------------------------------------------------------------- the store


class RunStore:
    """All runs under one root folder (default `settings.checkpoint_dir()`)."""

    def __init__(self, root: Path | None = None):
        self.root = Path(root) if root is not None else settings.checkpoint_dir()
        self.root.mkdir(parents=True, exist_ok=True)
        self.root = self.root.resolve()
        self._lock = threading.RLock()
        self._sweep_stale_temps()

    def _sweep_stale_temps(self, age_s: float = 3600.0) -> None:
        """Remove temp folders/files left by a create, import or delete that was killed midway."""
        cutoff = time.time() - age_s
        for path in self.root.glob(TMP_PREFIX + "*"):
            try:
                if path.lstat().st_mtime < cutoff:
                    shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
            except OSError:
                pass

    def _dir(self, run_id: Any) -> Path:
        """The folder for a validated id, guaranteed to resolve inside root."""
        path = self.root / validate_run_id(run_id)
        if path.resolve().parent != self.root:
            raise InvalidRunId(f"run id {run_id!r} points outside the run store")
        return path

    def run_dir(self, run_id: Any) -> Path:
        """The folder of a run id (InvalidRunId for an unsafe id); it may not exist."""
        return self._dir(run_id)

    def exists(self, run_id: str) -> bool:
        """Whether a run folder with this (valid) id exists."""
        return self._dir(run_id).is_dir()

    def create(self, config: dict, name: str | None = None, run_id: str | None = None, *,
               lock: bool = False) -> RunHandle:
        """Create a run folder (config.json, meta.json, status "queued") atomically; return its handle.

        With `lock` the handle holds the run's writer lock from before the folder appears (`handle.writer`).

        `config` holds spec (list of layer dicts), recipe (dict), preset, parent ({"run_id","epoch"}
        or None) and any other keys; id, created and versions are filled in by the store.
        """
        if not isinstance(config, dict):
            raise TypeError("config must be a dict")
        if "spec" in config and not isinstance(config["spec"], list):
            raise LabError("config 'spec' must be a list of layer dicts")
        if "recipe" in config and not isinstance(config["recipe"], dict):
            raise LabError("config 'recipe' must be a dict")
        parent = config.get("parent")
        if parent is not None:
            if not isinstance(parent, dict):
                raise LabError("config 'parent' must be {'run_id': ..., 'epoch': ...} or None")
            validate_run_id(parent.get("run_id"))
        preset = str(config.get("preset") or "run")
        with self._lock:
            if run_id is not None:
                path = self._dir(run_id)
                if path.exists():
                    raise LabError(f"a run with id '{run_id}' already exists")
            else:
                path = self._dir(new_run_id(preset))
                while path.exists():
                    path = self._dir(new_run_id(preset))
            rid = path.name
            cfg = {**config, "id": rid, "created": _now(), "preset": config.get("preset"),
                   "versions": _versions(), "parent": parent}
            tmp = Path(tempfile.mkdtemp(prefix=TMP_PREFIX + "create-", dir=self.root))
            writer = acquire(tmp) if lock else None  # the flock follows the folder through the rename
            try:
                atomic_write_json(tmp / "config.json", cfg)
                atomic_write_json(tmp / "meta.json", {"name": clean_name(name, rid), "tags": [], "notes": ""})
                atomic_write_json(tmp / "status.json", {
                    "status": "queued", "message": "", "traceback": None, "pid": os.getpid(),
                    "proc_start": _OWN_START, "updated": _now(), "epoch": 0, "step": 0,
                    "best_val_acc": None, "test_acc": None, "wall_s": 0.0})
                os.rename(tmp, path)
            except BaseException:
                if writer is not None:
                    writer.release()
                shutil.rmtree(tmp, ignore_errors=True)
                raise
        handle = RunHandle(path)
        handle.writer = writer
        return handle

    def get(self, run_id: str, live_ids: set[str] | None = None) -> RunHandle:
        """Handle of an existing run; RunNotFound if absent. Persists "interrupted" for dead pids."""
        path = self._dir(run_id)
        if not path.is_dir():
            raise RunNotFound(f"no run '{run_id}' in {self.root}")
        handle = RunHandle(path)
        try:
            _, message, persist = _effective_status(handle.status, live_ids, handle.id, handle.path)
            if persist:
                handle._persist_interrupted(handle.status, "interrupted", message)
        except LabError:
            pass  # damaged status: reading it later raises with the file named
        return handle

    def list_runs(self, live_ids: set[str] | None = None) -> list[RunInfo]:
        """Every run, newest first. Damaged runs list with status "error"; non-id folders are ignored.

        `live_ids`: ids of runs this process is training right now (the job manager's). A run stamped
        with this process's pid but not in `live_ids` is reported "interrupted"; with None, as stored.
        """
        infos: list[tuple[float, RunInfo]] = []
        for path in self.root.iterdir():
            if not _ID_RE.match(path.name) or ".." in path.name or path.is_symlink() or not path.is_dir():
                continue
            try:
                info = RunHandle(path).info(live_ids)
                mtime = path.stat().st_mtime
            except OSError as exc:  # vanished or unreadable while listing
                info, mtime = RunInfo(id=path.name, path=path, name=path.name, error=str(exc)), 0.0
            infos.append((_timestamp(info.created, mtime), info))
        infos.sort(key=lambda t: (t[0], t[1].id), reverse=True)
        return [info for _, info in infos]

    def rename(self, run_id: str, name: str) -> str:
        """Set the display name (cleaned; empty means the id). Returns the stored name."""
        return self.get(run_id)._write_meta(name=clean_name(name, run_id))["name"]

    def set_tags(self, run_id: str, tags: Iterable[str]) -> list[str]:
        """Replace the tags (cleaned, de-duplicated). Returns the stored tags."""
        return self.get(run_id)._write_meta(tags=clean_tags(tags))["tags"]

    def set_notes(self, run_id: str, notes: str) -> str:
        """Replace the notes (free text, control characters removed). Returns the stored notes."""
        return self.get(run_id)._write_meta(notes=clean_notes(notes))["notes"]

    def delete(self, run_id: str, live_ids: set[str] | None = None) -> None:
        """Remove a run folder. Refuses ids outside the store and runs that are still active."""
        handle = self.get(run_id, live_ids)
        try:
            state, _, _ = _effective_status(handle.status, live_ids, handle.id)
        except LabError:
            state = "error"
        if state in ACTIVE:
            raise LabError(f"run '{run_id}' is {state}; stop it before deleting")
        with _lock_for(handle.path), acquire(handle.path):  # never under a process that trains it
            # rename first so a half-finished delete never looks like a run
            trash = self.root / f"{TMP_PREFIX}delete-{handle.id}-{secrets.token_hex(2)}"
            os.rename(handle.path, trash)
            shutil.rmtree(trash, ignore_errors=True)

    def metrics_csv(self, run_id: str) -> str:
        """Step and epoch records of a run as CSV text (a `kind` column tells them apart)."""
        recs = [r for r in self.get(run_id).read_metrics() if r.get("kind") in ("step", "epoch")]
        first = ["kind", "epoch", "step", "loss", "acc", "train_loss", "train_acc", "val_loss",
                 "val_acc", "lr", "ips", "t"]
        extra = sorted({k for r in recs for k in r} - set(first))
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=first + extra, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        for rec in recs:
            writer.writerow({k: (dumps(v) if isinstance(v, (list, dict)) else v) for k, v in rec.items()})
        return buf.getvalue()

    # -- export / import
    def export_zip(self, run_id: str) -> bytes:
        """The run folder as zip bytes: `<id>/config.json`, `<id>/last.pt`, ... (known files only).

        The files are read under the run's lock (a consistent snapshot: no half-appended log line) and
        compressed after it is released, so a training thread writing the run never waits for the zip.
        """
        handle = self.get(run_id)
        files: list[tuple[str, bytes]] = []
        with _lock_for(handle.path):
            for name in (*RUN_FILES, *(f"epoch_{n}.pt" for n in handle.epoch_checkpoints())):
                path = handle.path / name
                if path.is_file() and not path.is_symlink():
                    files.append((f"{handle.id}/{name}", path.read_bytes()))
        return _compress(files)

    def import_zip(self, data: bytes, max_total: int = IMPORT_MAX_TOTAL,
                   max_member: int = IMPORT_MAX_MEMBER, check: Callable[[dict], None] | None = None) -> str:
        """Validate and add a run exported by `export_zip`; returns its id (fresh if the id is taken).

        Refused with ImportRefused, leaving nothing behind: unknown file names, paths with folders
        other than one top folder, `..`, absolute paths, symlinks, encryption, members or totals over
        the limits (checked in the headers and again while inflating), JSON that does not parse, .pt
        files that torch.load(weights_only=True) rejects (so pickled code never runs), no config.json, and
        a config.json that `check` (e.g. the launch's own validation of spec and recipe) refuses.
        """
        tmp = Path(tempfile.mkdtemp(prefix=TMP_PREFIX + "import-", dir=self.root))
        try:
            try:
                top = _extract_checked(data, tmp, max_total, max_member, jsonl_limit(_peek_config(data)))
                cfg = _validate_extracted(tmp)
                if check is not None:
                    check(cfg)
            except LabError as exc:
                raise ImportRefused(f"import refused: {exc}") from None
            except Exception as exc:  # zlib errors, bad CRCs, odd headers: all mean a bad zip
                raise ImportRefused(f"import refused: damaged zip ({type(exc).__name__}: {exc})") from None
            with self._lock, acquire(tmp, "imported"):  # held until the run is complete in its place
                rid = top if top and not (self.root / top).exists() else None
                while rid is None or (self.root / rid).exists():
                    rid = new_run_id(str(cfg.get("preset") or "run"))
                _finalize_import(tmp, rid, cfg)
                os.rename(tmp, self._dir(rid))
            return rid
        finally:
            shutil.rmtree(tmp, ignore_errors=True)  # gone already after a successful rename


def _compress(files: list[tuple[str, bytes]]) -> bytes:
    """A deflated zip of (name, bytes) pairs."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files:
            zf.writestr(name, data)
    return buf.getvalue()


# ---------------------------------------------------------------- import helpers


def _member_target(info: zipfile.ZipInfo) -> tuple[str | None, str | None]:
    """(top folder or None, file name or None for a folder entry) of a safe member; else LabError."""
    name = info.filename
    mode = (info.external_attr >> 16) & 0o170000
    if mode == stat.S_IFLNK:
        raise LabError(f"'{name[:80]}' is a symlink")
    if info.flag_bits & 0x1:
        raise LabError(f"'{name[:80]}' is encrypted")
    if "\\" in name or name.startswith("/") or re.match(r"^[A-Za-z]:", name) or "\x00" in name:
        raise LabError(f"'{name[:80]}' has an absolute or Windows path")
    parts = name.split("/")
    if any(p in ("..", ".") for p in parts):
        raise LabError(f"'{name[:80]}' tries to leave its folder")
    if name.endswith("/"):  # a folder entry: only the single top folder is allowed
        if len(parts) != 2:
            raise LabError(f"unexpected folder '{name[:80]}'")
        return validate_run_id(parts[0]), None
    if len(parts) > 2:
        raise LabError(f"unexpected nested path '{name[:80]}'")
    top, fname = (None, parts[0]) if len(parts) == 1 else (parts[0], parts[1])
    if fname not in RUN_FILES and not EPOCH_PT_RE.match(fname):
        raise LabError(f"unexpected file '{name[:80]}'; a run zip holds only {', '.join(RUN_FILES)}, epoch_<n>.pt")
    if top is not None:
        validate_run_id(top)
    return top, fname


def _peek_config(data: bytes) -> dict:
    """config.json of a run zip read ahead of extraction (for its size limits); {} if absent or odd."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            info = next(i for i in zf.infolist() if i.filename.split("/")[-1] == "config.json")
            if info.file_size > MB:
                return {}
            with zf.open(info) as f:
                obj = json.loads(f.read(MB + 1))
    except Exception:  # noqa: BLE001 - extraction says what is wrong with the zip
        return {}
    return obj if isinstance(obj, dict) else {}


def _extract_checked(data: bytes, dest: Path, max_total: int, max_member: int,
                     max_jsonl: int = JSONL_MAX) -> str | None:
    """Extract the known members of a run zip into `dest`, enforcing every rule; returns the top folder."""
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as exc:
        raise LabError(f"not a zip file ({exc})") from None
    with zf:
        infos = zf.infolist()
        if len(infos) > len(RUN_FILES) + MAX_EPOCH_FILES + 1:
            raise LabError(f"{len(infos)} entries; a run zip holds at most {len(RUN_FILES) + MAX_EPOCH_FILES} files")
        targets = [(info, *_member_target(info)) for info in infos]
        tops = {top for _, top, _ in targets}
        if len(tops) > 1:
            raise LabError("files must sit in one folder (or all at the top level)")
        files = [(info, fname) for info, _, fname in targets if fname]
        if len({f for _, f in files}) != len(files):
            raise LabError("duplicate file names")
        def limit(fname: str) -> tuple[int, str]:
            if fname in JSONL_FILES and max_jsonl < max_member:
                return max_jsonl, f"{max_jsonl}-byte limit for a log of this run's epochs and steps"
            return max_member, f"{max_member}-byte limit"

        for info, fname in files:
            if info.file_size > limit(fname)[0]:
                raise LabError(f"{fname} is {info.file_size} bytes, over the {limit(fname)[1]}")
        if sum(info.file_size for info, _ in files) > max_total:
            raise LabError(f"files total over the {max_total}-byte limit")
        total = 0
        for info, fname in files:
            size = 0
            # headers can lie: count what actually inflates
            cap, cap_text = limit(fname)
            with zf.open(info) as src, open(dest / fname, "xb") as out:
                while chunk := src.read(1 << 16):
                    size += len(chunk)
                    total += len(chunk)
                    if size > cap:
                        raise LabError(f"{fname} inflates past the {cap_text}")
                    if total > max_total:
                        raise LabError(f"files inflate past the {max_total}-byte limit")
                    out.write(chunk)
        return next(iter(tops)) if tops else None


def _validate_extracted(folder: Path) -> dict:
    """Parse every file of an extracted run; returns config.json. LabError naming the bad file."""
    import torch

    if not (folder / "config.json").is_file():
        raise LabError("config.json is missing")
    cfg = _read_json(folder / "config.json", where="")
    parent = cfg.get("parent")
    if parent is not None:
        if not isinstance(parent, dict):
            raise LabError("config.json parent must be {\"run_id\": ..., \"epoch\": ...} or null")
        try:
            validate_run_id(parent.get("run_id"))
        except InvalidRunId as exc:
            raise LabError(f"config.json parent.run_id: {exc}") from None
        epoch = parent.get("epoch")
        if not isinstance(epoch, int) or isinstance(epoch, bool) or not 0 <= epoch <= 1000:
            raise LabError(f"config.json parent.epoch must be an epoch number (0-1000), got {str(epoch)[:40]!r}")
    for name in ("meta.json", "status.json", "result.json"):
        if (folder / name).exists():
            _read_json(folder / name, where="")
    for name in JSONL_FILES:
        path = folder / name
        if not path.exists():
            continue
        try:
            lines = path.read_bytes().split(b"\n")
        except OSError as exc:
            raise LabError(f"{name}: {exc}") from None
        for i, line in enumerate(lines[:-1]):  # a partial last line is tolerated, like the reader does
            try:
                ok = isinstance(json.loads(line), dict)
            except ValueError:
                ok = False
            if not ok:
                raise LabError(f"{name} line {i + 1} is not a JSON object")
    for name in (*PT_FILES, *sorted(p.name for p in folder.iterdir() if EPOCH_PT_RE.match(p.name))):
        path = folder / name
        if not path.exists():
            continue
        problem = _pt_intact(path)
        if problem:
            raise LabError(problem)
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # the restricted unpickler refuses code; never retry unrestricted
            raise LabError(f"{name} is not a plain weights file ({_load_error_cause(exc)})") from None
        if not isinstance(obj, dict):
            raise LabError(f"{name} holds a {type(obj).__name__}, expected a dict")
    return cfg


def _finalize_import(folder: Path, rid: str, cfg: dict) -> None:
    """Stamp the new id into config.json, clean meta.json, and settle status.json for this machine."""
    original = cfg.get("id")
    cfg = {**cfg, "id": rid}
    if original != rid:
        cfg["imported_from"] = original
    atomic_write_json(folder / "config.json", cfg)
    meta = _read_json(folder / "meta.json") if (folder / "meta.json").exists() else {}
    atomic_write_json(folder / "meta.json", {
        "name": clean_name(meta.get("name"), rid), "tags": clean_tags(meta.get("tags") or []),
        "notes": clean_notes(meta.get("notes"))})
    has_result = (folder / "result.json").exists()
    st = _read_json(folder / "status.json") if (folder / "status.json").exists() else {
        "status": "done" if has_result else "stopped", "message": "imported without status.json"}
    if st.get("status") not in STATUSES or st.get("status") in ACTIVE:
        # the pid belongs to another machine or session: it must never look alive here
        st["message"] = f"imported while {st.get('status')!r}"
        st["status"] = "interrupted"
    st.update(pid=None, proc_start=None, updated=_now())
    atomic_write_json(folder / "status.json", st)
