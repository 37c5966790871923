"""Sweep figures: hyperparameters -> validation accuracy (parallel coordinates) and overlaid val curves."""

from __future__ import annotations

import math
from typing import Any

import plotly.graph_objects as go


def _dimension(name: str, kind: str, values: list[Any]) -> dict:
    if kind == "choice" and any(isinstance(v, str) for v in values):
        cats = sorted({str(v) for v in values})
        return {"label": name, "values": [cats.index(str(v)) for v in values],
                "tickvals": list(range(len(cats))), "ticktext": cats}
    if kind == "loguniform":
        return {"label": f"{name} (log10)", "values": [math.log10(float(v)) for v in values]}
    return {"label": name, "values": [float(v) for v in values]}


def parcoords(rows: list[dict], params: list[dict]) -> go.Figure:
    """One line per trial with a validation accuracy: its sampled values, then its best val accuracy."""
    scored = [r for r in rows if isinstance(r.get("best_val_acc"), (int, float))
              and all(p["field"] in (r.get("params") or {}) for p in params)]
    dims = [_dimension(p["field"], p["kind"], [r["params"][p["field"]] for r in scored]) for p in params]
    acc = [r["best_val_acc"] for r in scored]
    dims.append({"label": "best val acc", "values": acc})
    line = {"color": acc, "colorscale": "Viridis", "showscale": bool(acc),
            "colorbar": {"title": {"text": "val acc"}}} if acc else {}
    return go.Figure(
        data=[go.Parcoords(dimensions=dims, line=line)],
        layout={"height": 380, "margin": {"l": 60, "r": 40, "t": 90, "b": 30},  # room for the axis labels
                "title": {"text": f"Hyperparameters → validation accuracy ({len(scored)} trials)"},
                "uirevision": "parcoords"},
    )


def val_curves(curves: list[dict], best_run: str | None = None) -> go.Figure:
    """Validation accuracy per epoch of every trial (`{"name", "run_id", "epochs", "val_acc"}`), best bold."""
    traces = [
        {"type": "scatter", "mode": "lines+markers", "name": c["name"], "x": c["epochs"], "y": c["val_acc"],
         "line": {"width": 4 if c["run_id"] == best_run else 1.5}}
        for c in curves
    ]
    return go.Figure(
        data=traces,
        layout={"height": 360, "margin": {"l": 60, "r": 20, "t": 50, "b": 40},
                "title": {"text": "Validation accuracy of every trial"},
                "xaxis": {"title": {"text": "epoch"}, "rangemode": "tozero"}, "yaxis": {"title": {"text": "val acc"}},
                "legend": {"font": {"size": 10}}, "uirevision": "val_curves"},
    )
