"""The range of every numeric recipe field, in one table: TrainConfig, DataConfig and LiveParams check it;
the optimizers and schedulers a recipe may name (the engine and the Train page's pickers).

A live-editable field (`LIVE_FIELDS`) has the same range during a run as at launch: the table is the only
place either is written. `check(field, value)` raises `ConfigError` naming the field and its bounds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from .errors import ConfigError


@dataclass(frozen=True)
class Range:
    """[lo, hi] ((lo, hi] when lo_open); integer: whole numbers only."""

    lo: float
    hi: float
    lo_open: bool = False
    integer: bool = False


RANGES: dict[str, Range] = {
    "lr": Range(0, 10, lo_open=True),
    "momentum": Range(0, 0.999),  # SGD momentum; Adam/AdamW beta1
    "weight_decay": Range(0, 1),
    "step_size": Range(1, 10_000, integer=True),  # StepLR period in epochs
    "gamma": Range(0, 1, lo_open=True),  # StepLR factor
    "pct_start": Range(0, 0.9, lo_open=True),  # OneCycle warm-up fraction
    "batch_size": Range(1, 8192, integer=True),
    "epochs": Range(1, 1000, integer=True),
    "label_smoothing": Range(0, 0.5),
    "seed": Range(0, 2**31 - 1, integer=True),
    "eval_batch_size": Range(1, 10_000, integer=True),
    "tta_shift": Range(0, 4, integer=True),  # test-time shift in px; a digit's 20x20 box stays whole at 4
    "val_size": Range(100, 30_000, integer=True),  # images held out of the 60k training images
    "aug_strength": Range(0, 3),  # 0 = none, 1 = the kind's full strength
}

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULERS = ("none", "step", "onecycle", "cosine")
LIVE_FIELDS = ("lr", "momentum", "weight_decay", "aug_strength", "epochs")  # changeable while a run trains


def _show(x: float) -> str:
    """A bound as a user reads it: 2147483647, not 2.14748e+09; 0.999 as is."""
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def check(field: str, v: Any) -> None:
    """Raise ConfigError naming `field` unless v is a finite number in the field's range."""
    r = RANGES[field]
    kind = "an integer" if r.integer else "a number"
    if isinstance(v, bool) or not isinstance(v, (int, float)) or (r.integer and not isinstance(v, int)):
        raise ConfigError(field, f"must be {kind}, got {v!r}")
    if not math.isfinite(v):
        raise ConfigError(field, f"must be a finite number, got {v!r}")
    if (v <= r.lo if r.lo_open else v < r.lo) or v > r.hi:
        lo_s = f"greater than {_show(r.lo)}" if r.lo_open else f"at least {_show(r.lo)}"
        raise ConfigError(field, f"must be {lo_s} and at most {_show(r.hi)}, got {v!r}")


def live_value(field: str, v: Any) -> float | int:
    """A live change checked against the table and normalized (epochs a whole int, the rest floats)."""
    if field not in LIVE_FIELDS:
        raise ConfigError(field, f"cannot be changed during a run; live fields: {', '.join(LIVE_FIELDS)}")
    if field == "epochs" and isinstance(v, float) and v.is_integer():
        v = int(v)
    check(field, v)
    return int(v) if field == "epochs" else float(v)
