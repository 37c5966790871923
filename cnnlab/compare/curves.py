"""Curves of several runs on one axis (epoch, step or time), forks drawn from their fork point, events marked."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import LabError
from ..plots.series import downsample
from ..runs import RunInfo, RunStore
from ..runs import records as R


METRICS = {  # label -> (record kind, key)
    "train loss": (("step", "loss"), ("epoch", "train_loss")),
    "validation loss": (("epoch", "val_loss"),),
    "validation accuracy": (("epoch", "val_acc"),),
    "train accuracy": (("step", "acc"), ("epoch", "train_acc")),
    "learning rate": (("step", "lr"), ("epoch", "lr")),
}
XAXES = ("epoch", "step", "time (s)")
MAX_POINTS = 400  # per trace; plotly redraws cost most of a rerun


@dataclass
class Curve:
    """One run's series for one metric, ready to plot."""

    run_id: str
    name: str
    x: list[float]
    y: list[float | None]
    status: str
    fork_x: float | None = None  # where a fork leaves its parent
    markers: list[dict] | None = None  # events: {"x", "y", "text", "event"}


def _steps_per_epoch(info: RunInfo) -> int | None:
    if info.steps_per_epoch:
        return info.steps_per_epoch
    try:
        from ..recipe import TrainConfig

        return TrainConfig.from_dict(info.recipe).steps_per_epoch()
    except Exception:  # an odd recipe only loses the fractional-epoch axis
        return None


def _finite(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None


def _x_of(rec: dict, xaxis: str, spe: int | None, t_offset: float) -> float | None:
    if xaxis == "step":
        return _finite(rec.get("step"))
    if xaxis == "epoch":
        if rec.get("kind") == "epoch":
            return _finite(rec.get("epoch"))
        step = _finite(rec.get("step"))
        return step / spe if step is not None and spe else None
    t = _finite(rec.get("t"))
    return t + t_offset if t is not None else None


def _pick(records: list[dict], metric: str) -> tuple[str, str, list[dict]]:
    """The first (kind, key) source of `metric` that has data (step-level preferred)."""
    for kind, key in METRICS[metric]:
        recs = [r for r in records if r.get("kind") == kind and key in r]
        if recs:
            return kind, key, recs
    kind, key = METRICS[metric][0]
    return kind, key, []


def _at_step(records: list[dict], step: float, key: str = "t") -> float | None:
    """Interpolate record[key] at a global step from step/epoch records."""
    pts = sorted((r["step"], r[key]) for r in records
                 if _finite(r.get("step")) is not None and _finite(r.get(key)) is not None)
    if not pts:
        return None
    xs, ys = zip(*pts)
    return float(np.interp(step, xs, ys))


def run_curve(store: RunStore, info: RunInfo, metric: str, xaxis: str,
              parent_records: list[dict] | None = None) -> Curve:
    """The curve of one run; a fork starts at its parent's value at the fork point."""
    if metric not in METRICS:
        raise LabError(f"unknown metric {metric!r}; known: {', '.join(METRICS)}")
    if xaxis not in XAXES:
        raise LabError(f"unknown x axis {xaxis!r}; known: {', '.join(XAXES)}")
    reader = R.stored(info.path)
    records, events = reader.metrics(), reader.events()
    spe = _steps_per_epoch(info)
    parent = info.parent if isinstance(info.parent, dict) else None
    t_offset = 0.0
    fork_x = None
    lead: list[tuple[float, float | None]] = []
    if parent and parent_records:
        fork_epoch = _finite(parent.get("epoch"))
        pend = [r for r in parent_records if r.get("kind") == "epoch" and _finite(r.get("epoch")) == fork_epoch]
        if pend:
            fork_step = pend[-1].get("step")
            parent_t = _finite(pend[-1].get("t")) or 0.0
            first_t = next((_finite(r.get("t")) for r in records if _finite(r.get("t")) is not None), None)
            if first_t is not None and first_t < parent_t:  # the fork's clock restarted at zero
                t_offset = parent_t
            # anchor: the parent's value of this metric at the fork point
            kind, key, precs = _pick(parent_records, metric)
            at = [r for r in precs if _finite(r.get("step")) is not None and r["step"] <= fork_step]
            if at:
                anchor = at[-1]
                fork_x = _x_of(anchor, xaxis, spe, 0.0)
                if fork_x is not None:
                    lead = [(fork_x, _finite(anchor.get(key)))]
    kind, key, recs = _pick(records, metric)
    pts = [(_x_of(r, xaxis, spe, t_offset), _finite(r.get(key))) for r in recs]
    pts = lead + [(x, y) for x, y in pts if x is not None]
    # the Train page's downsampler: a divergence spike survives; a non-finite value stays a gap
    dx, dy = downsample([p[0] for p in pts], [p[1] for p in pts], MAX_POINTS, gaps=True)
    x, y = dx.tolist(), [v if math.isfinite(v) else None for v in dy.tolist()]
    markers = _event_markers(events, records, xaxis, spe, t_offset, key, recs)
    return Curve(info.id, info.name, x, y, info.status, fork_x, markers)


def _event_markers(events: list[dict], records: list[dict], xaxis: str, spe: int | None, t_offset: float,
                   key: str, recs: list[dict]) -> list[dict]:
    out = []
    for ev in events:
        name = ev.get("event")
        if name not in ("set", "diverged", "pause", "resume", "stop"):
            continue
        step = _finite(ev.get("step"))
        if step is None:
            continue
        if xaxis == "step":
            x = step
        elif xaxis == "epoch":
            x = step / spe if spe else _finite(ev.get("epoch"))
        else:
            t = _at_step(records, step)
            x = t + t_offset if t is not None else None
        if x is None:
            continue
        y = _at_step(recs, step, key) if recs else None
        if name == "set":
            text = f"{ev.get('field')}: {_fmt(ev.get('old'))} → {_fmt(ev.get('new'))}"
        elif name == "diverged":
            text = f"diverged ({ev.get('value', 'loss not finite')})"
        else:
            text = str(name)
        out.append({"x": x, "y": y, "text": f"{text} @ step {int(step)}", "event": name})
    return out


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def curves(store: RunStore, infos: list[RunInfo], metric: str, xaxis: str) -> list[Curve]:
    """Curves of several runs (parents' records read for forks even when the parent is not selected)."""
    out = []
    for info in infos:
        parent_records = None
        parent = info.parent if isinstance(info.parent, dict) else None
        if parent:
            try:
                parent_records = R.stored(store.run_dir(parent.get("run_id"))).metrics()
            except LabError:
                parent_records = None
        out.append(run_curve(store, info, metric, xaxis, parent_records))
    return out
