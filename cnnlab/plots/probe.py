"""Plotly figures for the Draw / probe page: take arrays, return go.Figure, never call Streamlit."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import plotly.graph_objects as go

ACCENT = "#EF553B"  # the predicted class
MUTED = "#9AA5B1"
CLASS_COLORS = [  # plotly's qualitative "Plotly" palette, one per digit
    "#636EFA", "#EF553B", "#00CC96", "#AB63FA", "#FFA15A",
    "#19D3F3", "#FF6692", "#B6E880", "#FF97FF", "#FECB52",
]  # fmt: skip
# Transparent at 0 so the digit shows through where attribution is nil.
HEAT = [[0.0, "rgba(255,0,0,0)"], [0.4, "rgba(255,80,0,0.6)"], [1.0, "rgba(255,255,0,0.95)"]]


def _compact(fig: go.Figure, height: int, title: str | None = None) -> go.Figure:
    fig.update_layout(
        height=height,
        margin=dict(l=10, r=10, t=40 if title else 10, b=10),
        title=dict(text=title) if title else None,
    )
    return fig


def _square_image_axes(fig: go.Figure, **sel) -> None:
    fig.update_xaxes(showticklabels=False, showgrid=False, zeroline=False, constrain="domain", **sel)
    fig.update_yaxes(
        showticklabels=False, showgrid=False, zeroline=False, autorange="reversed",
        scaleanchor="x", constrain="domain", **sel,
    )  # fmt: skip


def prob_bars(probs: Sequence[float], top: int | None = None, title: str | None = None) -> go.Figure:
    """Bar chart of the 10 class probabilities, the top class highlighted."""
    p = np.asarray(probs, dtype=float)
    top = int(np.argmax(p)) if top is None else int(top)
    colors = [ACCENT if i == top else MUTED for i in range(len(p))]
    fig = go.Figure(
        go.Bar(
            x=[str(i) for i in range(len(p))], y=p, marker_color=colors,
            text=[f"{v:.0%}" if v >= 0.01 else "" for v in p], textposition="outside",
            hovertemplate="digit %{x}: %{y:.3f}<extra></extra>",
        )
    )  # fmt: skip
    fig.update_yaxes(range=[0, 1.12], tickformat=".0%")
    fig.update_xaxes(type="category", title="digit")
    return _compact(fig, 260, title)


def image_heatmap(img: np.ndarray, title: str | None = None, height: int = 260) -> go.Figure:
    """A 28x28 image in [0, 1] as a gray square heatmap (row 0 at the top)."""
    fig = go.Figure(
        go.Heatmap(z=np.asarray(img), colorscale="gray", zmin=0, zmax=1, showscale=False,
                   hovertemplate="x=%{x} y=%{y}: %{z:.2f}<extra></extra>")
    )  # fmt: skip
    _square_image_axes(fig)
    return _compact(fig, height, title)


def _grid(n: int, cols: int) -> tuple[int, int]:
    cols = max(1, min(cols, n))
    return math.ceil(n / cols), cols


def _map_grid(
    maps: np.ndarray,
    labels: list[str],
    zmin: float,
    zmax: float,
    colorscale: str,
    cols: int,
    title: str,
    cell_px: int,
) -> go.Figure:
    """One heatmap per map on a grid of square subplots sharing one color axis and colorbar.

    The axes are laid out by hand (as make_subplots would) because make_subplots validates every
    axis pair: ~90-240 ms for 32 maps here against ~10 ms for this dict-built figure.
    """
    n = len(maps)
    rows, cols = _grid(n, cols)
    gap_x, gap_y = 0.01, 0.02
    w, h = (1 - gap_x * (cols - 1)) / cols, (1 - gap_y * (rows - 1)) / rows
    layout: dict = {
        "coloraxis": {"colorscale": colorscale, "cmin": zmin, "cmax": zmax,
                      "colorbar": {"thickness": 10, "len": 0.9}},
    }  # fmt: skip
    data = []
    for i, m in enumerate(maps):
        r, c = divmod(i, cols)
        k = "" if i == 0 else str(i + 1)
        axis = {"showticklabels": False, "showgrid": False, "zeroline": False, "constrain": "domain"}
        layout["xaxis" + k] = {**axis, "domain": [c * (w + gap_x), c * (w + gap_x) + w], "anchor": "y" + k}
        layout["yaxis" + k] = {
            **axis, "domain": [1 - r * (h + gap_y) - h, 1 - r * (h + gap_y)], "anchor": "x" + k,
            "autorange": "reversed", "scaleanchor": "x" + k,
        }  # fmt: skip
        data.append({
            "type": "heatmap", "z": m, "coloraxis": "coloraxis", "xaxis": "x" + k, "yaxis": "y" + k,
            "name": labels[i], "hovertemplate": f"{labels[i]}<br>x=%{{x}} y=%{{y}}: %{{z:.3f}}<extra></extra>",
        })  # fmt: skip
    fig = go.Figure({"data": data, "layout": layout})
    return _compact(fig, max(120, rows * cell_px + 50), title)


def feature_map_grid(
    maps: np.ndarray, name: str = "", max_maps: int = 32, cols: int = 8, cell_px: int = 70
) -> go.Figure:
    """Grid of one layer's [C, H, W] activations, one color scale for all (first `max_maps`)."""
    maps = np.asarray(maps)
    shown = maps[:max_maps]
    zmin, zmax = float(shown.min()), float(shown.max())
    if zmax <= zmin:
        zmax = zmin + 1e-6
    title = f"{name} — {maps.shape[0]} maps {maps.shape[1]}x{maps.shape[2]}"
    if maps.shape[0] > max_maps:
        title += f" (showing first {max_maps})"
    labels = [f"ch {i}" for i in range(len(shown))]
    return _map_grid(shown, labels, zmin, zmax, "Viridis", cols, title, cell_px)


def filters_grid(weights: np.ndarray, max_filters: int = 32, cols: int = 8, cell_px: int = 60) -> go.Figure:
    """First-layer filters [out, in, k, k] (input channel 0), diverging scale symmetric about 0."""
    w = np.asarray(weights)
    shown = w[:max_filters, 0]
    lim = float(np.abs(shown).max()) or 1e-6
    title = f"first-layer filters — {w.shape[0]} x {w.shape[2]}x{w.shape[3]}"
    if w.shape[1] > 1:
        title += " (input channel 0)"
    if w.shape[0] > max_filters:
        title += f" (showing first {max_filters})"
    labels = [f"f {i}" for i in range(len(shown))]
    return _map_grid(shown, labels, -lim, lim, "RdBu", cols, title, cell_px)


def saliency_overlay(
    img: np.ndarray, attr: np.ndarray, opacity: float = 0.6, title: str | None = None, height: int = 260
) -> go.Figure:
    """The input in gray with a [0, 1] attribution map laid over it (transparent where 0)."""
    fig = go.Figure(
        [
            go.Heatmap(z=np.asarray(img), colorscale="gray", zmin=0, zmax=1, showscale=False,
                       hoverinfo="skip"),
            go.Heatmap(z=np.asarray(attr), colorscale=HEAT, zmin=0, zmax=1, opacity=opacity,
                       colorbar=dict(thickness=10, len=0.9),
                       hovertemplate="x=%{x} y=%{y}: %{z:.2f}<extra></extra>"),
        ]
    )  # fmt: skip
    _square_image_axes(fig)
    return _compact(fig, height, title)


_PARAM_LABELS = {
    "rotate_deg": "rotation (degrees, counter-clockwise)",
    "shift_x": "shift right (pixels)",
    "shift_y": "shift down (pixels)",
    "thickness": "stroke thickness (−thinner / +thicker)",
}


def sweep_chart(
    values: Sequence[float], probs: np.ndarray, param: str = "rotate_deg", title: str | None = None
) -> go.Figure:
    """Probability of each class (10 lines) along a perturbation sweep; faint classes start hidden."""
    p = np.asarray(probs, dtype=float)
    x = np.asarray(values, dtype=float)
    fig = go.Figure()
    for c in range(p.shape[1]):
        fig.add_trace(
            go.Scatter(
                x=x, y=p[:, c], mode="lines+markers", name=str(c),
                line=dict(color=CLASS_COLORS[c % 10], width=2), marker=dict(size=4),
                visible=True if p[:, c].max() >= 0.05 else "legendonly",
                hovertemplate=f"digit {c}: %{{y:.3f}}<extra></extra>",
            )
        )  # fmt: skip
    fig.update_layout(hovermode="x unified", legend=dict(title="digit", orientation="h", y=-0.25))
    fig.update_yaxes(range=[0, 1.02], tickformat=".0%", title="probability")
    fig.update_xaxes(title=_PARAM_LABELS.get(param, param))
    return _compact(fig, 320, title)


def compare_bars(
    probs_a: Sequence[float], probs_b: Sequence[float], name_a: str = "model A", name_b: str = "model B",
    title: str | None = None,
) -> go.Figure:  # fmt: skip
    """Two models' class probabilities side by side (grouped bars)."""
    digits = [str(i) for i in range(10)]
    fig = go.Figure(
        [
            go.Bar(x=digits, y=np.asarray(probs_a, dtype=float), name=name_a, marker_color="#636EFA"),
            go.Bar(x=digits, y=np.asarray(probs_b, dtype=float), name=name_b, marker_color="#EF553B"),
        ]
    )
    fig.update_layout(barmode="group", legend=dict(orientation="h", y=1.12))
    fig.update_yaxes(range=[0, 1.05], tickformat=".0%")
    fig.update_xaxes(type="category", title="digit")
    return _compact(fig, 280, title)


def tile_maps(maps: np.ndarray, cols: int = 8, gap: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """[C, H, W] maps tiled row-major into one [rows*(H+gap)-gap, cols*(W+gap)-gap] array with NaN
    gaps (drawn blank), plus the channel index of every cell (-1 in the gaps)."""
    maps = np.asarray(maps, dtype=np.float32)
    n, h, w = maps.shape
    rows, cols = _grid(n, cols)
    big = np.full((rows * (h + gap) - gap, cols * (w + gap) - gap), np.nan, np.float32)
    chan = np.full(big.shape, -1, np.int16)
    for i in range(n):
        r, c = divmod(i, cols)
        y, x = r * (h + gap), c * (w + gap)
        big[y : y + h, x : x + w] = maps[i]
        chan[y : y + h, x : x + w] = i
    return big, chan


def feature_map_mosaic(
    maps: np.ndarray, name: str = "", max_maps: int = 32, cols: int = 8, cell_px: int = 70
) -> go.Figure:
    """Like `feature_map_grid` (same title, one color scale for all shown maps) but drawn as ONE
    heatmap of tiled maps: ~10x cheaper to build and serialize than 32 subplots, which matters on
    the Draw page where it is rebuilt after every stroke."""
    maps = np.asarray(maps)
    shown = maps[:max_maps]
    zmin, zmax = float(shown.min()), float(shown.max())
    if zmax <= zmin:
        zmax = zmin + 1e-6
    title = f"{name} — {maps.shape[0]} maps {maps.shape[1]}x{maps.shape[2]}"
    if maps.shape[0] > max_maps:
        title += f" (showing first {max_maps})"
    big, chan = tile_maps(shown, cols)
    rows, _ = _grid(len(shown), cols)
    axis = {"showticklabels": False, "showgrid": False, "zeroline": False, "constrain": "domain"}
    # Layout passed whole to the constructor: plotly's update_* path parsing costs more than the data.
    return go.Figure(
        data=[go.Heatmap(
            z=big, customdata=chan, colorscale="Viridis", zmin=zmin, zmax=zmax, hoverongaps=False,
            colorbar=dict(thickness=10, len=0.9), hovertemplate="ch %{customdata}: %{z:.3f}<extra></extra>",
        )],
        layout={
            "height": max(120, rows * cell_px + 50), "margin": dict(l=10, r=10, t=40, b=10),
            "title": {"text": title}, "xaxis": axis,
            "yaxis": {**axis, "autorange": "reversed", "scaleanchor": "x"},
        },
    )  # fmt: skip
