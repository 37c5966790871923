"""Probes of a model: class probabilities and every conv layer's feature maps, in one forward pass.

Each call holds the model's own lock and puts it in eval mode (`eval_mode`), restoring every module's
`training` flag afterwards: sessions sharing one cached model never see each other's hooks.
"""

from __future__ import annotations

import contextlib
import threading
import time
import weakref
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np
import torch
from torch import nn

from ..errors import LabError
from .preprocessing import FIELD, INK_THRESHOLD, Preprocessed, normalize, preprocess


@dataclass
class Prediction:
    """Class probabilities of one image."""

    probs: np.ndarray  # [10] float, sums to 1
    top: int
    confidence: float  # probs[top]


@dataclass
class LayerMaps:
    """Activations of one Conv2d for one image."""

    name: str  # module path of the conv, e.g. "0_conv" or "3_inception.b3.1"
    maps: np.ndarray  # [C, H, W] float32
    stage: str  # "relu": output of the activation that follows the conv; "conv": raw conv output


@dataclass
class Analysis:
    """Everything the Draw page shows after a stroke (saliency is computed on demand)."""

    pre: Preprocessed
    prediction: Prediction | None  # None when the canvas is empty
    layers: list[LayerMaps]  # [] when the canvas is empty
    timing_ms: dict[str, float] = field(default_factory=dict)  # preprocess, forward, total


_LOCKS: "weakref.WeakKeyDictionary[nn.Module, threading.RLock]" = weakref.WeakKeyDictionary()
_LOCKS_GUARD = threading.Lock()


def _model_lock(model: nn.Module) -> threading.RLock:
    # Hooks and mode flags live on the shared module: two threads probing one model at once
    # would record each other's activations. Calls take milliseconds, so serializing is cheap.
    with _LOCKS_GUARD:
        lock = _LOCKS.get(model)
        if lock is None:
            lock = _LOCKS[model] = threading.RLock()
        return lock


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Hold the model's lock, put every module in eval mode, then restore each module's own flag."""
    with _model_lock(model):
        flags = [(m, m.training) for m in model.modules()]
        model.eval()
        try:
            yield model
        finally:
            for m, was_training in flags:
                m.training = was_training


def _device_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    for p in model.parameters():
        return p.device, p.dtype
    return torch.device("cpu"), torch.float32


def as_input(model: nn.Module, x: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Model input on the model's device: numpy images are normalized, tensors taken as is."""
    t = normalize(x) if isinstance(x, np.ndarray) else x.reshape(-1, 1, FIELD, FIELD)
    device, dtype = _device_dtype(model)
    return t.to(device=device, dtype=dtype)


def softmax_probs(output: torch.Tensor) -> np.ndarray:
    """[B, 10] probabilities of a model output (logits or log-probabilities alike)."""
    return torch.softmax(output.float(), dim=1).cpu().numpy()


def _prediction(probs: np.ndarray) -> Prediction:
    top = int(np.argmax(probs))
    return Prediction(probs=probs, top=top, confidence=float(probs[top]))


def predict_probs(model: nn.Module, x: torch.Tensor | np.ndarray, batch: int = 1000) -> np.ndarray:
    """[B, 10] class probabilities of a batch (eval mode, no autograd)."""
    t = as_input(model, x)
    with eval_mode(model), torch.inference_mode():
        parts = [softmax_probs(model(t[i : i + batch])) for i in range(0, len(t), batch)]
    return np.concatenate(parts) if parts else np.zeros((0, 10), np.float32)


def predict(model: nn.Module, x: torch.Tensor | np.ndarray) -> Prediction:
    """Probabilities, top class and its probability for one image."""
    return _prediction(predict_probs(model, x)[0])


def conv_layers(model: nn.Module) -> list[tuple[str, nn.Conv2d]]:
    """Every Conv2d with its module path, in registration order (forward order for nn.Sequential)."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]


_ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Mish, nn.PReLU)
_PASS_THROUGH = (nn.BatchNorm2d, nn.Identity, nn.Dropout, nn.Dropout2d)


def _post_activations(model: nn.Module) -> dict[str, nn.Module]:
    """Conv path -> the activation that follows it in the same nn.Sequential (past BN/dropout)."""
    found: dict[str, nn.Module] = {}
    for prefix, parent in model.named_modules():
        if not isinstance(parent, nn.Sequential):
            continue
        children = list(parent.named_children())
        for i, (name, child) in enumerate(children):
            if not isinstance(child, nn.Conv2d):
                continue
            for _, nxt in children[i + 1 :]:
                if isinstance(nxt, _ACTIVATIONS):
                    found[f"{prefix}.{name}" if prefix else name] = nxt
                if not isinstance(nxt, _PASS_THROUGH):
                    break
    return found


def _forward_with_maps(model: nn.Module, t: torch.Tensor) -> tuple[torch.Tensor, list[LayerMaps]]:
    """One forward pass that also records every conv's activations; hooks are always removed."""
    convs = conv_layers(model)
    post = _post_activations(model)
    order: list[str] = []
    store: dict[str, tuple[torch.Tensor, str]] = {}

    def on_conv(name: str):
        def hook(_m, _inp, out):
            if name not in store:  # a conv called twice (weight sharing) keeps its first call
                order.append(name)
                store[name] = (out[0].detach().clone(), "conv")  # clone: an inplace ReLU follows

        return hook

    def on_act(name: str):
        def hook(_m, _inp, out):
            if name in store and store[name][1] == "conv":
                store[name] = (out[0].detach().clone(), "relu")

        return hook

    with eval_mode(model), torch.inference_mode():
        handles = [m.register_forward_hook(on_conv(n)) for n, m in convs]
        handles += [post[n].register_forward_hook(on_act(n)) for n, _ in convs if n in post]
        try:
            out = model(t[:1])
        finally:
            for h in handles:
                h.remove()
    layers = [LayerMaps(n, store[n][0].float().cpu().numpy(), store[n][1]) for n in order]
    return out, layers


def first_layer_filters(model: nn.Module) -> np.ndarray:
    """Weights [out, in, k, k] of the first Conv2d."""
    convs = conv_layers(model)
    if not convs:
        raise LabError("this model has no convolution layer, so there are no filters to show")
    return convs[0][1].weight.detach().float().cpu().numpy().copy()


def analyze(model: nn.Module, canvas: np.ndarray) -> Analysis:
    """Preprocess a canvas, then predict and record feature maps in a single forward pass."""
    t0 = time.perf_counter()
    return _analyze_preprocessed(model, preprocess(canvas), t0)


def _analyze_preprocessed(model: nn.Module, pre: Preprocessed, t0: float) -> Analysis:
    """Predict and record feature maps for a preprocessed input (none when it is empty), with timings."""
    t1 = time.perf_counter()
    prediction, layers = None, []
    if not pre.empty:
        out, layers = _forward_with_maps(model, as_input(model, pre.tensor))
        prediction = _prediction(softmax_probs(out)[0])
    t2 = time.perf_counter()
    timing = {"preprocess": (t1 - t0) * 1e3, "forward": (t2 - t1) * 1e3, "total": (t2 - t0) * 1e3}
    return Analysis(pre, prediction, layers, timing)


def analyze_image(model: nn.Module, img28: np.ndarray) -> Analysis:
    """Like `analyze`, for an image that is already MNIST-shaped (a test-set digit): no cropping."""
    t0 = time.perf_counter()
    img = np.clip(np.asarray(img28, dtype=np.float32).reshape(FIELD, FIELD), 0.0, 1.0)
    ink = int((img > INK_THRESHOLD).sum())
    pre = Preprocessed(image=img, tensor=normalize(img), empty=ink == 0, ink_pixels=ink, bbox=None)
    return _analyze_preprocessed(model, pre, t0)
