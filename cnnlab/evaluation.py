"""Evaluation of a model on uint8 images: mean loss, accuracy, predictions (with shift TTA) and confusion."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import data as D
from .tta import tta_probs


@torch.inference_mode()
def evaluate(model: nn.Module, x_u8: torch.Tensor, y: torch.Tensor, device: torch.device,
             batch: int = 1000, channels_last: bool = False, tta_shift: int = 0) -> tuple[float, float, torch.Tensor]:
    """Mean loss, accuracy and predictions of `model` on uint8 images; restores the model's mode.

    tta_shift > 0: each image is predicted by the mean softmax over it and its 4 shifted copies (cnnlab.tta).
    """
    was_training = model.training
    model.eval()
    total_loss, preds = 0.0, []
    try:
        for s in range(0, len(x_u8), batch):
            yb = y[s : s + batch].to(device)
            if tta_shift:
                p = tta_probs(model, x_u8[s : s + batch], tta_shift, device, batch, channels_last).to(device)
                total_loss += F.nll_loss(p.clamp_min(1e-12).log(), yb, reduction="sum").item()
                preds.append(p.argmax(1).cpu())
                continue
            xb = D.to_float(x_u8[s : s + batch]).to(device)
            if channels_last:
                xb = xb.contiguous(memory_format=torch.channels_last)
            out = model(xb).float()
            total_loss += F.cross_entropy(out, yb, reduction="sum").item()
            preds.append(out.argmax(1).cpu())
    finally:
        model.train(was_training)
    p = torch.cat(preds) if preds else torch.empty(0, dtype=torch.long)
    acc = (p == y).float().mean().item() if len(y) else float("nan")
    return total_loss / max(1, len(y)), acc, p


def confusion_matrix(preds: torch.Tensor, y: torch.Tensor, n: int = 10) -> torch.Tensor:
    """n x n counts, rows = true class, columns = predicted class."""
    return torch.bincount(y * n + preds, minlength=n * n).reshape(n, n)
