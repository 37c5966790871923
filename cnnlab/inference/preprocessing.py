"""Canvas preprocessing: drawn pixels -> an MNIST-like 28x28 digit and its normalized model input."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..data import MEAN, STD
from ..errors import LabError

# Canvas pixels at or below this intensity (0..1) are noise, not ink (antialiasing fringes, stray
# alpha): they are ignored when finding the bounding box and counting ink.
INK_THRESHOLD = 0.1
# "Nearly empty": fewer ink pixels than this fraction of the canvas area (0.2 %: 157 px on a
# 280x280 canvas, a 7 px brush dot is 38 px) ...
MIN_INK_FRACTION = 0.002
# ... or an ink bounding box whose longest side is under this fraction of the canvas side (12 %:
# 33 px on 280x280, so a click with a brush up to ~30 px wide is "empty"; the shortest real
# digit stroke, a '1', spans far more than that).
MIN_EXTENT_FRACTION = 0.12
# More ink than this fraction of the canvas is "saturated": valid but not a digit a net was
# trained on (e.g. the whole canvas painted white).
SATURATED_FRACTION = 0.5

DIGIT_BOX = 20  # MNIST digits are scaled to fit 20x20 ...
FIELD = 28  # ... and placed in a 28x28 field
COM_TARGET = 14.0  # ... with their center of mass at pixel index 14 (measured on MNIST: 13.99/14.01)


@dataclass
class Preprocessed:
    """A canvas turned into an MNIST-like digit."""

    image: np.ndarray  # [28, 28] float32 in [0, 1], for display
    tensor: torch.Tensor  # [1, 1, 28, 28] float32, normalized, the model input
    empty: bool  # too little ink to be a digit: do not predict
    ink_pixels: int  # canvas pixels above INK_THRESHOLD
    bbox: tuple[int, int, int, int] | None  # (top, left, bottom, right) on the canvas, exclusive
    saturated: bool = False  # more than SATURATED_FRACTION of the canvas is ink


def canvas_to_gray(canvas: np.ndarray) -> np.ndarray:
    """Ink intensity in [0, 1] of an RGBA / RGB / grayscale canvas, composited over black."""
    a = np.asarray(canvas)
    scale = 255.0 if a.dtype == np.uint8 or a.max(initial=0) > 1.0 else 1.0
    a = a.astype(np.float32) / scale
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim == 2:
        return np.clip(a, 0.0, 1.0)
    if a.ndim != 3 or a.shape[2] not in (3, 4):
        raise LabError(f"canvas must be HxW, HxWx3 or HxWx4; got shape {a.shape}")
    gray = 0.299 * a[:, :, 0] + 0.587 * a[:, :, 1] + 0.114 * a[:, :, 2]
    if a.shape[2] == 4:
        # The canvas returns transparent background (alpha 0) and straight (not premultiplied)
        # RGB, so an antialiased white edge is RGB 255 with partial alpha: weight by alpha.
        gray = gray * a[:, :, 3]
    return np.clip(gray, 0.0, 1.0)


def _fit_box(crop: np.ndarray, box: int = DIGIT_BOX) -> np.ndarray:
    """Scale a crop so its longer side is `box` pixels, keeping aspect ratio (antialiased)."""
    h, w = crop.shape
    s = box / max(h, w)
    nh, nw = max(1, round(h * s)), max(1, round(w * s))
    t = torch.from_numpy(np.ascontiguousarray(crop))[None, None]
    out = F.interpolate(t, size=(nh, nw), mode="bilinear", align_corners=False, antialias=True)
    return out[0, 0].clamp_(0.0, 1.0).numpy()


def _center_of_mass(img: np.ndarray) -> tuple[float, float]:
    total = float(img.sum())
    if total <= 0:
        return (img.shape[0] - 1) / 2, (img.shape[1] - 1) / 2
    ys = np.arange(img.shape[0], dtype=np.float64)
    xs = np.arange(img.shape[1], dtype=np.float64)
    return float(img.sum(1) @ ys) / total, float(img.sum(0) @ xs) / total


def _paste_centered(patch: np.ndarray, size: int = FIELD, target: float = COM_TARGET) -> np.ndarray:
    """Place `patch` in a size x size field so its center of mass lands on `target` (clipped)."""
    cy, cx = _center_of_mass(patch)
    top, left = int(round(target - cy)), int(round(target - cx))
    out = np.zeros((size, size), np.float32)
    h, w = patch.shape
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(top + h, size), min(left + w, size)
    if y1 > y0 and x1 > x0:
        out[y0:y1, x0:x1] = patch[y0 - top : y1 - top, x0 - left : x1 - left]
    return out


def normalize(img28: np.ndarray) -> torch.Tensor:
    """A [28, 28] (or [B, 28, 28]) image in [0, 1] as a normalized [B, 1, 28, 28] model input."""
    t = torch.as_tensor(np.asarray(img28, dtype=np.float32))
    t = t.reshape(-1, 1, FIELD, FIELD)
    return (t - MEAN) / STD


def preprocess(canvas: np.ndarray) -> Preprocessed:
    """Canvas pixels -> MNIST-like digit: crop ink, fit 20x20, center of mass at (14, 14), normalize."""
    gray = canvas_to_gray(canvas)
    mask = gray > INK_THRESHOLD
    ink = int(mask.sum())
    if ink == 0:
        return _blank(0, None)
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    bbox = (int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1)
    extent = max(bbox[2] - bbox[0], bbox[3] - bbox[1])
    area, side = gray.shape[0] * gray.shape[1], min(gray.shape)
    if ink < MIN_INK_FRACTION * area or extent < MIN_EXTENT_FRACTION * side:
        return _blank(ink, bbox)
    crop = np.where(mask, gray, 0.0).astype(np.float32)[bbox[0] : bbox[2], bbox[1] : bbox[3]]
    img = _paste_centered(_fit_box(crop))
    return Preprocessed(
        image=img,
        tensor=normalize(img),
        empty=False,
        ink_pixels=ink,
        bbox=bbox,
        saturated=ink > SATURATED_FRACTION * area,
    )


def _blank(ink: int, bbox: tuple[int, int, int, int] | None) -> Preprocessed:
    img = np.zeros((FIELD, FIELD), np.float32)
    return Preprocessed(img, normalize(img), True, ink, bbox)
