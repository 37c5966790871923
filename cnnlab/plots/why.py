"""Plotly figures for the "see why" views: layer health, errors fixed/broken, one image across epochs,
the test set as a map. Take data, return go.Figure, never call Streamlit; built from plain dicts in one
`go.Figure` call (the Draw page rebuilds some after every stroke, see probe.py)."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import plotly.graph_objects as go

from .probe import CLASS_COLORS, _layout

FIXED, BROKEN = "#00A36C", "#D62728"


def health_heatmap(names: Sequence[str], steps: Sequence[int], values: np.ndarray, label: str, log: bool,
                   height: int | None = None) -> go.Figure:
    """Layer x time heatmap of one health quantity (log10 color scale for norms and ratios)."""
    v = np.asarray(values, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.log10(np.where(v > 0, v, np.nan)) if log else v
    shown = np.where(np.isfinite(v), v, np.nan)
    heat = {
        "type": "heatmap", "z": z, "x": list(steps), "y": list(names), "customdata": shown,
        "colorscale": "Viridis", "hoverongaps": False,
        "colorbar": {"thickness": 10, "title": {"text": f"log10 {label}" if log else label, "side": "right"}},
        "hovertemplate": f"%{{y}} at step %{{x}}<br>{label}: %{{customdata:.3g}}<extra></extra>",
    }  # fmt: skip
    if not log and label.startswith("dead"):
        heat.update(zmin=0, zmax=1, colorscale="Reds")
    h = height or max(180, 60 + 26 * len(names))
    return go.Figure(data=[heat], layout=_layout(
        h, None, xaxis={"title": {"text": "step"}},
        yaxis={"autorange": "reversed", "type": "category"},
    ))  # fmt: skip


def fix_counts(fixed: Sequence[int], broken: Sequence[int], selected: int | None = None,
               height: int = 240) -> go.Figure:
    """Per true digit: how many errors B fixed (up) and broke (down)."""
    digits = [str(d) for d in range(10)]
    f, b = np.asarray(fixed, int), np.asarray(broken, int)
    line = [3 if selected is not None and d == selected else 0 for d in range(10)]
    bars = [
        {"type": "bar", "x": digits, "y": f, "name": f"B fixed ({int(f.sum())})", "marker":
         {"color": FIXED, "line": {"width": line, "color": "black"}}, "text": [str(v) if v else "" for v in f],
         "textposition": "outside", "hovertemplate": "digit %{x}: B fixed %{y}<extra></extra>"},
        {"type": "bar", "x": digits, "y": -b, "name": f"B broke ({int(b.sum())})", "marker":
         {"color": BROKEN, "line": {"width": line, "color": "black"}}, "text": [str(v) if v else "" for v in b],
         "textposition": "outside", "customdata": b, "hovertemplate": "digit %{x}: B broke %{customdata}<extra></extra>"},
    ]  # fmt: skip
    top = max(1, int(f.max(initial=0)), int(b.max(initial=0)))
    return go.Figure(data=bars, layout=_layout(
        height, None, barmode="relative", xaxis={"type": "category", "title": {"text": "true digit"}},
        yaxis={"range": [-1.3 * top, 1.3 * top], "title": {"text": "images"}},
        legend={"orientation": "h", "y": 1.12, "x": 0},
    ))  # fmt: skip


def epoch_heatmap(epochs: Sequence[int], probs: np.ndarray, height: int | None = None) -> go.Figure:
    """Epoch x class probability heatmap, the top class of each epoch marked and labelled."""
    p = np.asarray(probs, dtype=float)
    ep = [str(e) for e in epochs]
    top = p.argmax(1) if len(p) else np.zeros(0, int)
    text = [[f"{v:.0%}" if v >= 0.1 else "" for v in row] for row in p]
    heat = {"type": "heatmap", "z": p, "x": [str(c) for c in range(10)], "y": ep, "zmin": 0, "zmax": 1,
            "colorscale": "Blues", "text": text, "texttemplate": "%{text}", "xgap": 1, "ygap": 1,
            "colorbar": {"thickness": 10, "title": {"text": "p"}},
            "hovertemplate": "epoch %{y}, digit %{x}: %{z:.3f}<extra></extra>"}  # fmt: skip
    marks = {"type": "scatter", "mode": "markers", "x": [str(int(t)) for t in top], "y": ep, "showlegend": False,
             "marker": {"symbol": "square-open", "size": 22, "color": "#D62728", "line": {"width": 2}},
             "hovertemplate": "epoch %{y}: top class %{x}<extra></extra>"}  # fmt: skip
    h = height or max(200, 70 + 24 * len(ep))
    return go.Figure(data=[heat, marks], layout=_layout(
        h, None, xaxis={"type": "category", "title": {"text": "class"}, "side": "top"},
        yaxis={"type": "category", "title": {"text": "after epoch"}, "autorange": "reversed"},
    ))  # fmt: skip


def test_map(xy: np.ndarray, labels: np.ndarray, preds: np.ndarray, confidence: np.ndarray,
             indices: np.ndarray, hover_art: Sequence[str] | None = None, star: Sequence[float] | None = None,
             star_label: str = "", selected: int | None = None, explained: tuple[float, float] = (0.0, 0.0),
             height: int = 520) -> go.Figure:
    """The test set on two PCA axes: one trace per true digit, mistakes as black-rimmed crosses, the
    drawing as a star, the clicked image ringed. customdata[0] of every test point is its test index."""
    xy, labels, preds = np.asarray(xy), np.asarray(labels), np.asarray(preds)
    conf, idx = np.asarray(confidence), np.asarray(indices)
    art = list(hover_art) if hover_art is not None else None
    traces = []
    for d in range(10):
        for wrong in (False, True):
            sel = np.nonzero((labels == d) & ((preds != labels) if wrong else (preds == labels)))[0]
            if not len(sel):
                continue
            cd = np.stack([idx[sel], preds[sel], conf[sel]], 1)
            hover = ("test #%{customdata[0]}: true " + str(d) + ", predicted %{customdata[1]} "
                     "(%{customdata[2]:.0%})" + ("<br>%{text}" if art else "") + "<extra></extra>")
            traces.append({
                "type": "scattergl" if len(xy) > 3000 else "scatter", "mode": "markers",
                "x": xy[sel, 0], "y": xy[sel, 1], "customdata": cd, "hovertemplate": hover,
                "text": [art[i] for i in sel] if art else None,
                "name": f"{d} mistakes" if wrong else str(d), "legendgroup": str(d), "showlegend": not wrong,
                "marker": ({"symbol": "x", "size": 9, "color": CLASS_COLORS[d], "line": {"width": 1.5, "color": "black"}}
                           if wrong else {"size": 5, "color": CLASS_COLORS[d], "opacity": 0.7}),
            })  # fmt: skip
    if selected is not None:
        pos = np.nonzero(idx == selected)[0]
        if len(pos):
            i = int(pos[0])
            traces.append({"type": "scatter", "mode": "markers", "x": [xy[i, 0]], "y": [xy[i, 1]], "showlegend": False,
                           "hoverinfo": "skip", "marker": {"symbol": "circle-open", "size": 20, "color": "black",
                                                           "line": {"width": 3}}})  # fmt: skip
    if star is not None:
        traces.append({"type": "scatter", "mode": "markers+text", "x": [star[0]], "y": [star[1]], "name": "your drawing",
                       "text": [star_label], "textposition": "top center", "textfont": {"size": 14},
                       "marker": {"symbol": "star", "size": 24, "color": "gold", "line": {"width": 2, "color": "black"}},
                       "hovertemplate": "your drawing: " + star_label + "<extra></extra>"})  # fmt: skip
    return go.Figure(data=traces, layout=_layout(
        height, None, clickmode="event+select", dragmode="pan", hovermode="closest",
        hoverlabel={"font": {"family": "monospace", "size": 9}},
        xaxis={"title": {"text": f"PC 1 ({explained[0]:.0%} of variance)"}, "zeroline": False},
        yaxis={"title": {"text": f"PC 2 ({explained[1]:.0%} of variance)"}, "zeroline": False},
        legend={"title": {"text": "true digit"}, "itemsizing": "constant"},
    ))  # fmt: skip


test_map.__test__ = False  # type: ignore[attr-defined]  # not a pytest test
