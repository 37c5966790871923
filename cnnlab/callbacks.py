"""The Trainer's callback protocol (Lightning-style): everything that watches or records training.

`Trainer(..., callbacks=[...])` calls each hook on every callback, in list order, in the training
thread. The loop owns the steps; a callback never forwards to another one. Records reach every
callback the same way: the recorder (`recorder.RunRecorder`) writes them to the run store, a job's
live view (`jobs.job._Job`) appends them to its in-memory list, the CLI's progress bar draws them, the
sweep's `TuneReporter` sends them to the driver. Put the recorder first: the callbacks after it see a
record only once it is persisted.

Hooks, all optional (the base class does nothing):
- `on_start(trainer)`: before the first step of this session (a resume starts at its checkpoint).
- `on_batch_start(trainer)` / `on_batch_end(trainer)`: around every optimizer step; after it `.grad`
  still holds the step's gradients (`health.LayerHealth` samples layers here).
- `on_step(trainer, rec)`: a step record `{"kind": "step", "step", "epoch", "loss", "acc", "lr", "ips",
  "t", "wall"}` (every step on CPU, every 10th on an accelerator).
- `on_epoch(trainer, rec)`: an epoch record `{"kind": "epoch", "epoch", "step", "train_loss",
  "train_acc", "val_loss", "val_acc", "lr", "best", "t", "wall"}`, after validation.
- `on_event(trainer, rec)`: `{"kind": "event", "event": "pause|resume|stop|set|diverged", "step",
  "epoch", "t", ...}` (`set` adds field, old, new).
- `on_health(trainer, rec)`: a layer-health record, published by a callback through
  `trainer.publish_health(rec)` (`health.LayerHealth`).
- `on_end(trainer, result)`: once, with the `TrainResult`, whatever happened.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .engine import TrainResult, Trainer


class Callback:
    """Base class of Trainer callbacks: override the hooks you need (each does nothing here)."""

    def on_start(self, trainer: "Trainer") -> None:
        """Training (or a resumed session of it) is about to take its first step."""

    def on_batch_start(self, trainer: "Trainer") -> None:
        """Before the forward pass of a step."""

    def on_batch_end(self, trainer: "Trainer") -> None:
        """After the optimizer step (`trainer.step` already counts it); `.grad` holds its gradients."""

    def on_step(self, trainer: "Trainer", rec: dict) -> None:
        """A step record."""

    def on_epoch(self, trainer: "Trainer", rec: dict) -> None:
        """An epoch record (after validation; `trainer.epoch` counts the epoch)."""

    def on_event(self, trainer: "Trainer", rec: dict) -> None:
        """A pause, resume, stop, live change (set) or divergence."""

    def on_health(self, trainer: "Trainer", rec: dict) -> None:
        """A layer-health record (see cnnlab.health)."""

    def on_end(self, trainer: "Trainer", result: "TrainResult") -> None:
        """The run ended (done, stopped, diverged or failed)."""
