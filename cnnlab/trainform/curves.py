"""A session's incremental cache of one run's curves (the Train page's chart), with its labels."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Iterable

from ..errors import LabError
from ..plots.series import Ema
from ..recipe import TrainConfig


def val_label(cfg: TrainConfig | None) -> str:
    """How the curves name validation: the test set stands in for it in the seeds' own recipes."""
    return "val (test set)" if cfg is not None and cfg.data.val_source == "test" else "val"


def view_config(view: Any) -> TrainConfig | None:
    """The recipe of a live job or a saved run's view (None when unreadable)."""
    try:
        if hasattr(view, "config"):
            return view.config()
        return TrainConfig.from_dict((view.handle.config or {}).get("recipe"))
    except (LabError, TypeError, ValueError, AttributeError):
        return None


def reference_for(preset: str, steps_per_epoch: int) -> tuple[str, list[float], list[float]] | None:
    """The reproduction run's validation accuracy of a preset, placed at this run's epoch boundaries."""
    from ..reproduce import load_record, reference_curve

    curve = reference_curve(load_record().get(preset))
    if not curve or not steps_per_epoch:
        return None
    return (f"reproduced here ({preset})", [e * steps_per_epoch for e, _ in curve], [a for _, a in curve])


# How often the Train page looks at a run it follows. Each look is a Streamlit script run, and each run cost the
# browser ~80 ms of CPU for the whole page whatever it changed (a fragment that drew one caption every second took
# 1.9 s of renderer CPU per 24 s on the 2-core box): every look is CPU the run trains on, so the page looks as
# rarely as a person needs (benchmarks/bench_page_open.py).
STATUS_EVERY_S = 3.0  # status line and progress bar; a status change, a live change or the first step reruns the page
REDRAW_EVERY_S = 10.0  # curves, layer-health warnings (heatmap while open): redrawn for new points at most this often
LIST_EVERY_S = 15.0  # the run list (runs launched or renamed in another tab)
IDLE_EVERY_S = 10.0  # the status of a run that is not training (it may be resumed from another tab)


@dataclass
class Redraw:
    """When a live figure is due for a rebuild: at once when its `marks` change (first points, an epoch, an
    event, another run or quantity), for more points alone at most every `every` seconds.

    Building and drawing a plotly figure every second, and the browser redrawing it, took a visible share
    of the CPU a small net trains on (benchmarks/bench_page_open.py); the status and progress line move
    more often (`STATUS_EVERY_S`).
    """

    every: float = REDRAW_EVERY_S
    _key: tuple | None = None
    _t: float = 0.0

    def due(self, points: int, marks: tuple = (), now: float | None = None) -> bool:
        """True if a figure of `points` points with `marks` should be rebuilt now (then it counts as built)."""
        now = time.monotonic() if now is None else now
        key = (bool(points), *marks)
        if self._key is not None and self._key[1:] == key:  # same marks: only points may have changed
            if self._key[0] == points or now - self._t < 0.9 * self.every:  # a 5 s fragment may wake at 4.99 s
                return False
        self._key, self._t = (points, *key), now
        return True


@dataclass
class CurveCache:
    """A session's columns of one run's curves, fed incrementally by `records_since` (reads only new records).

    The EMA is extended point by point, so a poll costs O(new records) plus the downsampled figure,
    and the figure is rebuilt only when something new arrived.
    """

    run_id: str
    smoothing: float = 0.9
    max_points: int = 500
    k: int = 0
    steps: list[float] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    loss_ema: list[float] = field(default_factory=list)
    acc_ema: list[float] = field(default_factory=list)
    epochs: list[dict] = field(default_factory=list)
    events: list[dict] = field(default_factory=list)
    val_name: str = "val"
    reference: tuple | None = None  # (label, steps, val_acc) of the preset's reproduction run
    redraw: Redraw = field(default_factory=Redraw)
    _fig: Any = None

    @classmethod
    def for_view(cls, run_id: str, view: Any) -> "CurveCache":
        """A cache labelled for this run's validation source, with its preset's reproduction curve."""
        cfg = view_config(view)
        spe = getattr(view, "steps_per_epoch", 0) or (cfg.steps_per_epoch() if cfg else 0)
        return cls(run_id, val_name=val_label(cfg), reference=reference_for(getattr(view, "preset", ""), spe))

    def update(self, view: Any) -> bool:
        """Pull new records from a JobView; True if any arrived."""
        recs, self.k = view.records_since(self.k)
        if recs:
            self.add(recs)
        return bool(recs)

    def __post_init__(self) -> None:
        self._loss_s, self._acc_s = Ema(self.smoothing), Ema(self.smoothing)

    def add(self, recs: Iterable[dict]) -> None:
        for r in recs:
            kind = r.get("kind")
            if kind == "step":
                loss = r.get("loss")
                if loss is None or not math.isfinite(loss):
                    continue
                self.steps.append(r["step"])
                self.loss.append(loss)
                self.loss_ema.append(self._loss_s.add(loss))
                self.acc_ema.append(self._acc_s.add(r.get("acc") or 0.0))
            elif kind == "epoch":
                self.epochs.append(r)
            elif kind == "event":
                self.events.append(r)

    @property
    def n_points(self) -> int:
        return len(self.steps)

    def figure(self, now: float | None = None) -> Any:
        """The (cached) training figure: rebuilt at once for the first points, a new epoch or event; for new
        steps alone at most every `redraw.every` seconds (`Redraw`)."""
        from ..plots.curves import series_figure

        if self.redraw.due(len(self.steps), (len(self.epochs), len(self.events)), now) or self._fig is None:
            self._fig = series_figure(self.steps, self.loss, self.loss_ema, self.epochs, self.events,
                                      self.max_points, acc_smooth=self.acc_ema, uirevision=self.run_id,
                                      val_name=self.val_name, reference=self.reference)
        return self._fig
