"""Robustness: class probabilities as a digit is rotated, shifted, thickened or thinned, and the test
images a model gets wrong."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data import MEAN, STD
from ..errors import LabError
from .preprocessing import FIELD
from .probes import predict_probs

# Default values of each perturbation parameter (degrees; pixels; 3x3 dilation steps, negative: erosion).
SWEEP_DEFAULTS: dict[str, np.ndarray] = {
    "rotate_deg": np.linspace(-45, 45, 19),
    "shift_x": np.arange(-6, 7, dtype=np.float64),
    "shift_y": np.arange(-6, 7, dtype=np.float64),
    "thickness": np.linspace(-2, 2, 17),
}


@dataclass
class Sweep:
    """Class probabilities along one perturbation parameter."""

    param: str  # "rotate_deg" | "shift_x" | "shift_y" | "thickness"
    values: np.ndarray  # [n]
    probs: np.ndarray  # [n, 10]


def _morph(t: torch.Tensor, thickness: float) -> torch.Tensor:
    """Dilate (>0) or erode (<0) by |thickness| 3x3 steps; a fractional step is blended in."""
    if thickness == 0:
        return t
    sign = 1.0 if thickness > 0 else -1.0
    whole, frac = divmod(abs(float(thickness)), 1.0)

    def step(v: torch.Tensor) -> torch.Tensor:
        return sign * F.max_pool2d(sign * v, 3, stride=1, padding=1)

    for _ in range(int(whole)):
        t = step(t)
    if frac > 0:
        t = (1 - frac) * t + frac * step(t)
    return t


def _affine(t: torch.Tensor, rotate_deg: float, shift_x: float, shift_y: float) -> torch.Tensor:
    # theta maps output to input coordinates (x right, y down, 2/28 per pixel): rotating the
    # sampling grid clockwise turns the content counter-clockwise as displayed.
    a = np.deg2rad(rotate_deg)
    c, s = float(np.cos(a)), float(np.sin(a))
    px = 2.0 / FIELD
    theta = torch.tensor([[c, -s, -shift_x * px], [s, c, -shift_y * px]], dtype=t.dtype)
    theta = theta.expand(t.shape[0], 2, 3)
    grid = F.affine_grid(theta, list(t.shape), align_corners=False)
    return F.grid_sample(t, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def perturb(
    img28: np.ndarray,
    rotate_deg: float = 0.0,
    shift_x: float = 0.0,
    shift_y: float = 0.0,
    thickness: float = 0.0,
) -> np.ndarray:
    """A [28, 28] image in [0, 1], stroke thickened/thinned, then rotated (degrees,
    counter-clockwise) about the center and shifted (pixels, right / down)."""
    t = torch.as_tensor(np.asarray(img28, dtype=np.float32)).reshape(1, 1, FIELD, FIELD)
    t = _morph(t, thickness)
    if rotate_deg or shift_x or shift_y:
        t = _affine(t, rotate_deg, shift_x, shift_y)
    return t[0, 0].clamp(0.0, 1.0).numpy()


def sweep(
    model: nn.Module,
    img28: np.ndarray,
    param: str = "rotate_deg",
    values: Sequence[float] | np.ndarray | None = None,
    **fixed: float,
) -> Sweep:
    """Class probabilities as one perturbation parameter varies (others fixed, default 0)."""
    if param not in SWEEP_DEFAULTS:
        raise LabError(f"unknown sweep parameter {param!r}; known: {', '.join(SWEEP_DEFAULTS)}")
    vals = np.asarray(SWEEP_DEFAULTS[param] if values is None else values, dtype=np.float64)
    imgs = np.stack([perturb(img28, **{**fixed, param: float(v)}) for v in vals])
    return Sweep(param, vals, predict_probs(model, imgs))


def test_image(x_u8: torch.Tensor | np.ndarray, idx: int) -> np.ndarray:
    """Test image `idx` of a uint8 [N, 28, 28] tensor as a [28, 28] float32 in [0, 1]."""
    return np.asarray(x_u8[int(idx)], dtype=np.float32) / 255.0


test_image.__test__ = False  # type: ignore[attr-defined]  # not a pytest test


def find_misclassified(
    model: nn.Module,
    x_u8: torch.Tensor,
    y: torch.Tensor,
    limit: int = 50,
    batch: int = 1000,
) -> np.ndarray:
    """Indices (ascending, at most `limit`) of images the model gets wrong; stops early."""
    found: list[np.ndarray] = []
    count = 0
    labels = torch.as_tensor(y).cpu()
    for i in range(0, len(x_u8), batch):
        imgs = torch.as_tensor(x_u8[i : i + batch]).float().div(255.0)
        t = (imgs - MEAN) / STD
        preds = torch.from_numpy(predict_probs(model, t, batch)).argmax(1)
        wrong = torch.nonzero(preds != labels[i : i + batch]).flatten().numpy() + i
        found.append(wrong[: limit - count])
        count += len(found[-1])
        if count >= limit:
            break
    return np.concatenate(found).astype(np.int64) if found else np.zeros(0, np.int64)
