"""Attribution (captum): which input pixels a class's log-probability depends on, as a [28, 28] map in [0, 1]."""

from __future__ import annotations

import contextlib
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data import MEAN, STD
from ..errors import LabError
from .preprocessing import FIELD
from .probes import as_input, conv_layers, eval_mode, predict


def _log_probs_of(model: nn.Module):
    # log_softmax is idempotent on log-probabilities, so logit and LogSoftmax models both yield
    # log p(class); its gradient equals that of p(class) up to a positive factor, without the
    # float32 underflow of a saturated softmax.
    return lambda inp: F.log_softmax(model(inp), dim=1)


def _unit(attr: torch.Tensor) -> np.ndarray:
    a = attr.detach().float().cpu().clamp(min=0).reshape(FIELD, FIELD)
    peak = float(a.max())
    return (a / peak if peak > 0 else a).numpy()


def _target(model: nn.Module, t: torch.Tensor, target: int | None) -> int:
    return int(target) if target is not None else predict(model, t).top


def saliency(
    model: nn.Module,
    x: torch.Tensor | np.ndarray,
    target: int | None = None,
    method: str = "saliency",
    n_steps: int = 32,
) -> np.ndarray:
    """Input attribution for `target` (default: predicted class) as [28, 28] in [0, 1].

    method "saliency": |d log p / d input| (captum Saliency); "integrated_gradients": the positive
    part of captum IntegratedGradients from a blank (black) image.
    """
    from captum.attr import IntegratedGradients, Saliency

    t = as_input(model, x)[:1].detach().clone()
    target = _target(model, t, target)
    t.requires_grad_()  # parameters are frozen below; the input is what we differentiate
    fn = _log_probs_of(model)
    with eval_mode(model), _grads_untouched(model), torch.enable_grad():
        if method == "saliency":
            attr = Saliency(fn).attribute(t, target=target, abs=True)
        elif method == "integrated_gradients":
            baseline = torch.full_like(t, -MEAN / STD)
            attr = IntegratedGradients(fn).attribute(
                t, baselines=baseline, target=target, n_steps=n_steps
            )
        else:
            raise LabError(f"unknown saliency method {method!r}; known: saliency, integrated_gradients")
    return _unit(attr)


def gradcam_layer(model: nn.Module) -> tuple[str, nn.Module]:
    """The layer Grad-CAM explains: the last conv, or the whole top-level block holding it
    (e.g. an inception module, whose branches are concatenated)."""
    convs = conv_layers(model)
    if not convs:
        raise LabError("Grad-CAM needs a convolution layer; this model has none")
    name, conv = convs[-1]
    top = name.split(".")[0]
    if isinstance(model, nn.Sequential) and top != name:
        return top, getattr(model, top)
    return name, conv


def gradcam(
    model: nn.Module,
    x: torch.Tensor | np.ndarray,
    target: int | None = None,
    layer: str | None = None,
) -> np.ndarray:
    """Grad-CAM (captum LayerGradCam) of `layer` (default: `gradcam_layer`), upsampled to
    [28, 28] bilinearly and scaled to [0, 1]."""
    from captum.attr import LayerAttribution, LayerGradCam

    t = as_input(model, x)[:1].detach().clone()
    target = _target(model, t, target)
    t.requires_grad_()  # parameters are frozen below; the input is what we differentiate
    module = gradcam_layer(model)[1] if layer is None else model.get_submodule(layer)
    with eval_mode(model), _grads_untouched(model), torch.enable_grad():
        attr = LayerGradCam(_log_probs_of(model), module).attribute(
            t, target=target, relu_attributions=True
        )
        attr = LayerAttribution.interpolate(attr, (FIELD, FIELD), interpolate_mode="bilinear")
    return _unit(attr)


@contextlib.contextmanager
def _grads_untouched(model: nn.Module) -> Iterator[None]:
    """Freeze parameters for the block (input gradients only), then restore flags and .grad."""
    saved = [(p, p.requires_grad, p.grad) for p in model.parameters()]
    for p, _, _ in saved:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag, grad in saved:
            p.requires_grad_(flag)
            p.grad = grad
