"""Plotly figures for the Draw / probe page: take arrays, return go.Figure, never call Streamlit.

Every figure is built in one `go.Figure(data=[...], layout={...})` call from plain dicts: plotly
validates each property once there, whereas `update_layout` / `update_xaxes` / `add_trace` chains
re-parse and re-validate on every call (~4-6 ms against ~1 ms per small figure here, and the Draw
page rebuilds its figures after every stroke). Arrays stay numpy, which plotly sends as compact
base64 typed arrays rather than JSON lists.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import plotly.colors
import plotly.graph_objects as go

from ..textsafe import plot_text

CLASS_COLORS = plotly.colors.qualitative.Plotly  # one per digit (ten colors)
ACCENT = CLASS_COLORS[1]  # the predicted class
MUTED = "#9AA5B1"
# Transparent at 0 so the digit shows through where attribution is nil.
HEAT = [[0.0, "rgba(255,0,0,0)"], [0.4, "rgba(255,80,0,0.6)"], [1.0, "rgba(255,255,0,0.95)"]]
_BARE = {"showticklabels": False, "showgrid": False, "zeroline": False, "constrain": "domain"}
_COLORBAR = {"thickness": 10, "len": 0.9}


def _layout(height: int, title: str | None, **more) -> dict:
    """A compact layout dict: small margins, room for the title only when there is one."""
    return {
        "height": height, "margin": {"l": 10, "r": 10, "t": 40 if title else 10, "b": 10},
        **({"title": {"text": title}} if title else {}), **more,
    }  # fmt: skip


def _image_axes(x: str = "x", y: str = "y") -> tuple[dict, dict]:
    """Bare x / y axes for an image: square pixels, row 0 at the top."""
    return dict(_BARE), {**_BARE, "autorange": "reversed", "scaleanchor": x}


def prob_bars(probs: Sequence[float], top: int | None = None, title: str | None = None) -> go.Figure:
    """Bar chart of the 10 class probabilities, the top class highlighted."""
    p = np.asarray(probs, dtype=float)
    top = int(np.argmax(p)) if top is None else int(top)
    bar = {
        "type": "bar", "x": [str(i) for i in range(len(p))], "y": p,
        "marker": {"color": [ACCENT if i == top else MUTED for i in range(len(p))]},
        "text": [f"{v:.0%}" if v >= 0.01 else "" for v in p], "textposition": "outside",
        "hovertemplate": "digit %{x}: %{y:.3f}<extra></extra>",
    }  # fmt: skip
    return go.Figure(data=[bar], layout=_layout(
        260, title, xaxis={"type": "category", "title": {"text": "digit"}},
        yaxis={"range": [0, 1.12], "tickformat": ".0%"},
    ))  # fmt: skip


def image_heatmap(img: np.ndarray, title: str | None = None, height: int = 260) -> go.Figure:
    """A 28x28 image in [0, 1] as a gray square heatmap (row 0 at the top)."""
    xaxis, yaxis = _image_axes()
    heat = {"type": "heatmap", "z": np.asarray(img), "colorscale": "gray", "zmin": 0, "zmax": 1,
            "showscale": False, "hovertemplate": "x=%{x} y=%{y}: %{z:.2f}<extra></extra>"}  # fmt: skip
    return go.Figure(data=[heat], layout=_layout(height, title, xaxis=xaxis, yaxis=yaxis))


def _grid(n: int, cols: int) -> tuple[int, int]:
    cols = max(1, min(cols, n))
    return math.ceil(n / cols), cols


def _maps_title(maps: np.ndarray, name: str, max_maps: int) -> str:
    title = f"{name} — {maps.shape[0]} maps {maps.shape[1]}x{maps.shape[2]}"
    if maps.shape[0] > max_maps:
        title += f" (showing first {max_maps})"
    return title


def _filters_title(w: np.ndarray, max_filters: int) -> str:
    title = f"first-layer filters — {w.shape[0]} x {w.shape[2]}x{w.shape[3]}"
    if w.shape[1] > 1:
        title += " (input channel 0)"
    if w.shape[0] > max_filters:
        title += f" (showing first {max_filters})"
    return title


def _value_range(shown: np.ndarray) -> tuple[float, float]:
    zmin, zmax = float(shown.min()), float(shown.max())
    return zmin, (zmin + 1e-6 if zmax <= zmin else zmax)


def saliency_overlay(
    img: np.ndarray, attr: np.ndarray, opacity: float = 0.6, title: str | None = None, height: int = 260
) -> go.Figure:
    """The input in gray with a [0, 1] attribution map laid over it (transparent where 0)."""
    xaxis, yaxis = _image_axes()
    data = [
        {"type": "heatmap", "z": np.asarray(img), "colorscale": "gray", "zmin": 0, "zmax": 1,
         "showscale": False, "hoverinfo": "skip"},
        {"type": "heatmap", "z": np.asarray(attr), "colorscale": HEAT, "zmin": 0, "zmax": 1,
         "opacity": opacity, "colorbar": _COLORBAR,
         "hovertemplate": "x=%{x} y=%{y}: %{z:.2f}<extra></extra>"},
    ]  # fmt: skip
    return go.Figure(data=data, layout=_layout(height, title, xaxis=xaxis, yaxis=yaxis))


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
    data = [
        {"type": "scatter", "x": x, "y": p[:, c], "mode": "lines+markers", "name": str(c),
         "line": {"color": CLASS_COLORS[c % 10], "width": 2}, "marker": {"size": 4},
         "visible": True if p[:, c].max() >= 0.05 else "legendonly",
         "hovertemplate": f"digit {c}: %{{y:.3f}}<extra></extra>"}
        for c in range(p.shape[1])
    ]  # fmt: skip
    return go.Figure(data=data, layout=_layout(
        320, title, hovermode="x unified",
        legend={"title": {"text": "digit"}, "orientation": "h", "y": -0.25},
        xaxis={"title": {"text": _PARAM_LABELS.get(param, param)}},
        yaxis={"range": [0, 1.02], "tickformat": ".0%", "title": {"text": "probability"}},
    ))  # fmt: skip


def compare_bars(
    probs_a: Sequence[float], probs_b: Sequence[float], name_a: str = "model A", name_b: str = "model B",
    title: str | None = None,
) -> go.Figure:  # fmt: skip
    """Two models' class probabilities side by side (grouped bars)."""
    digits = [str(i) for i in range(10)]
    data = [
        {"type": "bar", "x": digits, "y": np.asarray(probs_a, dtype=float), "name": plot_text(name_a),
         "marker": {"color": CLASS_COLORS[0]}},
        {"type": "bar", "x": digits, "y": np.asarray(probs_b, dtype=float), "name": plot_text(name_b),
         "marker": {"color": CLASS_COLORS[1]}},
    ]  # fmt: skip
    return go.Figure(data=data, layout=_layout(
        280, title, barmode="group", legend={"orientation": "h", "y": 1.12},
        xaxis={"type": "category", "title": {"text": "digit"}},
        yaxis={"range": [0, 1.05], "tickformat": ".0%"},
    ))  # fmt: skip


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


def _mosaic(
    shown: np.ndarray, zmin: float, zmax: float, colorscale: str, label: str, cols: int, title: str,
    cell_px: int,
) -> go.Figure:  # fmt: skip
    """[N, H, W] maps as ONE heatmap of tiles on one color scale, hover naming each map's index."""
    big, chan = tile_maps(shown, cols)
    if len(shown) <= 255:  # 1 byte per cell on the wire instead of 2; gaps are never hovered
        chan = chan.astype(np.uint8)
    rows, _ = _grid(len(shown), cols)
    xaxis, yaxis = _image_axes()
    heat = {
        "type": "heatmap", "z": big, "customdata": chan, "colorscale": colorscale, "zmin": zmin,
        "zmax": zmax, "hoverongaps": False, "colorbar": _COLORBAR,
        "hovertemplate": f"{label} %{{customdata}}: %{{z:.3f}}<extra></extra>",
    }  # fmt: skip
    return go.Figure(data=[heat], layout=_layout(max(120, rows * cell_px + 50), title, xaxis=xaxis, yaxis=yaxis))


def feature_map_mosaic(
    maps: np.ndarray, name: str = "", max_maps: int = 32, cols: int = 8, cell_px: int = 70
) -> go.Figure:
    """One layer's [C, H, W] activations (the first `max_maps`) on one color scale, drawn as ONE heatmap
    of tiled maps: ~10x cheaper to build and serialize than 32 subplots (the grid it replaced), which
    matters on the Draw page where it is rebuilt after every stroke."""
    maps = np.asarray(maps)
    shown = maps[:max_maps]
    zmin, zmax = _value_range(shown)
    return _mosaic(shown, zmin, zmax, "Viridis", "ch", cols, _maps_title(maps, name, max_maps), cell_px)


def filters_mosaic(weights: np.ndarray, max_filters: int = 32, cols: int = 8, cell_px: int = 60) -> go.Figure:
    """First-layer filters [out, in, k, k] (input channel 0), diverging scale symmetric about 0, drawn as ONE
    tiled heatmap: Streamlit re-serializes it on every rerun, ~4x cheaper than 32 subplots' 64 axes."""
    w = np.asarray(weights)
    shown = w[:max_filters, 0]
    lim = float(np.abs(shown).max()) or 1e-6
    return _mosaic(shown, -lim, lim, "RdBu", "f", cols, _filters_title(w, max_filters), cell_px)
