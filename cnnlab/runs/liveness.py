"""Is the process that writes a run still alive? Pids, their start times, and a run's effective status."""

from __future__ import annotations

import os
from pathlib import Path

from cnnlab.runlock import is_locked

from .files import ACTIVE


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


OWN_START = proc_start_time(os.getpid())


def effective_status(status: dict, live_ids: set[str] | None, run_id: str,
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
    if isinstance(pid, int) and pid == os.getpid() and status.get("proc_start") in (None, OWN_START):
        if live_ids is None or run_id in live_ids:
            return state, message, False
        return "interrupted", f"this app restarted its job manager while the run was {state}", False
    if isinstance(pid, int) and pid_alive(pid, status.get("proc_start")):
        return state, message, False
    if run_dir is not None and is_locked(run_dir):
        return state, message, False  # a new writer took the run over and is about to say so
    who = f"process {pid}" if isinstance(pid, int) else "the process"
    return "interrupted", f"{who} ended while the run was {state} (app or CLI stopped or killed)", True
