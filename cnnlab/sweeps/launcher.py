"""The app's side of sweeps: each sweep is a `python -m cnnlab sweep` process, followed through the store.

A separate process keeps Ray (its workers, its signal handling, its threads) out of the Streamlit server;
the page never blocks and never talks to Ray. The process belongs to the server, not to a tab: closing
every tab leaves it running, and any page finds it in the store. At server exit (`stop_on_exit`) each
running sweep gets SIGTERM, which its driver turns into "stop the sweep" (finished trials stay, running
ones end stopped and resumable); after `EXIT_WAIT_S` the process group is killed.
"""

from __future__ import annotations

import atexit
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import LabError
from ..runs import RunStore
from .space import SweepDef
from .store import SweepStore, new_sweep_id

EXIT_WAIT_S = 20.0
REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass
class _Proc:
    popen: subprocess.Popen
    log_path: Path
    def_path: Path


class SweepLauncher:
    """Starts, follows and stops sweep processes of one run store."""

    def __init__(self, store: RunStore | None = None):
        self.store = store if store is not None else RunStore()
        self.sweeps = SweepStore(self.store)
        self._procs: dict[str, _Proc] = {}

    def start(self, defn: SweepDef, address: str | None = None) -> str:
        """Start the driver process of a definition validated where it entered (`make_def`: the page's form);
        returns the sweep id it will use."""
        defn.validated_base()  # trusted, not checked again
        sweep_id = new_sweep_id()
        fd, def_path = tempfile.mkstemp(prefix=f"cnnlab-{sweep_id}-", suffix=".json")
        with os.fdopen(fd, "w") as f:
            json.dump(defn.to_dict(), f)
        log_path = Path(def_path).with_suffix(".log")
        argv = [sys.executable, "-m", "cnnlab", "sweep", "--definition", def_path, "--sweep-id", sweep_id]
        if address:
            argv += ["--address", address.strip()]
        env = {**os.environ, "CNNLAB_CHECKPOINT_DIR": str(self.store.root), "PYTHONUNBUFFERED": "1"}
        with open(log_path, "wb") as log:
            popen = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     cwd=str(REPO_ROOT), env=env, start_new_session=True)
        self._procs[sweep_id] = _Proc(popen, log_path, Path(def_path))
        return sweep_id

    def trial_curves(self, rows: list[dict]) -> list[dict]:
        """Validation accuracy per epoch of each trial row (the sweep view's curves)."""
        from .view import curves

        return curves(self.store, rows)

    def startup_error(self, sweep_id: str) -> str | None:
        """Why a sweep this launcher started never got going (its process ended before sweep.json), else None."""
        proc = self._procs.get(sweep_id)
        if proc is None or proc.popen.poll() is None or (self.sweeps.root / sweep_id / "sweep.json").exists():
            return None
        lines = [ln for ln in proc.log_path.read_text(errors="replace").splitlines() if ln.startswith("error:")]
        return lines[-1][len("error:"):].strip() if lines else f"the sweep process exited with code {proc.popen.returncode}"

    def starting(self, sweep_id: str) -> bool:
        """Started here, still running, and not yet connected to Ray (no sweep.json yet)."""
        proc = self._procs.get(sweep_id)
        return (proc is not None and proc.popen.poll() is None
                and not (self.sweeps.root / sweep_id / "sweep.json").exists())

    def stop(self, sweep_id: str, run_id: str | None = None) -> None:
        """Stop one trial (`run_id`) or the whole sweep; a sweep still starting is terminated."""
        if run_id is None and self.starting(sweep_id):
            self._procs[sweep_id].popen.terminate()
            return
        try:
            rec = self.sweeps.get(sweep_id)
        except LabError:
            raise LabError(f"no sweep '{sweep_id}'") from None
        if rec.get("status") != "running":
            raise LabError(f"sweep '{sweep_id}' is {rec.get('status')}; nothing to stop")
        self.sweeps.request_stop(sweep_id, run_id)

    def shutdown(self, wait: float = EXIT_WAIT_S) -> None:
        """Stop every running sweep process: SIGTERM (a clean stop), then kill its process group."""
        running = [p for p in self._procs.values() if p.popen.poll() is None]
        for p in running:
            p.popen.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + wait
        for p in running:
            try:
                p.popen.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(p.popen.pid, signal.SIGKILL)
                except OSError:
                    pass

    def stop_on_exit(self) -> "SweepLauncher":
        atexit.register(self.shutdown)
        return self
