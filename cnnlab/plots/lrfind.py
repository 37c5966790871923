"""The LR range test figure: loss against learning rate (log x), the suggestion marked."""

from __future__ import annotations

from typing import Sequence

import plotly.colors
import plotly.graph_objects as go

from .curves import RAW, SMOOTH

SUGGEST = "#00CC96"
MINIMUM = plotly.colors.qualitative.Plotly[1]


def lr_find_figure(lrs: Sequence[float], losses: Sequence[float], smoothed: Sequence[float],
                   suggestion: float | None = None, min_lr: float | None = None,
                   recipe_lr: float | None = None, title: str | None = None) -> go.Figure:
    """Raw and smoothed loss per LR on a log axis; dashed lines at the suggestion, the minimum and the recipe LR."""
    traces = [
        go.Scatter(x=list(lrs), y=list(losses), mode="lines", name="loss (step)", line=dict(color=RAW, width=1)),
        go.Scatter(x=list(lrs), y=list(smoothed), mode="lines", name="loss (smoothed)",
                   line=dict(color=SMOOTH, width=2)),
    ]
    shapes, notes = [], []
    for x, text, color, dash, y in ((suggestion, "suggested", SUGGEST, "dash", 1.0),
                                    (min_lr, "minimum", MINIMUM, "dot", 0.93),
                                    (recipe_lr, "recipe", "#9AA5B1", "dot", 0.86)):
        if x is None:
            continue
        shapes.append(dict(type="line", xref="x", yref="paper", x0=x, x1=x, y0=0, y1=1,
                           line=dict(color=color, width=2 if text == "suggested" else 1.5, dash=dash)))
        notes.append(dict(x=x, xref="x", y=y, yref="paper", yanchor="bottom", showarrow=False,
                          text=f"{text} {x:.2g}", font=dict(size=12, color=color), bgcolor="rgba(255,255,255,0.7)"))
    # the y range of the useful part: the explosion at the end would flatten everything else
    finite = [v for v in smoothed if v == v]
    yr = None
    if finite:
        lo, start = min(finite), finite[0]
        yr = [max(0.0, lo - 0.1 * (start - lo)), max(start, lo) * 1.15 + 1e-3]
    fig = go.Figure(data=traces)
    fig.update_layout(
        height=360, margin=dict(l=10, r=10, t=40 if title else 20, b=10),
        title=dict(text=title) if title else None,
        xaxis=dict(type="log", title="learning rate", exponentformat="power"),
        yaxis=dict(title="training loss", range=yr),
        shapes=shapes, annotations=notes, hovermode="x unified",
        legend=dict(orientation="h", yanchor="top", y=-0.2, x=0),
    )
    if not len(lrs):
        fig.add_annotation(text="no points yet", x=0.5, y=0.5, xref="paper", yref="paper", showarrow=False,
                           font=dict(size=14, color="#888"))
    return fig
