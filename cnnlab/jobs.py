"""Background training jobs: a process-wide manager, worker threads, read-only views.

`JobManager` runs `engine.Trainer` in daemon threads, at most `max_concurrent` at once (default 2);
more wait in a FIFO queue. Every job writes to the run store through `recorder.RunRecorder`, so app
and CLI runs look the same on disk, and to an in-memory, append-only record list that any number of
readers follow with `JobView.records_since(k)` (readers never consume: several tabs can follow one job).
The worker never imports or calls Streamlit. The record list is a `records.RunRecords`: once a job has ended
its records are on disk, the list is dropped and its readers read the store (`records.stored`).

Policies:
- **States**: queued, running, paused, done, stopped, failed, diverged (interrupted is what the store
  reports for a run whose process died). A worker's `finally` always leaves a final status; anything
  raised outside `Trainer.run` (data loading, a bad checkpoint, the store) makes the job `failed` with
  its message and traceback, and the next queued job starts.
- **Starting**: between Launch and the first step a job loads MNIST (once per process; `preload_data`
  does it at app start), reads its checkpoint (resume) and builds the model; `JobView.phase` names the
  step it is in (`PHASES`) so the page can say so, and is empty from the first step record on.
- **Pause / stop / live changes** take effect at the next step boundary (one optimizer step: tens of ms
  on CPU for every preset; the epoch-end validation pass is not interrupted) and are recorded as events.
  `stop(id)` on a queued job removes it from the queue (status stopped). `stop(id, after_epoch=True)`
  lets the current epoch finish and checkpoint first, so a later `resume` loses nothing.
- **Live LR vs scheduler** (the engine's policy): a live learning rate *rescales the schedule* from the
  step it is applied on, `lr_t = schedule(t) * scale` with `scale` chosen so that `lr_t` equals the new
  value at that step. The schedule keeps its shape: a later StepLR drop or the one-cycle/cosine decay
  still happens, relative to the user's value. Neither silently wins; the `set` event records the step,
  epoch and old/new values. Momentum, weight decay and augmentation strength are plain overrides.
- **Live epochs**: more epochs extend the run; fewer end it at the end of the epoch in progress (a value
  below the epochs already done or in progress ends it there, and the event records what was asked).
  One-cycle and cosine schedules re-stretch what is left of them over the new total from that step
  (`engine.stretched_step`: no jump in the LR, the schedule ends at the new last step); StepLR keeps its
  steps. The count is saved in every checkpoint and in status.json (`epochs_planned`), so a resumed run
  keeps it (a change made after the last checkpoint is applied again at the resume step, as a new
  `set` event), and a fork's default `epochs` is the parent's current count.
- **Threads**: with torch's OpenMP backend `torch.set_num_threads` holds per thread once that thread
  has run a parallel op (measured here: a thread that set 1 keeps 1 while another sets 2). Each worker
  therefore sets its own count, and re-checks it at every step: `cores // running jobs`, at least 1.
  A lone job uses every core, like the CLI (so following a run in the page costs it nothing), and two
  jobs on 2 cores get 1 each instead of four OpenMP threads fighting over two cores (measured on the
  busy box: seed002 fell from 3.5k to 1.6k images/s when its second thread had no core to run on).
  Page inference runs with 1 thread in its own thread (`inference.limit_threads`).
  `JobManager(threads=n)` (default: the environment's `CNNLAB_THREADS`) fixes the count instead. Same seed and config give the same curves
  bit for bit under the same thread count (oneDNN splits its reductions by thread; the initial
  weights never depend on other jobs: `models.init_weights` uses a private generator).
- **Viewers gone**: a job belongs to the process, not to a browser tab. When every tab following it
  closes it keeps training to its end (or until stopped); any later page can find it with `jobs()` /
  `get(id)` and read its whole record list. `shutdown()` stops everything (status stopped); a process
  that dies instead leaves runs the store reports as `interrupted`, resumable from their last epoch.
- **Resume** continues an interrupted/stopped/failed/diverged run in the same folder from `last.pt`
  (model, optimizer, epoch, step, LR scale, the data-order and dropout generators). Records written after
  that checkpoint (the partial epoch) are dropped first (`RunHandle.rewind`) so the curve continues
  without repeated steps, and a `resumed` event marks the point. With the same seed the resumed curve
  equals an uninterrupted one (tests check it). Every job draws from its own generators (data order,
  augmentation, dropout masks: never torch's process-wide RNG), so starting a job does not change the
  curves of jobs already running.
- **Fork** starts a new run from the weights saved after epoch K of another run (`epoch_K.pt`, or
  last.pt/best.pt when they hold that epoch) with changed hyperparameters and a fresh optimizer; its
  counters start at the fork point (epoch K, step K * steps_per_epoch) so the two overlay, `epochs` is the
  last epoch on that shared axis, and config.json records `parent: {"run_id", "epoch"}`.
"""

from __future__ import annotations

import atexit
import collections
import itertools
import os
import threading
import time
import traceback
from typing import Any, Callable

import torch

from . import data as D
from . import settings
from .callbacks import Callback
from .engine import Control, LiveParams, TrainConfig, TrainResult, Trainer
from .errors import CheckpointError, ConfigError, LabError
from .health import LayerHealth
from .models import validate_spec
from .recorder import RunRecorder, create_run
from .records import RunRecords
from .runs import RunHandle, RunInfo, RunStore, _effective_status
from .status import ACTIVE, FINAL

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


def planned_epochs(handle: RunHandle) -> int:
    """A run's current number of epochs: status.json's (kept up to date by live changes), else the recipe's."""
    try:
        planned = handle.status.get("epochs_planned")
    except LabError:
        planned = None
    if isinstance(planned, int) and not isinstance(planned, bool) and planned >= 1:
        return planned
    return int((handle.config.get("recipe") or {}).get("epochs") or 1)


def _epochs_set_after(events: list[dict], step: int, epoch: int) -> int | None:
    """The last live epochs value set after a checkpoint at (step, epoch), or None."""
    later = None
    for r in events:
        s, e = int(r.get("step") or 0), int(r.get("epoch") or 0)
        if r.get("event") == "set" and r.get("field") == "epochs" and (s > step or (s == step and e > epoch)):
            later = r.get("new")
    return int(later) if isinstance(later, (int, float)) else None


class _Job(Callback):
    """Everything about one job; the worker writes it (a Trainer callback after the recorder), views read it."""

    def __init__(self, seq: int, handle: RunHandle, preset: str, spec: list[dict], cfg: TrainConfig, *,
                 name: str, mode: str = "new", init_weights: dict | None = None, start_epoch: int = 0,
                 fork_from: dict | None = None):
        self.seq, self.handle, self.id = seq, handle, handle.id
        self.preset, self.spec, self.cfg, self.name = preset, spec, cfg, name
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
        self.thread_budget: Callable[[], int] | None = None  # set by the manager; read in the worker
        self.waiting_for: Callable[[], str] | None = None  # set by the manager: a queued job's message
        self.phase = ""  # what a started job does before its first step (shown by the page)
        self._threads = 0

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

    def adjust_threads(self) -> None:
        """In the worker thread: follow the manager's thread budget (it changes as jobs start and end)."""
        want = self.thread_budget() if self.thread_budget else 0
        if want and want != self._threads:
            torch.set_num_threads(want)
            self._threads = want

    def on_step(self, trainer: Trainer, rec: dict) -> None:
        self.adjust_threads()
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
        """The job's recipe (a copy)."""
        return TrainConfig.from_dict(self._job.cfg.to_dict())

    def result(self) -> TrainResult | None:
        return self._get("result")


class JobManager:
    """Starts training jobs in background threads (FIFO, `max_concurrent` at once) and hands out views."""

    def __init__(self, store: RunStore | None = None, max_concurrent: int = 2,
                 mnist_loader: Callable[[], D.Mnist] = D.load_mnist, *, threads: int | None = None):
        if not isinstance(max_concurrent, int) or max_concurrent < 1:
            raise ConfigError("max_concurrent", f"must be an integer of at least 1, got {max_concurrent!r}")
        self.store = store if store is not None else RunStore()
        self.max_concurrent = max_concurrent
        self.fixed_threads = threads if threads is not None else settings.job_threads()
        self._mnist_loader = mnist_loader
        self._lock = threading.RLock()
        self._jobs: dict[str, _Job] = {}
        self._queue: collections.deque[_Job] = collections.deque()
        self._running: set[_Job] = set()  # jobs, not ids: a resumed run reuses its id while the old thread exits
        self._seq = itertools.count()
        self._closed = False

    def preload_data(self) -> threading.Thread:
        """Load MNIST in a background thread now, so that the first Launch starts training at once.

        A job's first step waits for the data (seconds: torchvision and the files); loaded once per
        process, it is shared by every later job. Errors are left for the job that needs the data.
        """
        def _load() -> None:
            try:
                self._mnist_loader()
            except Exception:  # noqa: BLE001 - the job that needs the data reports it
                pass

        thread = threading.Thread(target=_load, name="cnnlab-preload-mnist", daemon=True)
        thread.start()
        return thread

    # ---- submitting
    def submit(self, preset: str, spec: list[dict], cfg: TrainConfig, *, name: str | None = None,
               parent: dict | None = None, init_weights: dict | None = None) -> str:
        """Validate (ConfigError/SpecError now), create the run folder (queued) and queue the job; its id."""
        cfg.validate()
        validate_spec(spec)
        with self._lock:
            self._check_open()
            handle = create_run(self.store, preset, spec, cfg, name=name, parent=parent)
            job = _Job(next(self._seq), handle, preset, spec, cfg, name=self._name(handle),
                       init_weights=init_weights)
            self._enqueue(job)
        return job.id

    def resume(self, run_id: str) -> str:
        """Continue a stopped/interrupted/failed/diverged run from its last.pt, in the same folder."""
        with self._lock:
            self._check_open()
            if run_id in self.live_ids():
                raise LabError(f"run '{run_id}' is already {self._jobs[run_id].status} here")
            handle = self.store.get(run_id, live_ids=self.live_ids())
            old = self._jobs.get(run_id)
            if old is not None and old.thread is not None:
                old.thread.join(30)  # its status is final; its thread is letting go of the run
            handle.lock_writer()  # across processes: one writer per run (RunBusy names the other)
            try:
                state, _, _ = _effective_status(handle.status, self.live_ids(), handle.id)
                if state in ACTIVE:
                    raise LabError(f"run '{run_id}' is {state} in another process (pid {handle.status.get('pid')})")
                if state == "done":
                    raise LabError(f"run '{run_id}' is done; fork it to train further")
                cfgd = handle.config
                spec, cfg = cfgd.get("spec"), TrainConfig.from_dict(cfgd.get("recipe"))
                cfg.validate()
                validate_spec(spec)
                parent = cfgd.get("parent") if isinstance(cfgd.get("parent"), dict) else None
                handle.write_status(status="queued", message="waiting to resume", traceback=None)
            except BaseException:
                handle.release_writer()
                raise
            job = _Job(next(self._seq), handle, str(cfgd.get("preset") or "run"), spec, cfg,
                       name=self._name(handle), mode="resume", fork_from=parent,
                       start_epoch=int((parent or {}).get("epoch") or 0))
            self._enqueue(job)
        return job.id

    def fork(self, run_id: str, epoch: int | None = None, overrides: dict | None = None, *,
             name: str | None = None) -> str:
        """A new run from `run_id`'s weights after `epoch` (default: its last saved epoch) with `overrides`."""
        src = self.store.get(run_id, live_ids=self.live_ids())
        cfgd = src.config
        weights, epoch = self._fork_weights(src, epoch)
        over = dict(overrides or {})
        recipe = dict(cfgd.get("recipe") or {})
        recipe["epochs"] = planned_epochs(src)  # a live-edited count, not the launch recipe's
        data_over = over.pop("data", None) or {}
        if isinstance(data_over, D.DataConfig):
            data_over = data_over.to_dict()
        data = {**(recipe.pop("data", None) or {}), **data_over}
        cfg = TrainConfig.from_dict({**recipe, "data": data}, **over)
        if cfg.epochs <= epoch:
            raise ConfigError("epochs", f"the fork starts after epoch {epoch}, so epochs (the last epoch, counted "
                                        f"like the parent's) must be more than {epoch}, got {cfg.epochs}")
        spec = cfgd.get("spec")
        cfg.validate()
        validate_spec(spec)
        parent = {"run_id": src.id, "epoch": epoch}
        if name is None:
            name = f"{self._name(src)} · fork @ epoch {epoch}"
        with self._lock:
            self._check_open()
            handle = create_run(self.store, str(cfgd.get("preset") or "run"), spec, cfg, name=name, parent=parent)
            job = _Job(next(self._seq), handle, str(cfgd.get("preset") or "run"), spec, cfg,
                       name=self._name(handle), mode="fork", init_weights=weights, start_epoch=epoch,
                       fork_from=parent)
            self._enqueue(job)
        return job.id

    def fork_epochs(self, run_id: str) -> list[int]:
        """Epochs of a run that `fork` can start from."""
        handle = self.store.get(run_id, live_ids=self.live_ids())
        found = set(handle.epoch_checkpoints())
        for which in ("last", "best"):  # the epoch each file really holds (status.json may lag a kill)
            epoch = handle.saved_epoch(which)
            if epoch is not None and epoch > 0:
                found.add(epoch)
        return sorted(found)

    def _fork_weights(self, handle: RunHandle, epoch: int | None) -> tuple[dict, int]:
        """(state_dict, epoch) saved after `epoch` (None: the latest) of a run; LabError listing what exists."""
        available = self.fork_epochs(handle.id)
        if epoch is None:
            if not available:
                raise LabError(f"run '{handle.id}' has no saved epoch to fork from")
            epoch = available[-1]
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 1:
            raise ConfigError("epoch", f"must be a completed epoch (1 or more), got {epoch!r}")
        problems = []
        for which in (f"epoch_{epoch}", "last", "best"):  # every file that may hold that epoch, in turn
            if which.startswith("epoch_") and epoch not in handle.epoch_checkpoints():
                continue
            if not which.startswith("epoch_") and not handle.has_checkpoint(which):
                continue
            try:
                state = handle.load_checkpoint(which)
            except CheckpointError as exc:
                problems.append(str(exc))
                continue
            if int(state.get("epoch", -1)) == epoch and isinstance(state.get("model"), dict):
                return state["model"], epoch
        shown = ", ".join(map(str, available)) or "none"
        why = f" ({'; '.join(problems)})" if problems else ""
        raise LabError(f"run '{handle.id}' has no weights saved after epoch {epoch}; saved epochs: {shown}{why}")

    # ---- control
    def get(self, run_id: str) -> JobView | None:
        """The view of a job of this process (active or finished since start), else None."""
        with self._lock:
            job = self._jobs.get(run_id)
        return JobView(job) if job is not None else None

    def jobs(self) -> list[JobView]:
        """Views of this process's jobs, newest first."""
        with self._lock:
            jobs = sorted(self._jobs.values(), key=lambda j: j.seq, reverse=True)
        return [JobView(j) for j in jobs]

    def pause(self, run_id: str) -> None:
        """Pause at the next step boundary (a queued job pauses before its first step)."""
        self._active_job(run_id, "pause").control.pause_event.set()

    def unpause(self, run_id: str) -> None:
        self._active_job(run_id, "resume").control.pause_event.clear()

    def stop(self, run_id: str, *, after_epoch: bool = False) -> None:
        """Stop at the next step boundary (or, with after_epoch, once the current epoch is saved).

        A queued job leaves the queue at once with status stopped. Stopping a finished job does nothing.
        """
        with self._lock:
            job = self._jobs.get(run_id)
            if job is None:
                raise LabError(f"no job '{run_id}' in this process")
            if job in self._queue and not after_epoch:
                self._queue.remove(job)
                self._end_unstarted(job, "stopped", "stopped before it started")
                return
        if after_epoch:  # the engine stops once the epoch is validated and its last.pt saved
            job.control.stop_after_epoch.set()
        else:
            job.control.stop_event.set()

    def set_live(self, run_id: str, **changes: float) -> None:
        """Change lr, momentum, weight_decay, aug_strength or epochs from the next step on (ConfigError if invalid)."""
        job = self._active_job(run_id, "change")
        job.control.live.set(**changes)  # ConfigError for a field that is not live or a value out of range

    def set_max_concurrent(self, n: int) -> None:
        """Let `n` jobs train at once (1-16); raising it starts queued jobs now, lowering it lets running ones end."""
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_CONCURRENT:
            raise ConfigError("max_concurrent", f"must be a whole number from 1 to {MAX_CONCURRENT}, got {n!r}")
        with self._lock:
            self.max_concurrent = n
            self._pump()

    def waiting_for(self, run_id: str) -> str:
        """Why a queued job has not started: the jobs holding the slots (a paused one keeps its slot)."""
        with self._lock:
            job = self._jobs.get(run_id)
            if job is None or job not in self._queue:
                return ""
            place = list(self._queue).index(job) + 1
            holders = sorted(self._running, key=lambda j: j.seq)
            limit = self.max_concurrent
        who = ", ".join(f"“{h.name}” ({h.status})" for h in holders)
        line = "next in line" if place == 1 else f"{place} in line"
        text = f"Queued ({line}): waiting for one of the {limit} training slots, held by {who}."
        if any(h.status == "paused" for h in holders):
            text += " A paused job keeps its slot: stop it, or raise “Jobs at once”."
        else:
            text += " Raise “Jobs at once” to start it now."
        return text

    def live_ids(self) -> set[str]:
        """Ids of this process's queued, running and paused jobs."""
        with self._lock:
            return {j.id for j in (*self._queue, *self._running) if j.status not in FINAL}  # finishing: not live

    def weights_copy(self, run_id: str) -> dict | None:
        """A CPU copy of a running/paused job's current weights, None if it is not training."""
        with self._lock:
            job = self._jobs.get(run_id)
        trainer = job.trainer if job is not None else None
        if trainer is None or job.status not in ("running", "paused"):
            return None
        return trainer.weights_copy()

    def rename(self, run_id: str, name: str) -> str:
        """Set a run's display name in the store (and in its job's view); the stored name."""
        stored = self.store.rename(run_id, name)
        with self._lock:
            job = self._jobs.get(run_id)
        if job is not None:
            with job.lock:
                job.name = stored
        return stored

    def list_runs(self) -> list[RunInfo]:
        """Every run in the store, with this process's live jobs known as live."""
        return self.store.list_runs(live_ids=self.live_ids())

    def shutdown(self, wait: float = 5.0) -> None:
        """Refuse new jobs, stop queued and running ones, and wait up to `wait` seconds for the threads."""
        with self._lock:
            self._closed = True
            queued, self._queue = list(self._queue), collections.deque()
            for job in queued:
                self._end_unstarted(job, "stopped", "stopped: the job manager shut down")
            running = list(self._running)
        for job in running:
            job.control.stop_event.set()
        deadline = time.monotonic() + wait
        for job in running:
            if job.thread is not None:
                job.thread.join(max(0.0, deadline - time.monotonic()))

    def stop_on_exit(self, wait: float = 10.0) -> "JobManager":
        """Stop every job cleanly when the process exits normally (Ctrl-C or SIGTERM to `streamlit run`).

        Without this, interpreter shutdown kills the daemon threads inside torch calls and the process
        aborts ("terminate called without an active exception") with its runs left marked running.
        Stopped runs resume from their last epoch, like interrupted ones.
        """
        def _stop() -> None:
            running = [j for j in list(self._running) if j.status not in FINAL]
            self.shutdown(wait)
            for job in running:
                try:
                    job.handle.write_status(message="stopped when the app shut down; resume it from its "
                                                    "last epoch under Saved runs")
                except Exception:  # noqa: BLE001 - best effort at exit
                    pass

        atexit.register(_stop)
        return self

    def wait(self, run_id: str, timeout: float | None = None) -> JobView:
        """Block until a job has a final status (or `timeout` passes); its view."""
        deadline = None if timeout is None else time.monotonic() + timeout
        view = self.get(run_id)
        if view is None:
            raise LabError(f"no job '{run_id}' in this process")
        while view.status not in FINAL:
            if deadline is not None and time.monotonic() >= deadline:
                break
            time.sleep(0.02)
        return view

    # ---- internals
    def _check_open(self) -> None:
        if self._closed:
            raise LabError("the job manager has shut down")

    @staticmethod
    def _name(handle: RunHandle) -> str:
        try:
            return str(handle.meta.get("name") or handle.id)
        except LabError:
            return handle.id

    def _active_job(self, run_id: str, what: str) -> _Job:
        with self._lock:
            job = self._jobs.get(run_id)
            if job is None:
                raise LabError(f"no job '{run_id}' in this process")
            if job not in self._running and job not in self._queue:
                raise LabError(f"cannot {what} job '{run_id}': it is {job.status}")
            return job

    def _enqueue(self, job: _Job) -> None:
        job.waiting_for = lambda: self.waiting_for(job.id)
        with self._lock:
            self._jobs[job.id] = job
            self._queue.append(job)
            self._pump()

    def _pump(self) -> None:
        """Start queued jobs while slots are free (caller holds the lock)."""
        while self._queue and len(self._running) < self.max_concurrent and not self._closed:
            job = self._queue.popleft()
            self._running.add(job)
            job.thread = threading.Thread(target=self._worker, args=(job,), name=f"cnnlab-job-{job.id}", daemon=True)
            job.thread.start()

    def _end_unstarted(self, job: _Job, status: str, message: str) -> None:
        try:
            job.handle.append_event({"kind": "event", "event": "stop", "step": job.step, "epoch": job.epoch + 1,
                                     "t": time.time()})
            job.handle.write_status(status=status, message=message)
        except OSError:
            pass
        job.handle.release_writer()
        job.end_unstarted(status, message)
        job.records.close()

    def _thread_budget(self) -> int:
        return self.fixed_threads or threads_per_job(len(self._running))

    def _worker(self, job: _Job) -> None:
        """Thread body: set up, train, and always leave a final status, then free the slot."""
        try:
            job.thread_budget = self._thread_budget
            job.adjust_threads()
            job.set_phase(PHASES["data"])
            mnist = self._mnist_loader()
            if job.mode == "resume":
                job.set_phase(PHASES["resume"])
            resume_state = self._prepare_resume(job) if job.mode == "resume" else None
            job.set_phase(PHASES["model"])
            trainer = Trainer(job.spec, job.cfg, mnist, control=job.control,
                              callbacks=[RunRecorder(job.handle), LayerHealth(), job], resume_state=resume_state,
                              init_weights=job.init_weights)
            if resume_state is None and job.start_epoch:  # a fork: counters continue the parent's
                trainer.epoch, trainer.step = job.start_epoch, job.start_epoch * trainer.steps_per_epoch
            job.init_weights = None
            job.trainer = trainer
            job.set_phase(PHASES["steps"])
            trainer.run()
        except BaseException as exc:  # noqa: BLE001 - a job must end with a status, whatever happened
            message = str(exc) if isinstance(exc, LabError) else f"{type(exc).__name__}: {exc}"
            tb = traceback.format_exc()
            try:  # the store first: once the view says final, the run folder says so too
                job.handle.write_status(status="failed", message=message, traceback=tb)
            except Exception:  # noqa: BLE001 - the store itself may be what failed
                pass
            job.handle.release_writer()
            job.fail(message, tb)
        finally:
            if job.status not in FINAL:
                try:
                    job.handle.write_status(status="failed", message="the training thread ended without a status")
                except Exception:  # noqa: BLE001
                    pass
                job.fail("the training thread ended without a status", "")
            job.trainer, job.init_weights = None, None
            job.handle.release_writer()  # after the final status: the next writer may take over
            job.records.close()  # on disk by now: readers go to the store, the memory is freed
            with self._lock:
                self._running.discard(job)
                self._pump()

    def _prepare_resume(self, job: _Job) -> dict | None:
        """Load last.pt, drop the records written after it, prefill the view; the resume state or None.

        Without last.pt (stopped in its first epoch) the run restarts from its beginning (or, for a fork,
        from its parent's weights).
        """
        handle = job.handle
        state = handle.load_checkpoint("last") if handle.has_checkpoint("last") else None
        if state is not None:
            for key in ("model", "optimizer", "epoch", "step", "gen_state"):
                if key not in state:
                    raise CheckpointError(f"{handle.path / 'last.pt'} is not a resumable checkpoint (no '{key}')")
            epoch, step = int(state["epoch"]), int(state["step"])
            if epoch > 0 and (epoch not in handle.epoch_checkpoints() or handle.saved_epoch(f"epoch_{epoch}") != epoch):
                # a kill while epoch_<k>.pt was written (runs saved before last.pt went last): restore it
                handle.save_checkpoint({"model": state["model"], "epoch": epoch, "step": step}, f"epoch_{epoch}")
        else:
            if job.fork_from:
                src = self.store.get(job.fork_from["run_id"], live_ids=self.live_ids())
                job.init_weights, _ = self._fork_weights(src, int(job.fork_from["epoch"]))
            epoch = job.start_epoch
            step = epoch * job.steps_per_epoch
        later = _epochs_set_after(handle.read_events(), step, epoch)
        handle.rewind(step, epoch)
        if later is not None:  # changed after the checkpoint: apply it again at the resume step
            job.control.live.set(epochs=later)
        job.records.prefill()
        prefill = job.records.since(0)[0]
        rec = {"kind": "event", "event": "resumed", "step": step, "epoch": epoch + 1, "from_epoch": epoch,
               "t": time.time()}
        handle.append_event(rec)
        with job.lock:
            job.records.append(rec)
            job.epochs_done, job.epoch, job.step = epoch, epoch, step
            best = [r.get("val_acc") for r in prefill if r.get("kind") == "epoch" and r.get("val_acc") is not None]
            job.best_val_acc = max(best) if best else None
        return state
