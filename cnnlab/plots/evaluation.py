"""Plotly figures for the Compare page: take data, return go.Figure, never call Streamlit."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import plotly.colors
import plotly.graph_objects as go

from ..textsafe import plot_text

PALETTE = plotly.colors.qualitative.Plotly  # one color a run
EVENT_SYMBOLS = {"set": "diamond", "diverged": "x", "pause": "line-ns", "resume": "line-ns", "stop": "square"}


def _compact(fig: go.Figure, height: int, title: str | None = None) -> go.Figure:
    fig.update_layout(height=height, margin=dict(l=10, r=10, t=40 if title else 10, b=10),
                      title=dict(text=title) if title else None)
    return fig


ACC_TICKS = ".2~%"  # 98.5%, 99%, 99.25%: distinct ticks on narrow accuracy ranges (".0%" gave "99%, 99%")


def overlay_curves(curves: Sequence, metric: str, xaxis: str, height: int = 380) -> go.Figure:
    """One line per run (the `Curve`s of cnnlab.compare); events as markers; forks start at their fork point."""
    fig = go.Figure()
    for i, c in enumerate(curves):
        color = PALETTE[i % len(PALETTE)]
        live = c.status in ("queued", "running", "paused")
        name = plot_text(c.name)  # a run name is user (or imported) text, never markup
        label = f"{name} ({c.status})" if live or c.status in ("diverged", "failed", "stopped") else name
        mode = "lines+markers" if len(c.x) <= 30 else "lines"
        fig.add_trace(go.Scatter(
            x=c.x, y=c.y, mode=mode, name=label, legendgroup=c.run_id,
            line=dict(color=color, dash="dot" if c.fork_x is not None else "solid"),
            connectgaps=False,
            hovertemplate=f"{name}<br>{xaxis} %{{x:.4g}}<br>{metric} %{{y:.4g}}<extra></extra>",
        ))  # fmt: skip
        if c.fork_x is not None and c.x:
            fig.add_trace(go.Scatter(
                x=[c.x[0]], y=[c.y[0]], mode="markers", legendgroup=c.run_id, showlegend=False,
                marker=dict(symbol="circle-open", size=11, color=color, line=dict(width=2)),
                hovertemplate=f"{name} forks here<extra></extra>",
            ))  # fmt: skip
        for ev_name, symbol in EVENT_SYMBOLS.items():
            marks = [m for m in (c.markers or []) if m["event"] == ev_name]
            if not marks:
                continue
            fig.add_trace(go.Scatter(
                x=[m["x"] for m in marks], y=[m["y"] for m in marks], mode="markers",
                legendgroup=c.run_id, showlegend=False, text=[m["text"] for m in marks],
                marker=dict(symbol=symbol, size=12 if ev_name != "diverged" else 14, color=color,
                            line=dict(width=2, color="black")),
                hovertemplate=f"{name}: %{{text}}<extra></extra>",
            ))  # fmt: skip
    fig.update_xaxes(title=xaxis)
    fig.update_yaxes(title=metric, type="log" if metric == "learning rate" else None)
    if "accuracy" in metric:
        fig.update_yaxes(tickformat=ACC_TICKS)
    fig.update_layout(legend=dict(orientation="h", yanchor="bottom", y=1.02, x=0), hovermode="closest",
                      showlegend=True)  # a lone run is named too
    return _compact(fig, height)


def count_labels(cm: np.ndarray, off: np.ndarray) -> go.Scatter:
    """The counts as text, white on the dark half of the red scale and black elsewhere (plotly's own
    grey text was unreadable on the darkest cells)."""
    n = cm.shape[0]
    top = np.nanmax(off) if np.isfinite(off).any() and np.nanmax(off) > 0 else 1.0
    xs, ys, text, color = [], [], [], []
    for t in range(n):
        for p in range(n):
            xs.append(p)
            ys.append(t)
            text.append(f"{int(cm[t, p])}")
            color.append("white" if t != p and off[t, p] / top > 0.5 else "black")
    return go.Scatter(x=xs, y=ys, mode="text", text=text, textfont=dict(color=color, size=12),
                      hoverinfo="skip", showlegend=False)


def confusion_heatmap(matrix: np.ndarray, selected: tuple[int, int] | None = None, title: str | None = None,
                      height: int = 460) -> go.Figure:
    """10x10 confusion counts (rows true, columns predicted) with clickable cells.

    Heatmaps are not selectable in plotly.js, so an invisible marker sits on every cell: a click on
    it arrives as a point selection (x = predicted, y = true).
    """
    cm = np.asarray(matrix, dtype=float)
    n = cm.shape[0]
    off = cm.copy()
    np.fill_diagonal(off, np.nan)  # color the mistakes; the diagonal would swamp the scale
    fig = go.Figure(go.Heatmap(
        z=off, x=list(range(n)), y=list(range(n)), colorscale="Reds", showscale=False,
        hoverinfo="skip", xgap=1, ygap=1,
    ))  # fmt: skip
    diag = [[cm[i, j] if i == j else np.nan for j in range(n)] for i in range(n)]
    fig.add_trace(go.Heatmap(z=diag, x=list(range(n)), y=list(range(n)), colorscale="Greens", showscale=False,
                             hoverinfo="skip", xgap=1, ygap=1, opacity=0.6))
    fig.add_trace(count_labels(cm, off))
    xs, ys, custom = [], [], []
    for t in range(n):
        for p in range(n):
            xs.append(p)
            ys.append(t)
            custom.append(int(cm[t, p]))
    fig.add_trace(go.Scatter(
        x=xs, y=ys, mode="markers", customdata=custom, showlegend=False,
        marker=dict(symbol="square", size=30, color="rgba(0,0,0,0)"),
        hovertemplate="true %{y} → predicted %{x}: %{customdata} images<extra></extra>",
        selected=dict(marker=dict(color="rgba(0,0,0,0)")), unselected=dict(marker=dict(opacity=0)),
    ))  # fmt: skip
    if selected is not None:
        t, p = selected
        fig.add_shape(type="rect", x0=p - 0.5, x1=p + 0.5, y0=t - 0.5, y1=t + 0.5,
                      line=dict(color="black", width=3))
    # square cells: shrink the x domain rather than widen the x range (which would shift every cell)
    fig.update_xaxes(title="predicted", tickmode="linear", dtick=1, side="top", range=[-0.5, n - 0.5],
                     showgrid=False, zeroline=False, constrain="domain")
    fig.update_yaxes(title="true", tickmode="linear", dtick=1, range=[n - 0.5, -0.5], showgrid=False,
                     zeroline=False, scaleanchor="x", constrain="domain")
    fig.update_layout(clickmode="event+select", dragmode=False)
    fig = _compact(fig, height, title)
    if title:
        fig.update_layout(margin=dict(t=80))  # the predicted-axis title sits on top, under the figure title
    return fig


def per_class_bars(acc: Sequence[float], title: str | None = None, height: int = 260) -> go.Figure:
    """Accuracy of each digit class; the weakest class highlighted."""
    a = np.asarray(acc, dtype=float)
    worst = int(np.nanargmin(a)) if len(a) else -1
    fig = go.Figure(go.Bar(
        x=[str(i) for i in range(len(a))], y=a,
        marker_color=[PALETTE[1] if i == worst else PALETTE[0] for i in range(len(a))],
        text=[f"{v:.1%}" for v in a], textposition="outside",
        hovertemplate="digit %{x}: %{y:.2%}<extra></extra>",
    ))  # fmt: skip
    lo = max(0.0, float(np.nanmin(a)) - 0.05) if len(a) else 0.0
    fig.update_yaxes(range=[lo, 1.02], tickformat=ACC_TICKS)
    fig.update_xaxes(type="category", title="digit")
    return _compact(fig, height, title)


def digit_grid(images: np.ndarray, captions: Sequence[str], cols: int = 8, title: str | None = None,
               tile_px: int = 88) -> go.Figure:
    """Test digits ([k, 28, 28] in [0, 1]) tiled in one heatmap (one trace, cheap), a caption above each."""
    imgs = np.asarray(images, dtype=float)
    k = len(imgs)
    cols = max(1, min(cols, k or 1))
    rows = max(1, -(-k // cols))
    gap, cap = 2, 9  # pixels between tiles; caption band height
    cell_w, cell_h = 28 + gap, 28 + gap + cap
    mosaic = np.full((rows * cell_h, cols * cell_w), np.nan)
    annotations = []
    for i in range(k):
        r, c = divmod(i, cols)
        y0, x0 = r * cell_h + cap, c * cell_w
        mosaic[y0 : y0 + 28, x0 : x0 + 28] = imgs[i]
        annotations.append(dict(x=x0 + 14, y=r * cell_h + cap / 2, text=captions[i] if i < len(captions) else "",
                                showarrow=False, font=dict(size=11), xref="x", yref="y"))
    fig = go.Figure(go.Heatmap(z=mosaic, colorscale="gray", zmin=0, zmax=1, showscale=False, hoverinfo="skip"))
    fig.update_layout(annotations=annotations)
    fig.update_xaxes(visible=False, range=[-0.5, cols * cell_w - 0.5], constrain="domain")
    fig.update_yaxes(visible=False, autorange="reversed", scaleanchor="x", constrain="domain")
    height = int(rows * tile_px * cell_h / 28) + (40 if title else 10)
    fig.update_layout(plot_bgcolor="white")
    return _compact(fig, max(120, height), title)
