"""What a runner shares with a training loop while it runs: pause/stop requests and live hyperparameters."""

from __future__ import annotations

import threading

from .fields import live_value
from .recipe import TrainConfig


class LiveParams:
    """Hyperparameters a user may change while a run trains; the loop applies them at the next step."""

    def __init__(self, lr: float, momentum: float, weight_decay: float, aug_strength: float, epochs: int):
        self._lock = threading.Lock()
        self._values: dict[str, float] = {"lr": lr, "momentum": momentum, "weight_decay": weight_decay,
                                          "aug_strength": aug_strength, "epochs": epochs}
        self._pending: dict[str, float] = {}
        self.version = 0

    @classmethod
    def from_config(cls, cfg: TrainConfig) -> "LiveParams":
        """The live values a run starts with (the one place they are made: app, CLI and sweeps alike).

        Augmentation strength is the strength in effect: 0 when augmentation is off.
        """
        return cls(cfg.lr, cfg.momentum, cfg.weight_decay, cfg.data.aug_strength if cfg.data.augment else 0.0,
                   cfg.epochs)

    def set(self, **changes: float) -> None:
        """Request changes (checked now against fields.RANGES, applied by the loop at its next step)."""
        checked = {k: live_value(k, v) for k, v in changes.items()}
        with self._lock:
            self._pending.update(checked)
            self.version += 1

    def take_pending(self) -> dict[str, float]:
        """Called by the loop: the changes requested since the last call."""
        with self._lock:
            pending, self._pending = self._pending, {}
            return pending

    def record(self, **values: float) -> None:
        """Called by the loop: the values in effect now (what snapshot() reports)."""
        with self._lock:
            self._values.update(values)

    def snapshot(self) -> dict[str, float]:
        with self._lock:
            return {**self._values, **self._pending}


class Control:
    """Pause/stop requests and live hyperparameters shared between a runner and its loop."""

    def __init__(self, live: LiveParams | None = None):
        self.pause_event = threading.Event()
        self.stop_event = threading.Event()  # stop at the next step boundary (the partial epoch is lost)
        self.stop_after_epoch = threading.Event()  # stop once the epoch in progress is validated and recorded
        self.live = live
