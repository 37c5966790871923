"""Reading the selection state that `st.plotly_chart(on_select=...)` returns (a dict or an attribute object)."""

from __future__ import annotations

from typing import Any


def selection_points(selection: Any) -> list:
    """The selected points of a plotly chart's selection state; [] when there is none."""
    try:
        points = selection["selection"]["points"]
    except (KeyError, TypeError):
        try:
            points = selection.selection.points
        except AttributeError:
            return []
    return list(points or [])
