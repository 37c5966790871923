"""One run folder: `RunInfo` (a row of the run list) and `RunHandle` (reads and writes, thread-safe)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from cnnlab.errors import CheckpointError, ConfigError, LabError
from cnnlab.fsutil import atomic_torch_save, atomic_write_bytes, atomic_write_json, disk_full_as_message, dumps
from cnnlab.runlock import RunLock, acquire, is_locked

from .files import (ACTIVE, CHECKPOINTS, EPOCH_PT_RE, JSONL_FILES, PT_FILES, RESUMABLE, STATUSES,
                    checkpoint_epoch, finite, load_error_cause, lock_for, now_iso, pt_problem, read_json)
from .ids import clean_name, clean_tags
from .liveness import OWN_START, effective_status
from .records import read_jsonl


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
        self._lock = lock_for(self.path)
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
            self._config = read_json(self.path / "config.json")
        return self._config

    @property
    def meta(self) -> dict:
        """meta.json: {"name", "tags", "notes"}."""
        return read_json(self.path / "meta.json")

    @property
    def status(self) -> dict:
        """status.json as stored (see `RunStore.get/list_runs` for the interrupted verdict)."""
        return read_json(self.path / "status.json")

    @property
    def result(self) -> dict | None:
        """result.json, or None before the run has been tested."""
        if not (self.path / "result.json").exists():
            return None
        return read_json(self.path / "result.json")

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
            raise CheckpointError(f"cannot load {path}: {load_error_cause(exc)}") from exc
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
                cur["pid"], cur["proc_start"] = os.getpid(), OWN_START
            cur["updated"] = now_iso()
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
        return checkpoint_epoch(self._ckpt_path(which))

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

    # -- lineage: what a resume or a fork starts from
    def planned_epochs(self) -> int:
        """The run's current number of epochs: status.json's (kept up to date by live changes), else the recipe's."""
        try:
            planned = self.status.get("epochs_planned")
        except LabError:
            planned = None
        if isinstance(planned, int) and not isinstance(planned, bool) and planned >= 1:
            return planned
        return int((self.config.get("recipe") or {}).get("epochs") or 1)

    def epochs_set_after(self, step: int, epoch: int) -> int | None:
        """The last live epochs value set after a checkpoint at (step, epoch), or None."""
        later = None
        for r in self.read_events():
            s, e = int(r.get("step") or 0), int(r.get("epoch") or 0)
            if r.get("event") == "set" and r.get("field") == "epochs" and (s > step or (s == step and e > epoch)):
                later = r.get("new")
        return int(later) if isinstance(later, (int, float)) else None

    def fork_epochs(self) -> list[int]:
        """Epochs a fork can start from: epoch_<n>.pt files, and the epochs last.pt / best.pt really hold."""
        found = set(self.epoch_checkpoints())
        for which in ("last", "best"):  # status.json may lag a kill: read the files
            epoch = self.saved_epoch(which)
            if epoch is not None and epoch > 0:
                found.add(epoch)
        return sorted(found)

    def fork_weights(self, epoch: int | None) -> tuple[dict, int]:
        """(state_dict, epoch) saved after `epoch` (None: the latest); LabError listing the saved epochs."""
        available = self.fork_epochs()
        if epoch is None:
            if not available:
                raise LabError(f"run '{self.id}' has no saved epoch to fork from")
            epoch = available[-1]
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 1:
            raise ConfigError("epoch", f"must be a completed epoch (1 or more), got {epoch!r}")
        problems = []
        for which in (f"epoch_{epoch}", "last", "best"):  # every file that may hold that epoch, in turn
            if which.startswith("epoch_") and epoch not in self.epoch_checkpoints():
                continue
            if not which.startswith("epoch_") and not self.has_checkpoint(which):
                continue
            try:
                state = self.load_checkpoint(which)
            except CheckpointError as exc:
                problems.append(str(exc))
                continue
            if int(state.get("epoch", -1)) == epoch and isinstance(state.get("model"), dict):
                return state["model"], epoch
        shown = ", ".join(map(str, available)) or "none"
        why = f" ({'; '.join(problems)})" if problems else ""
        raise LabError(f"run '{self.id}' has no weights saved after epoch {epoch}; saved epochs: {shown}{why}")

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
            state, info.message, persist = effective_status(st, live_ids, self.id, self.path)
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
            info.train_s = next((float(v) for v in (st.get("train_s"), st.get("wall_s")) if finite(v)), None)
            spe = st.get("steps_per_epoch")
            info.steps_per_epoch = spe if isinstance(spe, int) and not isinstance(spe, bool) and spe > 0 else None
        except LabError as exc:
            problems.append(str(exc))
        if info.test_acc is None:
            try:
                info.test_acc = (self.result or {}).get("test_acc")
            except LabError as exc:
                problems.append(str(exc))
        problems += [p for p in (pt_problem(self.path / f) for f in PT_FILES) if p]
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
            st = {**st, "status": state, "message": message, "updated": now_iso()}
            atomic_write_json(self.path / "status.json", st)
