"""The trial: a plain function of a sampled config that trains with the engine's `Trainer`, unchanged.

It runs in a Ray worker (on this machine or a cluster node). The data comes through Ray's object store
(`tune.with_parameters`), never a shared file system; everything the driver needs to write the run
comes back through `tune.report`: per epoch the epoch record, the step records and events since the
last report (at most `STEPS_PER_REPORT` steps, evenly thinned) and the resume state as `torch.save`
bytes; at the end the `TrainResult`. `TuneReporter` is just one more Trainer callback.
"""

from __future__ import annotations

import io
import math
import time
from dataclasses import asdict
from typing import Any

import ray
import torch
from ray import tune

from ..callbacks import Callback
from ..engine import TrainResult, Trainer
from ..errors import LabError
from ..plan import plan_run
from .space import apply_sample

STEPS_PER_REPORT = 200  # step records sent back per epoch; the rest are thinned out
POLL_S = 0.5  # how often a trial asks the control actor whether it should stop


@ray.remote(num_cpus=0)
class SweepControl:
    """Stop requests for running trials, set by the driver, polled by the trials."""

    def __init__(self) -> None:
        self.everything = False
        self.trials: set[str] = set()

    def stop(self, trial_id: str) -> None:
        self.trials.add(trial_id)

    def stop_everything(self) -> None:
        self.everything = True

    def should_stop(self, trial_id: str) -> bool:
        return self.everything or trial_id in self.trials


def state_bytes(state: dict) -> bytes:
    buf = io.BytesIO()
    torch.save(state, buf)
    return buf.getvalue()


class TuneReporter(Callback):
    """Trainer callback in the worker: buffers step records and events, reports each epoch and the end."""

    def __init__(self, control: Any, trial_id: str):
        self.control, self.trial_id = control, trial_id
        self.buf: list[dict] = []
        self.keep_every = 1
        self.last_val: float = 0.0
        self._next_poll = 0.0
        self._pending: Any = None  # an ObjectRef of an unanswered should_stop query

    def on_start(self, trainer: Trainer) -> None:
        self.keep_every = max(1, math.ceil(trainer.steps_per_epoch / STEPS_PER_REPORT))

    def on_step(self, trainer: Trainer, rec: dict) -> None:
        if rec["step"] % self.keep_every == 0:
            self.buf.append(rec)
        self._poll_stop(trainer)

    def _poll_stop(self, trainer: Trainer) -> None:
        """Ask the control actor without ever blocking a step: send a query, collect its answer later."""
        now = time.monotonic()
        if self.control is None or now < self._next_poll:
            return
        self._next_poll = now + 0.1
        try:
            if self._pending is None:
                self._pending = self.control.should_stop.remote(self.trial_id)
                return
            ready, _ = ray.wait([self._pending], timeout=0)
            if ready:
                stop, self._pending = ray.get(ready[0]), None
                self._next_poll = now + POLL_S
                if stop:
                    trainer.control.stop_event.set()
        except Exception:  # noqa: BLE001 - a gone control actor must not kill the trial
            self._pending = None

    def on_event(self, trainer: Trainer, rec: dict) -> None:
        self.buf.append(rec)

    def on_epoch(self, trainer: Trainer, rec: dict) -> None:
        self.last_val = rec["val_acc"]
        recs, self.buf = self.buf + [rec], []
        tune.report({"val_acc": rec["val_acc"], "epoch": rec["epoch"], "best_val_acc": trainer.best_val_acc,
                     "_recs": recs, "_state": state_bytes(trainer.checkpoint_state())})

    def on_end(self, trainer: Trainer, result: TrainResult) -> None:
        recs, self.buf = self.buf, []
        tune.report({"val_acc": self.last_val, "epoch": result.epochs_done, "best_val_acc": result.best_val_acc,
                     "test_acc": result.test_acc, "_recs": recs, "_final": asdict(result)})


def trainable(config: dict, *, data: Any, base: dict, control: Any, threads: int) -> None:
    """Tune's function: build the trial's spec and recipe from `config`, train, report."""
    torch.set_num_threads(max(1, int(threads)))
    trial_id = tune.get_context().get_trial_id()
    try:
        plan = plan_run(*apply_sample(base["spec"], base["recipe"], config))  # the trial's sample enters here
        trainer = Trainer(plan, data, callbacks=[TuneReporter(control, trial_id)])
    except LabError as exc:  # e.g. a batch larger than a sampled subset: recorded as failed, the sweep goes on
        tune.report({"val_acc": 0.0, "epoch": 0, "_recs": [],
                     "_final": asdict(TrainResult(status="failed", message=str(exc)))})
        return
    trainer.run()
