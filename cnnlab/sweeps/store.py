"""Sweeps on disk: `<run store>/_sweeps/<sweep id>/` beside the runs (a leading `_` is never a run id).

  sweep.json    id, created, definition (space, search, trials...), address, status, message, pid,
                proc_start, concurrent, best (run id), updated; written atomically
  control.json  stop requests from the page: {"all": bool, "runs": [run ids]}; the driver polls it

Each trial is an ordinary run whose config.json carries `sweep` (this id) and `sweep_params` (the
sampled values); `trials()` finds them through the one run listing.
"""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path
from typing import Any

from ..errors import LabError
from ..fsutil import atomic_write_json
from ..runs import OWN_START, RunHandle, RunInfo, RunStore, now_iso, pid_alive, read_json, validate_run_id

DIRNAME = "_sweeps"
SWEEP_STATUSES = ("running", "done", "stopped", "failed", "interrupted")


def new_sweep_id() -> str:
    """A fresh id like `sweep-20261202-063000-a1b2`."""
    return f"sweep-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"


class SweepStore:
    """Sweep records of one run store."""

    def __init__(self, runs: RunStore | None = None):
        self.runs = runs if runs is not None else RunStore()
        self.root = self.runs.root / DIRNAME

    def _dir(self, sweep_id: str) -> Path:
        return self.root / validate_run_id(sweep_id)

    def create(self, sweep_id: str, definition: dict, **fields: Any) -> dict:
        """Write a new sweep.json (status running, this process's pid)."""
        path = self._dir(sweep_id)
        if (path / "sweep.json").exists():
            raise LabError(f"a sweep with id '{sweep_id}' already exists")
        path.mkdir(parents=True, exist_ok=True)
        rec = {"id": sweep_id, "created": now_iso(), "definition": definition, "status": "running", "message": "",
               "pid": os.getpid(), "proc_start": OWN_START, "best": None, **fields, "updated": now_iso()}
        atomic_write_json(path / "sweep.json", rec)
        return rec

    def update(self, sweep_id: str, **fields: Any) -> dict:
        rec = {**self._raw(sweep_id), **fields, "updated": now_iso()}
        atomic_write_json(self._dir(sweep_id) / "sweep.json", rec)
        return rec

    def _raw(self, sweep_id: str) -> dict:
        path = self._dir(sweep_id) / "sweep.json"
        if not path.exists():
            raise LabError(f"no sweep '{sweep_id}' in {self.root}")
        return read_json(path)

    def get(self, sweep_id: str) -> dict:
        """sweep.json, with a running sweep whose driver is gone reported as interrupted."""
        rec = self._raw(sweep_id)
        if rec.get("status") == "running" and not pid_alive(rec.get("pid"), rec.get("proc_start")):
            rec = {**rec, "status": "interrupted",
                   "message": f"the sweep's driver (process {rec.get('pid')}) ended while it ran"}
        return rec

    def list(self) -> list[dict]:
        """Every sweep, newest first (unreadable ones skipped)."""
        if not self.root.is_dir():
            return []
        out = []
        for path in self.root.iterdir():
            if (path / "sweep.json").is_file():
                try:
                    out.append(self.get(path.name))
                except LabError:
                    continue
        return sorted(out, key=lambda r: (str(r.get("created")), r["id"]), reverse=True)

    # -- stop requests (page -> driver)
    def request_stop(self, sweep_id: str, run_id: str | None = None) -> None:
        """Ask the driver to stop one trial (`run_id`) or the whole sweep (None)."""
        path = self._dir(sweep_id) / "control.json"
        ctl = self.stop_requests(sweep_id)
        if run_id is None:
            ctl["all"] = True
        elif run_id not in ctl["runs"]:
            ctl["runs"].append(validate_run_id(run_id))
        atomic_write_json(path, ctl)

    def stop_requests(self, sweep_id: str) -> dict:
        path = self._dir(sweep_id) / "control.json"
        try:
            ctl = read_json(path)
        except LabError:
            ctl = {}
        return {"all": bool(ctl.get("all")), "runs": [r for r in ctl.get("runs") or [] if isinstance(r, str)]}

    # -- trials
    def trials(self, sweep_id: str, infos: list[RunInfo] | None = None) -> list[RunInfo]:
        """The runs of a sweep, oldest first (trial order)."""
        infos = self.runs.list_runs() if infos is None else infos
        return sorted((i for i in infos if i.sweep == sweep_id), key=lambda i: (str(i.created), i.id))


def best_trial(trials: list[RunInfo]) -> RunInfo | None:
    """The trial with the highest best validation accuracy."""
    scored = [t for t in trials if isinstance(t.best_val_acc, (int, float))]
    return max(scored, key=lambda t: t.best_val_acc) if scored else None


def is_active(rec: dict) -> bool:
    return rec.get("status") == "running"


def trial_rows(sweeps: SweepStore, sweep_id: str, infos: list | None = None) -> list[dict]:
    """One dict per trial: run_id, params, status (early-stopped shown as such), epochs, accuracies."""
    rows = []
    for info in sweeps.trials(sweep_id, infos):
        try:
            cfg, st = RunHandle(info.path).config, RunHandle(info.path).status
        except LabError:
            cfg, st = {}, {}
        status = "early-stopped" if st.get("early_stopped") and info.status == "stopped" else info.status
        rows.append({"trial": cfg.get("sweep_trial"), "run_id": info.id, "name": info.name,
                     "params": cfg.get("sweep_params") or {}, "status": status, "epochs": info.epochs,
                     "epochs_planned": info.epochs_planned, "best_val_acc": info.best_val_acc,
                     "test_acc": info.test_acc, "message": info.message,
                     "time_s": st.get("train_s") if st.get("train_s") is not None else st.get("wall_s")})
    return sorted(rows, key=lambda r: (r["trial"] if isinstance(r["trial"], int) else 1 << 30, r["run_id"]))


def summary(sweeps: SweepStore, sweep_id: str) -> dict:
    """The sweep as the CLI prints it: id, status, space, search, best trial, and every trial."""
    rec = sweeps.get(sweep_id)
    rows = trial_rows(sweeps, sweep_id)
    scored = [r for r in rows if isinstance(r["best_val_acc"], (int, float))]
    best = max(scored, key=lambda r: r["best_val_acc"]) if scored else None
    d = rec.get("definition") or {}
    return {"sweep_id": sweep_id, "status": rec.get("status"), "message": rec.get("message"),
            "preset": d.get("preset"), "space": d.get("space"), "search": d.get("search"),
            "early_stop": d.get("early_stop"), "address": rec.get("address"), "best": best, "trials": rows}
