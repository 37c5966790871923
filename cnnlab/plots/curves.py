"""Plotly figures for the Train page: training curves with event markers, augmentation previews.

Builders take plain data and return go.Figure; they never call Streamlit. The curve figure is
rebuilt about once a second while a run trains, so it is built from columns with numpy and long
curves are downsampled (`series.downsample`: bucketed min/max, which keeps spikes such as a divergence).
"""

from __future__ import annotations

import math
from typing import Iterable, Sequence

import numpy as np
import plotly.colors
import plotly.graph_objects as go

from .series import downsample

_P = plotly.colors.qualitative.Plotly
RAW = "rgba(99,110,250,0.35)"  # _P[0], faint
SMOOTH, TRAIN, VAL = _P[0], _P[2], _P[1]
EVENT_COLORS = {"set": _P[3], "pause": "#9AA5B1", "resume": "#9AA5B1", "stop": _P[4], "diverged": _P[1]}
MAX_MARKERS = 60  # newest events drawn; older ones would only clutter the plot


def _col(recs: Iterable[dict], key: str) -> np.ndarray:
    return np.fromiter(((r.get(key) if r.get(key) is not None else np.nan) for r in recs), dtype=float)


def _event_label(ev: dict) -> str:
    kind = ev.get("event", "")
    if kind == "set":
        f, old, new = ev.get("field", "?"), ev.get("old"), ev.get("new")
        short = {"lr": "lr", "momentum": "mom", "weight_decay": "wd", "aug_strength": "aug"}.get(f, f)
        fmt = (lambda v: f"{v:.3g}" if isinstance(v, (int, float)) else str(v))
        return f"{short} {fmt(old)}→{fmt(new)}" if old is not None else f"{short}={fmt(new)}"
    return {"pause": "⏸", "resume": "▶", "stop": "■ stop", "diverged": "✖ diverged"}.get(kind, kind)


def _markers(events: Sequence[dict]) -> tuple[list[dict], list[dict]]:
    """Vertical lines (layout shapes) and labels (annotations) at the step of each event."""
    shapes, notes = [], []
    for i, ev in enumerate(list(events)[-MAX_MARKERS:]):
        step = ev.get("step")
        if step is None:
            continue
        kind = ev.get("event", "")
        color = EVENT_COLORS.get(kind, "#888")
        dash = "dot" if kind in ("pause", "resume") else "dash"
        shapes.append(dict(type="line", xref="x", yref="paper", x0=step, x1=step, y0=0, y1=1,
                           line=dict(color=color, width=1.5, dash=dash)))
        notes.append(dict(x=step, xref="x", y=1.0 - 0.06 * (i % 3), yref="paper", yanchor="top",  # inside
                          text=_event_label(ev), showarrow=False, font=dict(size=11, color=color),
                          bgcolor="rgba(255,255,255,0.7)"))
    return shapes, notes


def series_figure(
    steps: Sequence[float],
    loss: Sequence[float],
    loss_smooth: Sequence[float] | None,
    epoch_recs: Sequence[dict],
    events: Sequence[dict] = (),
    max_points: int = 500,
    acc: Sequence[float] | None = None,
    acc_smooth: Sequence[float] | None = None,
    uirevision: str | None = None,
    val_name: str = "val",
    reference: tuple[str, Sequence[float], Sequence[float]] | None = None,
) -> go.Figure:
    """The training figure from step columns (what a per-session curve cache holds).

    `val_name` labels the validation curves ("val (test set)" when a run validates on the test set, as the
    seeds did); `reference` = (label, steps, val_acc) draws another run's validation accuracy faintly.
    """
    traces: list[go.Scatter] = []
    if reference is not None and len(reference[1]):
        label, rx, ry = reference
        traces.append(go.Scatter(x=list(rx), y=list(ry), mode="lines+markers", name=label,
                                 line=dict(color=VAL, width=2, dash="dot"), marker=dict(size=4),
                                 opacity=0.35, xaxis="x2", yaxis="y2", hoverinfo="skip"))
    if len(steps):
        x, y = downsample(steps, loss, max_points)
        traces.append(go.Scatter(x=x, y=y, mode="lines", name="loss (step)", line=dict(color=RAW, width=1),
                                 xaxis="x", yaxis="y", legendgroup="loss"))
        if loss_smooth is not None and len(loss_smooth):
            x, y = downsample(steps, loss_smooth, max_points)
            traces.append(go.Scatter(x=x, y=y, mode="lines", name="loss (smoothed)",
                                     line=dict(color=SMOOTH, width=2), xaxis="x", yaxis="y"))
        if acc_smooth is not None and len(acc_smooth):
            x, y = downsample(steps, acc_smooth, max_points)
            traces.append(go.Scatter(x=x, y=y, mode="lines", name="train acc (smoothed step)",
                                     line=dict(color=TRAIN, width=1, dash="dot"), xaxis="x2", yaxis="y2",
                                     opacity=0.6))
    if len(epoch_recs):
        ex = _col(epoch_recs, "step")
        ep = [int(r.get("epoch", 0)) for r in epoch_recs]
        hover = [f"epoch {e}" for e in ep]
        for key, name, color, axis in (
            ("train_loss", "train loss (epoch)", TRAIN, "y"), ("val_loss", f"{val_name} loss (epoch)", VAL, "y"),
            ("train_acc", "train acc (epoch)", TRAIN, "y2"), ("val_acc", f"{val_name} acc (epoch)", VAL, "y2"),
        ):
            traces.append(go.Scatter(
                x=ex, y=_col(epoch_recs, key), mode="lines+markers", name=name, text=hover,
                line=dict(color=color, width=2, dash="solid" if "val" in key else "dash"),
                marker=dict(size=7), xaxis="x" if axis == "y" else "x2", yaxis=axis))
    shapes, notes = _markers(events)
    fig = go.Figure(data=traces)
    fig.update_layout(
        height=520,
        margin=dict(l=10, r=10, t=30, b=40),
        # above the plots: below them it sat on the "step" title once it wrapped to 3 rows (a 1024 px window)
        legend=dict(orientation="h", yanchor="bottom", y=1.02, x=0),
        xaxis=dict(anchor="y", domain=[0, 1], matches="x2", showticklabels=False),
        yaxis=dict(domain=[0.45, 1.0], title="loss", rangemode="tozero"),
        xaxis2=dict(anchor="y2", domain=[0, 1], title="step"),
        yaxis2=dict(domain=[0.0, 0.38], title="accuracy", tickformat=".2~%"),  # no "99%, 99%" ticks
        shapes=shapes,
        annotations=notes,
        uirevision=uirevision,
        hovermode="x unified",
    )
    if not traces:
        fig.add_annotation(text="no points yet", x=0.5, y=0.7, xref="paper", yref="paper", showarrow=False,
                           font=dict(size=14, color="#888"))
    return fig


def augmentation_preview(images: np.ndarray | Sequence, cols: int = 8, title: str | None = None) -> go.Figure:
    """A grid of [N,28,28] images in [0,1] (white ink on black), as one heatmap with 2-px gaps."""
    imgs = np.asarray(images, dtype=float)
    if imgs.ndim == 4:  # [N,1,28,28]
        imgs = imgs[:, 0]
    n = len(imgs)
    h, w = (imgs.shape[1], imgs.shape[2]) if n else (28, 28)
    cols = max(1, min(cols, n or 1))
    rows = max(1, math.ceil(n / cols))
    gap = 2
    grid = np.full((rows * (h + gap) - gap, cols * (w + gap) - gap), np.nan)
    for i in range(n):
        r, c = divmod(i, cols)
        grid[r * (h + gap): r * (h + gap) + h, c * (w + gap): c * (w + gap) + w] = imgs[i]
    fig = go.Figure(go.Heatmap(z=grid, colorscale="gray", zmin=0, zmax=1, showscale=False, hoverinfo="skip"))
    fig.update_xaxes(visible=False, constrain="domain")
    fig.update_yaxes(visible=False, autorange="reversed", scaleanchor="x", constrain="domain")
    fig.update_layout(height=int(60 + rows * 70), margin=dict(l=0, r=0, t=30 if title else 0, b=0),
                      title=dict(text=title) if title else None, plot_bgcolor="white")
    return fig
