"""Shift test-time augmentation (TTA): a test image is predicted as the mean softmax of the model over the
image and its copies shifted a few pixels up, down, left and right (black fill).

A recipe's `tta_shift` (pixels, 0 = plain evaluation) is applied wherever the run's test accuracy is
computed: the Trainer's final test evaluation (evaluation.evaluate) and Compare's evaluation of saved weights.
Validation during training stays plain (one forward pass an image).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from . import data as D


def shift_offsets(shift: int) -> list[tuple[int, int]]:
    """(dx, dy) of every view: the image itself, then shifted `shift` px right, left, down and up."""
    if shift <= 0:
        return [(0, 0)]
    return [(0, 0), (shift, 0), (-shift, 0), (0, shift), (0, -shift)]


def shift_images(x: torch.Tensor, dx: int, dy: int) -> torch.Tensor:
    """Images [..., H, W] moved dx px right and dy px down; pixels moved in from outside are 0 (black)."""
    h, w = x.shape[-2:]
    out = torch.zeros_like(x)
    if abs(dx) >= w or abs(dy) >= h:
        return out
    out[..., max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
        x[..., max(-dy, 0):h - max(dy, 0), max(-dx, 0):w - max(dx, 0)]
    return out


@torch.inference_mode()
def tta_probs(model: nn.Module, x_u8: torch.Tensor, shift: int, device: torch.device | str = "cpu",
              batch: int = 1000, channels_last: bool = False) -> torch.Tensor:
    """[N, 10] class probabilities (CPU float): the mean softmax over shift_offsets(shift) views.

    `x_u8`: uint8 images [N, 28, 28]. The caller puts the model in eval mode. shift 0 is the plain
    softmax of the model's output.
    """
    views = shift_offsets(shift)
    parts = []
    for s in range(0, len(x_u8), batch):
        chunk = x_u8[s : s + batch]
        acc = None
        for dx, dy in views:
            xb = D.to_float(shift_images(chunk, dx, dy)).to(device)
            if channels_last:
                xb = xb.contiguous(memory_format=torch.channels_last)
            p = torch.softmax(model(xb).float(), dim=1)
            acc = p if acc is None else acc.add_(p)
        parts.append(acc.div_(len(views)).cpu())
    return torch.cat(parts) if parts else torch.zeros((0, 10))


def recipe_shift(recipe: object) -> int:
    """A saved run's `tta_shift` (0 when its recipe predates the field); a bad value raises ConfigError."""
    from .fields import check

    v = recipe.get("tta_shift", 0) if isinstance(recipe, dict) else 0
    check("tta_shift", v)
    return v
