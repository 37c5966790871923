"""How one job trains, from its start to a final status: in a thread of this process or in a training process.

The job manager decides which jobs run when (queue, slots); its worker thread calls `run_to_end` with one
of the two ways to train below. Whatever happens, the job and its run folder end with a final status and
the run's writer lock is released.
"""

from __future__ import annotations

import traceback
from typing import Callable

from .. import data as D
from ..errors import LabError
from ..health import LayerHealth
from ..recorder import RunRecorder
from .job import FINAL, PHASES, ThreadBudget, _Job, build_trainer
from .process import ChildFailed, Spares, child_payload

Resume = Callable[[_Job], "dict | None"]  # lineage.prepare_resume for this job: the resume state or None


def train_in_thread(job: _Job, mnist_loader: Callable[[], D.Mnist], budget: Callable[[], int],
                    resume: Resume) -> None:
    """Train in the calling thread, with data from `mnist_loader` and `budget()` torch threads."""
    threads = ThreadBudget(budget, job)
    threads.apply()
    job.set_phase(PHASES["data"])
    mnist = mnist_loader()
    if job.mode == "resume":
        job.set_phase(PHASES["resume"])
    resume_state = resume(job) if job.mode == "resume" else None
    job.set_phase(PHASES["model"])
    trainer = build_trainer(job.plan, mnist, control=job.control, resume_state=resume_state,
                            init_weights=job.init_weights, start_epoch=job.start_epoch,
                            callbacks=[RunRecorder(job.handle), LayerHealth(), threads, job])
    job.init_weights = None
    job.trainer = trainer
    job.set_phase(PHASES["steps"])
    trainer.run()


def train_in_process(job: _Job, spares: Spares, budget: Callable[[], int], resume: Resume) -> None:
    """Train in a (spare) training process; this thread relays controls one way and records the other."""
    has_state = False
    if job.mode == "resume":
        job.set_phase(PHASES["resume"])
        has_state = resume(job) is not None  # the child loads last.pt itself
    child = spares.take()
    job.remote = child
    payload = child_payload(job, resume=has_state, threads=budget())
    job.init_weights = None
    child.relay(job, payload, budget)


def run_to_end(job: _Job, train: Callable[[_Job], None]) -> None:
    """`train(job)`, then always a final status (failed with the message and traceback if it raised)."""
    try:
        train(job)
    except BaseException as exc:  # noqa: BLE001 - a job must end with a status, whatever happened
        message = str(exc) if isinstance(exc, LabError) else f"{type(exc).__name__}: {exc}"
        tb = exc.child_traceback if isinstance(exc, ChildFailed) else traceback.format_exc()
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
        job.trainer, job.init_weights, job.remote = None, None, None
        job.handle.release_writer()  # after the final status: the next writer may take over
        job.records.close()  # on disk by now: readers go to the store, the memory is freed
