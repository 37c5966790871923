"""The run store: every run folder under one root (default `settings.checkpoint_dir()`)."""

from __future__ import annotations

import csv
import io
import os
import secrets
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterable

from cnnlab import settings
from cnnlab.errors import LabError
from cnnlab.fsutil import TMP_PREFIX, atomic_write_json, dumps
from cnnlab.runlock import acquire

from . import archive
from .files import ACTIVE, jsonl_limit, lock_for, now_iso, timestamp, versions
from .handle import RunHandle, RunInfo
from .ids import ID_RE, InvalidRunId, clean_name, clean_notes, clean_tags, new_run_id, validate_run_id
from .liveness import OWN_START, effective_status


class RunNotFound(LabError):
    """No run folder with that id in the store."""


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
            cfg = {**config, "id": rid, "created": now_iso(), "preset": config.get("preset"),
                   "versions": versions(), "parent": parent}
            tmp = Path(tempfile.mkdtemp(prefix=TMP_PREFIX + "create-", dir=self.root))
            writer = acquire(tmp) if lock else None  # the flock follows the folder through the rename
            try:
                atomic_write_json(tmp / "config.json", cfg)
                atomic_write_json(tmp / "meta.json", {"name": clean_name(name, rid), "tags": [], "notes": ""})
                atomic_write_json(tmp / "status.json", {
                    "status": "queued", "message": "", "traceback": None, "pid": os.getpid(),
                    "proc_start": OWN_START, "updated": now_iso(), "epoch": 0, "step": 0,
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
            _, message, persist = effective_status(handle.status, live_ids, handle.id, handle.path)
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
            if not ID_RE.match(path.name) or ".." in path.name or path.is_symlink() or not path.is_dir():
                continue
            try:
                info = RunHandle(path).info(live_ids)
                mtime = path.stat().st_mtime
            except OSError as exc:  # vanished or unreadable while listing
                info, mtime = RunInfo(id=path.name, path=path, name=path.name, error=str(exc)), 0.0
            infos.append((timestamp(info.created, mtime), info))
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
            state, _, _ = effective_status(handle.status, live_ids, handle.id)
        except LabError:
            state = "error"
        if state in ACTIVE:
            raise LabError(f"run '{run_id}' is {state}; stop it before deleting")
        with lock_for(handle.path), acquire(handle.path):  # never under a process that trains it
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
        return archive.compress(archive.snapshot(self.get(run_id)))

    def import_zip(self, data: bytes, max_total: int = archive.IMPORT_MAX_TOTAL,
                   max_member: int = archive.IMPORT_MAX_MEMBER, check: Callable[[dict], None] | None = None) -> str:
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
                top = archive.extract_checked(data, tmp, max_total, max_member,
                                              jsonl_limit(archive.peek_config(data)))
                cfg = archive.validate_extracted(tmp)
                if check is not None:
                    check(cfg)
            except LabError as exc:
                raise archive.ImportRefused(f"import refused: {exc}") from None
            except Exception as exc:  # zlib errors, bad CRCs, odd headers: all mean a bad zip
                raise archive.ImportRefused(f"import refused: damaged zip ({type(exc).__name__}: {exc})") from None
            with self._lock, acquire(tmp, "imported"):  # held until the run is complete in its place
                rid = top if top and not (self.root / top).exists() else None
                while rid is None or (self.root / rid).exists():
                    rid = new_run_id(str(cfg.get("preset") or "run"))
                archive.finalize_import(tmp, rid, cfg)
                os.rename(tmp, self._dir(rid))
            return rid
        finally:
            shutil.rmtree(tmp, ignore_errors=True)  # gone already after a successful rename
