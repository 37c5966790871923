"""The callback that makes a training run durable: metrics, events, checkpoints and results into the run store."""

from __future__ import annotations

import time

from . import __version__
from .callbacks import Callback
from .engine import TrainResult, Trainer
from .errors import DiskFullError
from .plan import RunPlan
from .runs import RunHandle, RunStore

FLUSH_EVERY_S = 0.5  # a kill loses at most this much of the step curve


def run_config(preset: str, plan: RunPlan, *, parent: dict | None = None, source: str = "app",
               title: str = "") -> dict:
    """The immutable config.json of a run: architecture, recipe, data options, parent."""
    return {
        "preset": preset,
        "title": title,
        "spec": plan.spec,
        "recipe": plan.cfg.to_dict(),
        "params": plan.params,
        "parent": parent,
        "source": source,
        "cnnlab_version": __version__,
    }


def create_run(store: RunStore, preset: str, plan: RunPlan, *, name: str | None = None,
               parent: dict | None = None, source: str = "app", run_id: str | None = None) -> RunHandle:
    """Create a run folder (status queued) for a validated plan, its writer lock held by the returned handle."""
    return store.create(run_config(preset, plan, parent=parent, source=source), name=name, run_id=run_id,
                        lock=True)


class RunRecorder(Callback):
    """Trainer callback writing a run's records, checkpoints, status and result to its RunHandle.

    Put it first in the callback list: the callbacks after it see each record once it is persisted.
    """

    def __init__(self, run: RunHandle):
        self.run = run
        self._buf: list[dict] = []
        self._last_flush = time.monotonic()

    def flush(self) -> None:
        if self._buf:
            self.run.append_metrics(self._buf)
            self._buf = []
        self._last_flush = time.monotonic()

    def on_start(self, trainer: Trainer) -> None:
        self.run.write_status(status="running", message="", epoch=trainer.epoch, step=trainer.step,
                              epochs_planned=trainer.epochs, steps_per_epoch=trainer.steps_per_epoch)

    def on_step(self, trainer: Trainer, rec: dict) -> None:
        self._buf.append(rec)
        if time.monotonic() - self._last_flush >= FLUSH_EVERY_S:
            self.flush()

    def on_health(self, trainer: Trainer, rec: dict) -> None:
        """A layer-health record (cnnlab.health): stored with the step records, in metrics.jsonl."""
        self._buf.append(rec)

    def on_event(self, trainer: Trainer, rec: dict) -> None:
        self.flush()
        self.run.append_event(rec)
        if rec.get("event") in ("pause", "resume"):
            self.run.write_status(status="paused" if rec["event"] == "pause" else "running")
        elif rec.get("event") == "set" and rec.get("field") == "epochs":
            self.run.write_status(epochs_planned=rec["new"])

    def on_epoch(self, trainer: Trainer, rec: dict) -> None:
        self.flush()
        self.run.append_metrics([rec])
        state = trainer.checkpoint_state()
        # last.pt goes last: a resume continues after it, so once it is complete the epoch's other files
        # are too (a kill before it leaves last.pt at the previous epoch, whose files all exist).
        # weights only, one file per epoch: what a fork from any saved epoch starts from
        self.run.save_checkpoint({"model": state["model"], "epoch": rec["epoch"], "step": rec["step"],
                                  "val_acc": rec["val_acc"]}, f"epoch_{rec['epoch']}")
        if rec.get("best"):
            self.run.save_checkpoint({"model": trainer.weights_copy(), "epoch": rec["epoch"],
                                      "val_acc": rec["val_acc"]}, "best")
        self.run.save_checkpoint(state, "last")
        self.run.write_status(epoch=rec["epoch"], step=rec["step"], best_val_acc=trainer.best_val_acc,
                              best_epoch=trainer.best_epoch, train_s=rec["t"])

    def on_end(self, trainer: Trainer, result: TrainResult) -> None:
        try:
            self.flush()
        except DiskFullError:
            self._buf = []  # steps after the last checkpoint: a resume trains them again anyway
        if result.status == "done":
            self.run.write_result({
                "test_acc": result.test_acc, "test_loss": result.test_loss, "confusion": result.confusion,
                "per_class_acc": result.per_class_acc, "wall_s": result.wall_s, "train_s": result.train_s,
                "best_val_acc": result.best_val_acc, "best_epoch": result.best_epoch,
            })
        self.run.write_status(status=result.status, message=result.message, traceback=result.traceback,
                              epoch=result.epochs_done, step=result.step, best_val_acc=result.best_val_acc,
                              test_acc=result.test_acc, wall_s=result.wall_s, train_s=result.train_s)
        self.run.release_writer()  # final status written: the next writer may take over before views say so
