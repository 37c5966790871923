"""The process-wide job manager: a FIFO queue, `max_concurrent` worker threads, control and views."""

from __future__ import annotations

import atexit
import collections
import itertools
import threading
import time
from typing import Callable

from .. import data as D
from .. import settings
from ..errors import ConfigError, LabError
from ..plan import RunPlan
from ..recorder import create_run
from ..runs import RunHandle, RunInfo, RunStore
from .job import FINAL, MAX_CONCURRENT, JobView, _Job, threads_per_job
from .lineage import fork_plan, prepare_resume, resume_plan
from .process import Spares
from .worker import run_to_end, train_in_process, train_in_thread

WORKERS = ("thread", "process")


class JobManager:
    """Starts training jobs in background threads (FIFO, `max_concurrent` at once) and hands out views."""

    def __init__(self, store: RunStore | None = None, max_concurrent: int = 2,
                 mnist_loader: Callable[[], D.Mnist] | None = None, *, threads: int | None = None,
                 workers: str = "thread"):
        """`workers`: "thread" trains each job in a thread of this process (data from `mnist_loader`);
        "process" in a training process of its own (`jobs.child`, MNIST from the data folder), which is what
        the app uses: a job then trains as fast as the CLI whatever the pages do."""
        if not isinstance(max_concurrent, int) or max_concurrent < 1:
            raise ConfigError("max_concurrent", f"must be an integer of at least 1, got {max_concurrent!r}")
        if workers not in WORKERS:
            raise ConfigError("workers", f"must be one of {', '.join(WORKERS)}, got {workers!r}")
        if workers == "process" and mnist_loader is not None:
            raise ConfigError("workers", "a process job loads MNIST itself: no mnist_loader with workers='process'")
        self.workers = workers
        self._spares = Spares()  # a warm training process (workers="process", after preload_data)
        self.store = store if store is not None else RunStore()
        self.max_concurrent = max_concurrent
        self.fixed_threads = threads if threads is not None else settings.job_threads()
        self._mnist_loader = mnist_loader or D.load_mnist
        self._lock = threading.RLock()
        self._jobs: dict[str, _Job] = {}
        self._queue: collections.deque[_Job] = collections.deque()
        self._running: set[_Job] = set()  # jobs, not ids: a resumed run reuses its id while the old thread exits
        self._seq = itertools.count()
        self._closed = False

    def preload_data(self) -> threading.Thread:
        """Load MNIST in a background thread now, so that the first Launch starts training at once.

        A job's first step waits for the data (seconds: the files); loaded once per process, it is shared
        by every later job. Process workers keep a spare training process instead, which has imported
        torch and loaded the data before a job needs it (and another is started as each is taken).
        Errors are left for the job that needs the data.
        """
        def _load() -> None:
            try:
                if self.workers == "process":  # a spare training process loads it (and torch) for the next job
                    if not self._closed:
                        self._spares.want()
                else:
                    self._mnist_loader()
            except Exception:  # noqa: BLE001 - the job that needs the data reports it
                pass

        thread = threading.Thread(target=_load, name="cnnlab-preload-mnist", daemon=True)
        thread.start()
        return thread

    # ---- submitting
    def submit(self, preset: str, plan: RunPlan, *, name: str | None = None, parent: dict | None = None,
               init_weights: dict | None = None) -> str:
        """Create the run folder (queued) of a validated plan and queue the job; its id."""
        with self._lock:
            self._check_open()
            handle = create_run(self.store, preset, plan, name=name, parent=parent)
            job = _Job(next(self._seq), handle, preset, plan, name=self._name(handle), init_weights=init_weights)
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
                plan, parent = resume_plan(handle, self.live_ids())
                handle.write_status(status="queued", message="waiting to resume", traceback=None)
            except BaseException:
                handle.release_writer()
                raise
            job = _Job(next(self._seq), handle, str(handle.config.get("preset") or "run"), plan,
                       name=self._name(handle), mode="resume", fork_from=parent,
                       start_epoch=int((parent or {}).get("epoch") or 0))
            self._enqueue(job)
        return job.id

    def fork(self, run_id: str, epoch: int | None = None, overrides: dict | None = None, *,
             name: str | None = None) -> str:
        """A new run from `run_id`'s weights after `epoch` (default: its last saved epoch) with `overrides`."""
        src = self.store.get(run_id, live_ids=self.live_ids())
        plan, weights, parent = fork_plan(src, epoch, overrides)
        epoch, preset = parent["epoch"], str(src.config.get("preset") or "run")
        if name is None:
            name = f"{self._name(src)} · fork @ epoch {epoch}"
        with self._lock:
            self._check_open()
            handle = create_run(self.store, preset, plan, name=name, parent=parent)
            job = _Job(next(self._seq), handle, preset, plan, name=self._name(handle),
                       mode="fork", init_weights=weights, start_epoch=epoch, fork_from=parent)
            self._enqueue(job)
        return job.id

    def fork_epochs(self, run_id: str) -> list[int]:
        """Epochs of a run that `fork` can start from."""
        return self.store.get(run_id, live_ids=self.live_ids()).fork_epochs()

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
        who = ", ".join(f"“{h.name}” ({'starting' if h.status == 'queued' else h.status})" for h in holders)
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
        if job is None or job.status not in ("running", "paused"):
            return None
        if job.remote is not None:  # a process job: ask its training process
            return job.remote.weights()
        trainer = job.trainer
        return trainer.weights_copy() if trainer is not None else None

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
        self._spares.close()
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

    def _resume_state(self, job: _Job) -> dict | None:
        return prepare_resume(job, self.store, self.live_ids())

    def _train(self, job: _Job) -> None:
        if self.workers == "process":
            train_in_process(job, self._spares, self._thread_budget, self._resume_state)
        else:
            train_in_thread(job, self._mnist_loader, self._thread_budget, self._resume_state)

    def _worker(self, job: _Job) -> None:
        """Thread body: train the job to its final status (`worker.run_to_end`), then free its slot."""
        try:
            run_to_end(job, self._train)
        finally:
            with self._lock:
                self._running.discard(job)
                self._pump()
