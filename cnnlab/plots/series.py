"""The one downsampler and the one smoother of curves, shared by the Train and Compare pages.

Long curves are downsampled before plotly draws them (a redraw costs most of a rerun); the bucketed
min/max keeps spikes such as a divergence, which an even stride would skip.
"""

from __future__ import annotations

import math
from typing import Iterable, Sequence

import numpy as np


def downsample(xs: Sequence[float], ys: Sequence[float | None], max_points: int = 500,
               gaps: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """At most `max_points` points of (xs, ys): per bucket its first, min, max and last, in x order.

    Keeps the global min and max (a spike survives), the first and the last point. Non-finite y values
    (NaN, inf, None) are dropped, or with `gaps=True` kept as NaN (one per run of them) so that plotly
    breaks the line there; points with a non-finite x are always dropped.
    """
    x = np.asarray(xs, dtype=float)
    y = np.asarray(ys, dtype=float)  # None -> NaN
    has_x = np.isfinite(x)
    finite = has_x & np.isfinite(y)
    idx = _keep(y[finite], max_points)
    kept = np.flatnonzero(finite)[idx]
    if gaps:
        holes = has_x & ~finite
        after_hole = np.zeros_like(holes)
        after_hole[1:] = holes[:-1]
        kept = np.union1d(kept, np.flatnonzero(holes & ~after_hole))
        y = np.where(finite, y, np.nan)
    return x[kept], y[kept]


def _keep(y: np.ndarray, max_points: int) -> np.ndarray:
    """Indices into finite `y` that the bucketed min/max keeps."""
    n = len(y)
    max_points = max(4, int(max_points))
    if n <= max_points:
        return np.arange(n)
    n_buckets = max_points // 4
    edges = np.linspace(0, n, n_buckets + 1).astype(np.int64)
    starts, ends = edges[:-1], edges[1:] - 1
    # argmin/argmax per bucket: reduceat over the bucket starts
    seg_min = np.minimum.reduceat(y, starts)
    seg_max = np.maximum.reduceat(y, starts)
    bucket = np.repeat(np.arange(n_buckets), np.diff(edges))
    is_min = y == seg_min[bucket]
    is_max = y == seg_max[bucket]
    # first index of the min and of the max in each bucket
    idx = np.arange(n)
    big = n + 1
    imin = np.minimum.reduceat(np.where(is_min, idx, big), starts)
    imax = np.minimum.reduceat(np.where(is_max, idx, big), starts)
    return np.unique(np.concatenate([starts, ends, imin, imax]))


class Ema:
    """Debiased exponential moving average (TensorBoard's smoothing), extended one value at a time.

    `smoothing` in [0, 1); 0 = raw. A non-finite value leaves the average as it was.
    """

    def __init__(self, smoothing: float = 0.9) -> None:
        if not 0 <= smoothing < 1:
            raise ValueError(f"smoothing must be in [0, 1), got {smoothing}")
        self.a, self.b = smoothing, 1.0 - smoothing
        self._acc = 0.0
        self._w = 0.0  # the debiasing weight: 1 - a**k after k values

    def add(self, value: float) -> float:
        """Feed one value; returns the smoothed value at it."""
        if math.isfinite(value):
            self._acc = self.a * self._acc + self.b * value
            self._w = self.a * self._w + self.b
        return self._acc / self._w if self._w else value

    def extend(self, values: Iterable[float]) -> list[float]:
        """Feed many values; returns the smoothed value at each."""
        return [self.add(float(v)) for v in values]
