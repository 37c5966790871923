"""Inference for the Draw page: canvas preprocessing, prediction, feature maps, saliency, robustness.

Conventions used throughout:
- a numpy array is a *display image*: 28x28 float in [0, 1], white ink on black (MNIST before
  normalization);
- a torch tensor is a *model input*: normalized with MNIST_MEAN/MNIST_STD, shape [B, 1, 28, 28]
  (a [28, 28] or [1, 28, 28] tensor is accepted and given the missing dims).
Models map that input to 10 logits or log-probabilities; `softmax(output)` is the probability
either way. Every function predicts in eval mode and restores each module's own `training` flag
afterwards, so do not hand in a model another thread is training (use a weights copy). Calls on
the same model are serialized by a per-model lock, so Streamlit sessions sharing one cached model
cannot see each other's hooks or mode switches.
"""

from __future__ import annotations

import contextlib
import threading
import time
import weakref
from dataclasses import dataclass, field
from typing import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.data import MEAN, STD
from cnnlab.errors import LabError
from cnnlab.settings import limit_threads  # noqa: F401  (the pages call inference.limit_threads)

MNIST_MEAN, MNIST_STD = MEAN, STD  # the lab's one input normalization (cnnlab.data)

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


# ---------------------------------------------------------------------------------------------
# Results


@dataclass
class Preprocessed:
    """A canvas turned into an MNIST-like digit."""

    image: np.ndarray  # [28, 28] float32 in [0, 1], for display
    tensor: torch.Tensor  # [1, 1, 28, 28] float32, normalized, the model input
    empty: bool  # too little ink to be a digit: do not predict
    ink_pixels: int  # canvas pixels above INK_THRESHOLD
    bbox: tuple[int, int, int, int] | None  # (top, left, bottom, right) on the canvas, exclusive
    saturated: bool = False  # more than SATURATED_FRACTION of the canvas is ink


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


@dataclass
class Sweep:
    """Class probabilities along one perturbation parameter."""

    param: str  # "rotate_deg" | "shift_x" | "shift_y" | "thickness"
    values: np.ndarray  # [n]
    probs: np.ndarray  # [n, 10]


# ---------------------------------------------------------------------------------------------
# Canvas preprocessing


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
    return (t - MNIST_MEAN) / MNIST_STD


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


# ---------------------------------------------------------------------------------------------
# Model plumbing


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


def _probs(output: torch.Tensor) -> np.ndarray:
    return torch.softmax(output.float(), dim=1).cpu().numpy()


def _prediction(probs: np.ndarray) -> Prediction:
    top = int(np.argmax(probs))
    return Prediction(probs=probs, top=top, confidence=float(probs[top]))


def predict_probs(model: nn.Module, x: torch.Tensor | np.ndarray, batch: int = 1000) -> np.ndarray:
    """[B, 10] class probabilities of a batch (eval mode, no autograd)."""
    t = as_input(model, x)
    with eval_mode(model), torch.inference_mode():
        parts = [_probs(model(t[i : i + batch])) for i in range(0, len(t), batch)]
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


def feature_maps(model: nn.Module, x: torch.Tensor | np.ndarray) -> list[LayerMaps]:
    """Activations of every Conv2d for one image, in forward order.

    For a conv followed (in the same nn.Sequential, past BatchNorm/Dropout) by an activation such
    as ReLU, the maps are that activation's output (`stage="relu"`); otherwise, e.g. inside a custom
    block that calls F.relu itself, they are the raw conv output (`stage="conv"`).
    """
    return _forward_with_maps(model, as_input(model, x))[1]


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
        prediction = _prediction(_probs(out)[0])
    t2 = time.perf_counter()
    timing = {"preprocess": (t1 - t0) * 1e3, "forward": (t2 - t1) * 1e3, "total": (t2 - t0) * 1e3}
    return Analysis(pre, prediction, layers, timing)


# ---------------------------------------------------------------------------------------------
# Attribution (captum)


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
            baseline = torch.full_like(t, -MNIST_MEAN / MNIST_STD)
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


# ---------------------------------------------------------------------------------------------
# Robustness probe

SWEEP_DEFAULTS: dict[str, np.ndarray] = {
    "rotate_deg": np.linspace(-45, 45, 19),
    "shift_x": np.arange(-6, 7, dtype=np.float64),
    "shift_y": np.arange(-6, 7, dtype=np.float64),
    "thickness": np.linspace(-2, 2, 17),
}


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


# ---------------------------------------------------------------------------------------------
# Test-set helpers


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
        t = (imgs - MNIST_MEAN) / MNIST_STD
        preds = torch.from_numpy(predict_probs(model, t, batch)).argmax(1)
        wrong = torch.nonzero(preds != labels[i : i + batch]).flatten().numpy() + i
        found.append(wrong[: limit - count])
        count += len(found[-1])
        if count >= limit:
            break
    return np.concatenate(found).astype(np.int64) if found else np.zeros(0, np.int64)


# ---------------------------------------------------------------------------------------------
# Page helpers


def analyze_image(model: nn.Module, img28: np.ndarray) -> Analysis:
    """Like `analyze`, for an image that is already MNIST-shaped (a test-set digit): no cropping."""
    t0 = time.perf_counter()
    img = np.clip(np.asarray(img28, dtype=np.float32).reshape(FIELD, FIELD), 0.0, 1.0)
    ink = int((img > INK_THRESHOLD).sum())
    pre = Preprocessed(image=img, tensor=normalize(img), empty=ink == 0, ink_pixels=ink, bbox=None)
    return _analyze_preprocessed(model, pre, t0)
