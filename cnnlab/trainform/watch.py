"""Watching a run on the Train page: which run to show, its progress and status lines, live changes, and a
stored run's view (a JobView look-alike read from the store)."""

from __future__ import annotations

import math
from typing import Any, Iterable

from ..fields import LIVE_FIELDS, live_value
from ..errors import ConfigError, LabError
from .form import ACTIVE, as_int


def is_active(status: str | None) -> bool:
    return status in ACTIVE


def pick_run(candidates: Iterable[str | None], jobs: list[Any]) -> str | None:
    """The run to show: the first candidate that is a known job, else the newest active job, else the newest.

    `candidates` in priority order (session state, then the URL's ?run=); `jobs` newest first.
    """
    ids = [j.id for j in jobs]
    for c in candidates:
        if c and c in ids:
            return c
    for j in jobs:
        if is_active(j.status):
            return j.id
    return ids[0] if ids else None


def fmt_duration(s: float | None) -> str:
    """Seconds as '1h 02m', '3m 05s', '12s'; '—' when unknown."""
    if s is None or not math.isfinite(s) or s < 0:
        return "—"
    s = int(round(s))
    if s >= 3600:
        return f"{s // 3600}h {s % 3600 // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m {s % 60:02d}s"
    return f"{s}s"


def progress(view: Any) -> tuple[float, str]:
    """Progress fraction and its line: epoch, step, ETA, images/s."""
    total = getattr(view, "total_steps", 0) or 0
    step = getattr(view, "step", 0) or 0
    frac = min(1.0, max(0.0, step / total)) if total else 0.0
    spe = getattr(view, "steps_per_epoch", 0) or 0
    epochs = getattr(view, "epochs", 0) or 0
    if spe and view.status in ACTIVE:  # the epoch being trained, 1-based
        cur = min(epochs or 10**9, step // spe + 1)
    else:
        cur = getattr(view, "epoch", 0) or 0
    parts = [f"epoch {cur}/{epochs or '?'}", f"step {step}/{total or '?'}"]
    if view.status in ("running",):
        parts.append(f"ETA {fmt_duration(view.eta_s)}")
    if view.ips:
        parts.append(f"{view.ips:,.0f} img/s")
    return frac, " · ".join(parts)


def status_line(view: Any) -> tuple[str, str]:
    """(level, text) for a run's status: level is info | success | warning | error."""
    st, msg = view.status, (view.message or "").strip()
    if st == "done":
        test = f"; test accuracy {view.test_acc:.2%}" if view.test_acc is not None else ""
        best = f"best validation accuracy {view.best_val_acc:.2%}" if view.best_val_acc is not None else "finished"
        return "success", f"Done: {best}{test}."
    if st == "diverged":
        return "error", f"Diverged: {msg or f'the loss became NaN/inf at step {view.step}'}"
    if st == "failed":
        return "error", f"Failed: {short_cause(msg)}"
    if st == "stopped":
        return "warning", msg or f"Stopped at step {view.step}."
    if st == "interrupted":
        return "warning", msg or "Interrupted: the process that trained it ended."
    if st == "paused":
        return "info", "Paused — press Resume to continue."
    phase = getattr(view, "phase", "") if st in ("queued", "running") else ""  # before its first step
    if phase:  # Launch to the first curve point can take seconds: say what happens
        return "info", f"Starting… {phase}; the curve appears with the first step."
    if st == "queued":
        return "info", msg or "Queued: waiting for a free training slot (2 run at once)."
    if not getattr(view, "step", 0):
        return "info", ("Starting… loading MNIST into memory, building the model, then the first steps; the "
                        "curve appears with the first step.")
    return "info", f"Training… {msg}".strip()


def short_cause(message: str, limit: int = 600) -> str:
    """A failure message for display: data-missing messages whole (they list paths), others trimmed."""
    message = (message or "unknown error").strip()
    if message.startswith("MNIST is not available"):
        return message
    first = message.splitlines()[0]
    return first if len(first) <= limit else first[: limit - 1] + "…"


def job_rows(jobs: list[Any], names: dict[str, str] | None = None) -> list[dict]:
    """One table row per job for the run list (`names` overrides display names, e.g. after a rename)."""
    rows = []
    for j in jobs:
        rows.append({
            "name": (names or {}).get(j.id, j.name), "id": j.id, "status": j.status, "preset": j.preset,
            "epoch": f"{j.epoch or 0}/{j.epochs or '?'}",
            "best val acc": f"{j.best_val_acc:.2%}" if j.best_val_acc is not None else "",
        })  # the id second: in a narrow column a last one was cut off
    return rows


LIVE_EPOCHS_HELP = ("More epochs extend the run, fewer end it after the epoch in progress. One-cycle and cosine "
                    "schedules re-stretch over the new total from that step; StepLR keeps its steps.")


def live_changes(current: dict[str, float], wanted: dict[str, Any]) -> dict[str, float]:
    """The live fields whose wanted value differs from the current one (relative tolerance 1e-9)."""
    out = {}
    for k in LIVE_FIELDS:
        if k not in wanted or wanted[k] is None:
            continue
        new, old = wanted[k], current.get(k)
        if isinstance(new, bool) or not isinstance(new, (int, float)):
            raise ConfigError(k, f"must be a number, got {new!r}")
        if old is None or not math.isclose(float(new), float(old), rel_tol=1e-9, abs_tol=0.0):
            out[k] = as_int(k, new) if k == "epochs" else float(new)
    return out


def check_live(changes: dict[str, float]) -> None:
    """ConfigError naming the first live value out of its range (fields.RANGES, as the engine); nothing applied."""
    for k, v in changes.items():
        live_value(k, v)


class StoredRunView:
    """A JobView look-alike for a run only the store knows (e.g. after a restart): curves and status from disk."""

    ips = None
    eta_s = None
    traceback = ""

    def __init__(self, handle: Any, info: Any):
        from ..runs import records

        self.handle, self.info = handle, info
        self.id, self.preset = handle.id, info.preset or "run"
        self.name, self.status = info.name, info.status
        self.message = info.error if info.status == "error" else info.message
        self._records = records.stored(handle.path)  # shared and incremental: a poll reads only what was appended
        self._records.refresh()
        self.generation = self._records.generation  # changes when the files were rewritten (a resume's rewind)
        try:
            st = handle.status
        except LabError:
            st = {}
        self.epoch = info.epochs or 0
        self.epochs = info.epochs_planned or st.get("epochs_planned") or 0
        self.steps_per_epoch = st.get("steps_per_epoch") or 0
        self.step = st.get("step") or 0
        self.total_steps = self.steps_per_epoch * self.epochs if self.steps_per_epoch else 0
        self.best_val_acc, self.test_acc = info.best_val_acc, info.test_acc
        if self.status == "failed":
            self.traceback = st.get("traceback") or ""

    def records_since(self, k: int) -> tuple[list[dict], int]:
        return self._records.since(k)

    def live_values(self) -> dict:
        return {}


def stored_view(manager: Any, run_id: Any) -> StoredRunView | None:
    """A StoredRunView of a store run, or None if there is no such (valid) run."""
    from ..runs import RunNotFound

    try:
        handle = manager.store.get(run_id, live_ids=manager.live_ids())
        info = handle.info(manager.live_ids())
    except (RunNotFound, LabError, OSError, TypeError):
        return None
    return StoredRunView(handle, info)


def is_stored_run(manager: Any, run_id: Any) -> bool:
    """Whether `run_id` is a valid id of a run folder in the store (never raises)."""
    try:
        return bool(run_id) and manager.store.exists(run_id)
    except (LabError, OSError, TypeError):
        return False


def choose_run(candidates: Iterable[str | None], jobs: list[Any], is_stored: Any) -> str | None:
    """Like pick_run, but a candidate that is only in the store (e.g. ?run= after a restart) counts too."""
    ids = {j.id for j in jobs}
    for c in candidates:
        if c and (c in ids or is_stored(c)):
            return c
    return pick_run([], jobs)


def stored_key(manager: Any, run_id: str) -> tuple:
    """Changes when a stored run's files change (size/mtime), so a cached StoredRunView can be reused."""
    from ..runs import validate_run_id

    out: list[Any] = [validate_run_id(run_id)]
    for f in ("status.json", "metrics.jsonl", "events.jsonl", "meta.json"):
        try:
            s = (manager.store.root / run_id / f).stat()
            out.append((s.st_size, s.st_mtime_ns))
        except OSError:
            out.append(None)
    return tuple(out)
