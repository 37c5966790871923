"""One training job: `_Job` (the worker's state, a Trainer callback after the recorder) and `JobView`
(read-only, safe from any thread), with the thread budget each worker follows."""

from __future__ import annotations

import os
import threading
import time
from typing import Any, Callable

import torch

from ..callbacks import Callback
from ..control import Control, LiveParams
from ..engine import TrainResult, Trainer
from ..plan import RunPlan
from ..recipe import TrainConfig
from ..runs import RunHandle
from ..runs.records import RunRecords
from ..status import ACTIVE, FINAL  # noqa: F401 (the package re-exports FINAL)

MAX_CONCURRENT = 16  # jobs at once, at most (the page's "Jobs at once")
IPS_SMOOTHING = 0.1  # EMA weight of the newest images/s sample
PHASES = {  # what a started job does before its first step, in order (JobView.phase)
    "data": "loading MNIST into memory",
    "resume": "reading the last checkpoint",
    "model": "building the model and the data splits",
    "steps": "running the first steps",
}


def cpu_cores() -> int:
    """Cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def threads_per_job(running: int, cores: int | None = None) -> int:
    """Intra-op threads for each of `running` concurrent workers: the cores shared out, at least 1."""
    return max(1, (cores or cpu_cores()) // max(1, running))


class ThreadBudget(Callback):
    """Follows a thread budget in the training thread (it changes as jobs start and end): with torch's
    OpenMP backend the count must be set by the thread that trains."""

    def __init__(self, budget: Callable[[], int], job: "_Job | None" = None):
        self.budget, self.threads, self.job = budget, 0, job

    def apply(self) -> None:
        want = self.budget()
        if want and want != self.threads:
            torch.set_num_threads(want)
            self.threads = want
            if self.job is not None:
                self.job.threads = want

    def on_start(self, trainer: Trainer) -> None:
        self.apply()

    def on_step(self, trainer: Trainer, rec: dict) -> None:
        self.apply()


def build_trainer(plan: RunPlan, mnist: Any, *, control: Control, callbacks: list[Callback],
                  resume_state: dict | None, init_weights: dict | None, start_epoch: int) -> Trainer:
    """The Trainer of a job (in a worker thread or a training process): a fork's counters continue its parent's."""
    trainer = Trainer(plan, mnist, control=control, callbacks=callbacks, resume_state=resume_state,
                      init_weights=init_weights)
    if resume_state is None and start_epoch:
        trainer.epoch, trainer.step = start_epoch, start_epoch * trainer.steps_per_epoch
    return trainer


class _Job(Callback):
    """Everything about one job; the worker writes it (a Trainer callback after the recorder), views read it."""

    def __init__(self, seq: int, handle: RunHandle, preset: str, plan: RunPlan, *, name: str, mode: str = "new",
                 init_weights: dict | None = None, start_epoch: int = 0, fork_from: dict | None = None):
        self.seq, self.handle, self.id = seq, handle, handle.id
        cfg = plan.cfg
        self.preset, self.plan, self.cfg, self.name = preset, plan, cfg, name
        self.mode, self.init_weights, self.start_epoch, self.fork_from = mode, init_weights, start_epoch, fork_from
        self.created = time.time()
        self.lock = threading.Lock()
        self.records = RunRecords(handle.path)  # memory while it trains; the store once it has ended
        self.control = Control(LiveParams.from_config(cfg))
        self.thread: threading.Thread | None = None
        self.trainer: Trainer | None = None
        self.result: TrainResult | None = None
        self.status, self.message, self.traceback = "queued", "", ""
        spe = cfg.steps_per_epoch()
        self.steps_per_epoch, self.epochs, self.total_steps = spe, cfg.epochs, spe * cfg.epochs
        self.epochs_done = start_epoch
        self.epoch = start_epoch
        self.step = start_epoch * spe
        self.ips: float | None = None
        self._skip_ips = False
        self.best_val_acc: float | None = None
        self.test_acc: float | None = None
        self.remote: Any = None  # the training process of a process job (jobs.process.ChildProcess)
        self.threads = 0  # intra-op threads its training uses (the manager's budget; jobs.job.ThreadBudget)
        self.waiting_for: Callable[[], str] | None = None  # set by the manager: a queued job's message
        self.phase = ""  # what a started job does before its first step (shown by the page)

    def set_phase(self, phase: str) -> None:
        with self.lock:
            self.phase = phase

    # ---- callback hooks (in the worker thread, after the recorder has persisted the record)
    def on_start(self, trainer: Trainer) -> None:
        with self.lock:
            self.status = "running"
            self.epochs_done, self.step = trainer.epoch, trainer.step
            self.epoch = max(self.epoch, trainer.epoch)
            self.steps_per_epoch, self.total_steps = trainer.steps_per_epoch, trainer.total_steps
            self.epochs = trainer.epochs
            self.best_val_acc = trainer.best_val_acc

    def on_step(self, trainer: Trainer, rec: dict) -> None:
        with self.lock:
            self.records.append(rec)
            self.phase = ""
            self.step, self.epoch = rec["step"], rec["epoch"]
            ips = rec.get("ips")
            if self._skip_ips:  # the first window after a pause includes the pause
                self._skip_ips = False
            elif isinstance(ips, (int, float)) and ips > 0:
                self.ips = ips if self.ips is None else (1 - IPS_SMOOTHING) * self.ips + IPS_SMOOTHING * ips

    def on_health(self, trainer: Trainer, rec: dict) -> None:
        with self.lock:
            self.records.append(rec)

    def on_epoch(self, trainer: Trainer, rec: dict) -> None:
        with self.lock:
            self.records.append(rec)
            self.epochs_done, self.epoch, self.step = rec["epoch"], rec["epoch"], rec["step"]
            self.best_val_acc = trainer.best_val_acc

    def on_event(self, trainer: Trainer, rec: dict) -> None:
        with self.lock:
            self.records.append(rec)
            if rec.get("event") == "pause":
                self.status = "paused"
            elif rec.get("event") == "resume":
                self.status, self._skip_ips = "running", True
            elif rec.get("event") == "set" and rec.get("field") == "epochs":
                self.epochs = int(rec["new"])
                self.total_steps = self.steps_per_epoch * self.epochs

    def on_end(self, trainer: Trainer, result: TrainResult) -> None:
        with self.lock:
            self.result = result
            self.status, self.message, self.traceback = result.status, result.message, result.traceback
            self.epochs_done, self.step = result.epochs_done, result.step
            self.best_val_acc, self.test_acc = result.best_val_acc, result.test_acc

    def continue_from(self, epoch: int, step: int) -> None:
        """A resume: the view starts with the stored records (already rewound), then a `resumed` event."""
        self.records.prefill()
        best = [r.get("val_acc") for r in self.records.since(0)[0]
                if r.get("kind") == "epoch" and r.get("val_acc") is not None]
        rec = {"kind": "event", "event": "resumed", "step": step, "epoch": epoch + 1, "from_epoch": epoch,
               "t": time.time()}
        self.handle.append_event(rec)
        with self.lock:
            self.records.append(rec)
            self.epochs_done, self.epoch, self.step = epoch, epoch, step
            self.best_val_acc = max(best) if best else None

    def fail(self, message: str, tb: str) -> None:
        with self.lock:
            self.status, self.message, self.traceback = "failed", message, tb
            if self.result is None:
                self.result = TrainResult(status="failed", message=message, traceback=tb,
                                          epochs_done=self.epochs_done, step=self.step,
                                          best_val_acc=self.best_val_acc)

    def end_unstarted(self, status: str, message: str) -> None:
        with self.lock:
            self.status, self.message = status, message
            self.result = TrainResult(status=status, message=message, epochs_done=self.epochs_done,
                                      step=self.step, best_val_acc=self.best_val_acc)


class JobView:
    """Read-only view of a job, safe from any thread (every attribute read takes the job's lock)."""

    __slots__ = ("_job",)

    def __init__(self, job: _Job):
        self._job = job

    def __repr__(self) -> str:
        return f"JobView({self.id!r}, {self.status}, step {self.step}/{self.total_steps})"

    def _get(self, name: str) -> Any:
        with self._job.lock:
            return getattr(self._job, name)

    id = property(lambda self: self._job.id)
    preset = property(lambda self: self._job.preset)
    created = property(lambda self: self._job.created, doc="time.time() when this process queued the job")
    mode = property(lambda self: self._job.mode, doc="new | resume | fork")
    parent = property(lambda self: self._job.fork_from, doc='{"run_id", "epoch"} of a fork, else None')
    name = property(lambda self: self._get("name"))
    status = property(lambda self: self._get("status"))
    phase = property(lambda self: self._get("phase"),
                     doc="what a started job does before its first step (loading data, building the model...)")

    @property
    def message(self) -> str:
        """The status message; for a queued job, what it waits for (the jobs holding the slots)."""
        waiting = self._job.waiting_for
        if self.status == "queued" and waiting is not None:
            return waiting()
        return self._get("message")

    def epoch_to_finish(self) -> int:
        """The epoch after which a "stop after this epoch" asked now ends the job (its trainer's answer; before
        the first step: the first epoch it trains)."""
        trainer = self._job.trainer
        return trainer.epoch_to_finish() if trainer is not None else self._get("epochs_done") + 1

    traceback = property(lambda self: self._get("traceback"))
    epoch = property(lambda self: self._get("epoch"), doc="epoch in progress, 1-based like step records")
    epochs_done = property(lambda self: self._get("epochs_done"))
    epochs = property(lambda self: self._get("epochs"))
    step = property(lambda self: self._get("step"))
    total_steps = property(lambda self: self._get("total_steps"))
    steps_per_epoch = property(lambda self: self._get("steps_per_epoch"))
    ips = property(lambda self: self._get("ips"), doc="smoothed training images per second")
    best_val_acc = property(lambda self: self._get("best_val_acc"))
    test_acc = property(lambda self: self._get("test_acc"))

    @property
    def eta_s(self) -> float | None:
        """Seconds of training left at the current speed (validation and test passes not counted)."""
        j = self._job
        with j.lock:
            if j.status != "running" or not j.ips:
                return None
            return max(0, j.total_steps - j.step) * j.cfg.batch_size / j.ips

    @property
    def active(self) -> bool:
        return self.status in ACTIVE

    def records_since(self, k: int) -> tuple[list[dict], int]:
        """Step/epoch/event records after index `k` (copies) and the index to ask from next time."""
        return self._job.records.since(k)

    def wait_records(self, k: int, timeout: float | None = None) -> bool:
        """Block until records after index `k` arrive or the job ends (or `timeout` passes)."""
        return self._job.records.wait(k, timeout)

    def live_values(self) -> dict:
        """Current lr, momentum, weight_decay, aug_strength, epochs (pending changes included)."""
        return self._job.control.live.snapshot()

    def config(self) -> TrainConfig:
        """The job's recipe (frozen: shared, never changed)."""
        return self._job.cfg

    def result(self) -> TrainResult | None:
        return self._get("result")
