"""How the weights are updated: the optimizer a recipe names and its learning-rate schedule."""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from .recipe import TrainConfig


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """The recipe's optimizer over the model's trainable parameters (beta1 = momentum for Adam/AdamW)."""
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov,
                               weight_decay=cfg.weight_decay)
    cls = torch.optim.Adam if cfg.optimizer == "adam" else torch.optim.AdamW
    return cls(params, lr=cfg.lr, betas=(cfg.momentum, 0.999), weight_decay=cfg.weight_decay)


def schedule_factor(cfg: TrainConfig, step: int, epoch: int, total_steps: int) -> float:
    """LR multiplier of the schedule at a global step (0-based) in an epoch (0-based).

    Matches torch's StepLR (per epoch), OneCycleLR (cosine, div 25, final div 1e4, per step) and
    CosineAnnealingLR over all steps (eta_min 0).
    """
    if cfg.scheduler == "step":
        return cfg.gamma ** (epoch // cfg.step_size)
    if cfg.scheduler == "cosine":
        return 0.5 * (1 + math.cos(math.pi * min(step, total_steps) / max(1, total_steps)))
    if cfg.scheduler == "onecycle":
        initial, final = 1 / 25.0, 1 / 25.0 / 1e4
        up = float(cfg.pct_start * total_steps) - 1
        down = float(total_steps - 1)
        if step <= up:
            pct = step / up if up > 0 else 1.0
            return final_cos(initial, 1.0, pct)
        pct = (step - up) / (down - up) if down > up else 1.0
        return final_cos(1.0, final, min(1.0, pct))
    return 1.0


def stretched_step(step: int, anchor: tuple[float, float], total_steps: int) -> float:
    """The step at which to read a schedule whose length was changed live (`epochs`).

    **Live epochs policy**: a new number of epochs re-stretches what is left of a one-cycle or cosine
    schedule over the new total, from the step it is applied on. The schedule's progress at that step
    (`anchor = (step, progress)`, progress in 0..1) is kept, so the LR does not jump, and the schedule
    reaches its end (one-cycle's final LR, cosine's 0) exactly at the new last step. A warm-up still in
    progress stretches with the rest. StepLR keeps its steps (it counts epochs) and "none" is flat.
    Returns a step on the scale of `total_steps` (the original step when nothing was changed).
    """
    a_step, a_prog = anchor
    if a_step == 0 and a_prog == 0:
        return step
    left = total_steps - a_step
    prog = a_prog + (1 - a_prog) * (step - a_step) / left if left > 0 else 1.0
    return min(1.0, prog) * total_steps


def final_cos(start: float, end: float, pct: float) -> float:
    """Cosine interpolation from start to end as pct goes 0 -> 1 (torch's _annealing_cos)."""
    return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)
