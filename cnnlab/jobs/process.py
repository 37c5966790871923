"""The parent side of a process job: start a training process (`jobs.child`), feed it one job, relay.

`ChildProcess.spawn()` starts `python -m cnnlab.jobs.child` on one end of a socket pair; a spare one
(`preload=True`) imports torch and loads MNIST before it is needed, so a Launch trains at once. `relay()`
runs in the job's worker thread: it forwards the job's controls (pause, stop, stop after the epoch, live
changes, the thread budget) and hands the child's records to the job's callback hooks, exactly as a
thread job's Trainer would, until the child ends.
"""

from __future__ import annotations

import io
import itertools
import os
import socket
import subprocess
import sys
import threading
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Callable

from ..engine import TrainResult
from ..errors import LabError
from .job import PHASES, _Job

POLL_S = 0.02  # how often the relay looks at the job's controls while the child is quiet
WEIGHTS_TIMEOUT_S = 30.0
REPO = Path(__file__).resolve().parents[2]


class ChildFailed(LabError):
    """The training process reported an exception (its message and traceback) or ended without a result."""

    def __init__(self, message: str, child_traceback: str = ""):
        super().__init__(message)
        self.child_traceback = child_traceback


class _Counters:
    """What a job's callback hooks read from a trainer, as the child last reported it."""

    def __init__(self) -> None:
        self.epoch = self.step = self.steps_per_epoch = self.total_steps = self.epochs = 0
        self.best_val_acc: float | None = None

    def update(self, values: dict) -> "_Counters":
        for k, v in values.items():
            setattr(self, k, v)
        return self


class ChildProcess:
    """One training process and the parent's end of its pipe."""

    def __init__(self, proc: subprocess.Popen, conn: Connection):
        self.proc, self.conn = proc, conn
        self._send_lock = threading.Lock()
        self._weights: dict[int, bytes | None] = {}
        self._weights_cv = threading.Condition()
        self._req = itertools.count(1)
        self.relaying = False

    @classmethod
    def spawn(cls, preload: bool = False) -> "ChildProcess":
        parent, child = socket.socketpair()
        try:
            cmd = [sys.executable, "-m", "cnnlab.jobs.child", str(child.fileno())] + (["--preload"] if preload else [])
            env = dict(os.environ)
            env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
            proc = subprocess.Popen(cmd, pass_fds=(child.fileno(),), env=env, cwd=str(REPO),
                                    stdin=subprocess.DEVNULL)
        finally:
            child.close()
        return cls(proc, Connection(parent.detach()))

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def send(self, msg: tuple) -> None:
        with self._send_lock:
            self.conn.send(msg)

    def close(self, wait: float = 5.0) -> None:
        """Close the pipe (an idle child exits on it) and reap the process (killed after `wait` s)."""
        try:
            self.conn.close()
        except OSError:
            pass
        try:
            self.proc.wait(wait)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)

    def weights(self, timeout: float = WEIGHTS_TIMEOUT_S) -> dict | None:
        """A CPU copy of the child's current weights (None if it is not training or does not answer)."""
        if not self.relaying:
            return None
        req = next(self._req)
        try:
            self.send(("weights", req))
        except OSError:
            return None
        deadline = time.monotonic() + timeout
        with self._weights_cv:
            while req not in self._weights:
                left = deadline - time.monotonic()
                if left <= 0 or not self.alive:
                    return None
                self._weights_cv.wait(min(left, 0.5))
            data = self._weights.pop(req)
        if data is None:
            return None
        import torch

        return torch.load(io.BytesIO(data), weights_only=True)

    def relay(self, job: _Job, payload: dict, budget: Callable[[], int]) -> None:
        """Give the child its job and relay until it ends; ChildFailed if it failed or died without a result."""
        self.send(payload)
        self.relaying = True
        try:
            self._relay(job, budget)
        finally:
            self.relaying = False
            with self._weights_cv:
                self._weights_cv.notify_all()
            self.close(wait=30.0)

    def _relay(self, job: _Job, budget: Callable[[], int]) -> None:
        ctl, live = job.control, job.control.live
        state = _Counters()
        sent = {"pause": False, "stop": False, "stop_epoch": False, "threads": None, "live": None}
        unconfirmed: dict[str, float] = {}  # live values sent but not yet seen in effect in the child
        while True:
            try:
                if ctl.stop_event.is_set() and not sent["stop"]:
                    sent["stop"] = True
                    self.send(("stop",))
                if ctl.stop_after_epoch.is_set() and not sent["stop_epoch"]:
                    sent["stop_epoch"] = True
                    self.send(("stop_epoch",))
                if live.version != sent["live"]:
                    sent["live"] = live.version
                    pending = live.take_pending()
                    if pending:  # shown at once; the child applies it at its next step (a `set` event)
                        live.record(**pending)
                        unconfirmed.update(pending)
                        self.send(("live", pending))
                want = budget()
                if want and want != sent["threads"]:
                    sent["threads"] = job.threads = want
                    self.send(("threads", want))
                if ctl.pause_event.is_set() != sent["pause"]:  # last: what was asked while paused comes first
                    sent["pause"] = ctl.pause_event.is_set()
                    self.send(("pause", sent["pause"]))
            except OSError:  # the child is gone: its exit code says how
                pass
            try:
                if not self.conn.poll(POLL_S):
                    if not self.alive and not self.conn.poll(0):
                        break
                    continue
                msg = self.conn.recv()
            except (EOFError, OSError):
                break
            kind = msg[0]
            if kind == "recs":
                _, items, values, cnt = msg
                for hook, rec in items:
                    if hook == "epoch":
                        state.update({"best_val_acc": cnt["best_val_acc"]})
                    getattr(job, "on_" + hook)(state, rec)
                    if hook == "event" and rec.get("event") == "set" and rec.get("field") in unconfirmed:
                        unconfirmed.pop(rec["field"])
                state.update(cnt)
                live.record(**{k: v for k, v in values.items() if k not in unconfirmed})
            elif kind == "phase":
                job.set_phase(PHASES[msg[1]])
            elif kind == "start":
                job.on_start(state.update(msg[1]))
            elif kind == "weights":
                with self._weights_cv:
                    self._weights[msg[1]] = msg[2]
                    self._weights_cv.notify_all()
            elif kind == "end":
                job.on_end(state, TrainResult(**msg[1]))
                return
            elif kind == "error":
                raise ChildFailed(msg[1], msg[2])
        code = self.proc.wait(30)
        raise ChildFailed(f"the training process ended unexpectedly (exit code {code}); resume the run from "
                          f"its last epoch under Saved runs")


class Spares:
    """At most one warm training process (torch imported, MNIST loaded) for the next job, once asked for."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._spare: ChildProcess | None = None
        self._wanted = False

    def want(self) -> None:
        """Keep a spare from now on (the app, when the data is there) and start one now."""
        with self._lock:
            self._wanted = True
            self._refill()

    def _refill(self) -> None:  # caller holds the lock
        if self._wanted and (self._spare is None or not self._spare.alive):
            self._spare = ChildProcess.spawn(preload=True)

    def take(self) -> ChildProcess:
        """The spare if there is a live one (another is started for the next job), else a new process."""
        with self._lock:
            child, self._spare = self._spare, None
        if child is None or not child.alive:
            child = ChildProcess.spawn()
        threading.Thread(target=self._locked_refill, name="cnnlab-spare", daemon=True).start()
        return child

    def _locked_refill(self) -> None:
        with self._lock:
            self._refill()

    def close(self) -> None:
        """No more spares; the one waiting ends."""
        with self._lock:
            spare, self._spare, self._wanted = self._spare, None, False
        if spare is not None:
            spare.close(wait=2.0)


def weights_payload(state: dict | None) -> bytes | None:
    """A state dict as bytes for the pipe (torch.save; the other side loads it with weights_only=True)."""
    if state is None:
        return None
    import torch

    buf = io.BytesIO()
    torch.save(state, buf)
    return buf.getvalue()


def child_payload(job: _Job, *, resume: bool, threads: int) -> dict:
    return {"env": {k: v for k, v in os.environ.items() if k.startswith("CNNLAB_")},
            "run_dir": str(job.handle.path), "plan": job.plan,  # validated: the child trusts it
            "live": job.control.live.snapshot(), "threads": threads, "resume": resume,
            "init_weights": weights_payload(job.init_weights), "start_epoch": job.start_epoch}

