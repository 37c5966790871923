"""The test set as a 2-D map: the model's penultimate features projected by PCA.

Features are what the model's last weighted layer (the classifier) receives, flattened per image.
The projection is PCA (numpy SVD of the centered features, top two components), chosen over t-SNE and
UMAP because:
- it places a new point exactly where the test images would be placed (a linear map: subtract the
  mean, multiply by the components), which the Draw page needs for the drawing's star; t-SNE has no
  such map at all, and UMAP's `transform` only approximates its own embedding;
- it takes ~10 ms for 2,000 points on one core and needs no new dependency (umap-learn would bring
  numba, whose JIT compile alone takes tens of seconds on a 2-core box);
- it is deterministic (component signs fixed), so the same model always draws the same map.
The price: PCA keeps only the two directions of largest variance, so classes overlap more than in a
t-SNE picture; for a trained classifier those directions already separate most digits.

Maps are cached per model (the caller's key: run, weights file and its mtime), computed in batches
with a progress callback.
"""

from __future__ import annotations

from cnnlab.selection import selection_points

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from .errors import LabError

MAP_POINTS = 2000  # test images on the map (the first N: MNIST's test set is not ordered by class)
BATCH = 250
CACHE_MAPS = 8

_cache: "OrderedDict[Any, TestMap]" = OrderedDict()
_lock = threading.Lock()


@dataclass
class TestMap:
    """2-D coordinates of test images, with labels and predictions, and the projection that made them."""

    __test__ = False  # not a pytest class

    indices: np.ndarray  # test indices [N]
    xy: np.ndarray  # [N, 2]
    labels: np.ndarray  # [N]
    preds: np.ndarray  # [N]
    confidence: np.ndarray  # [N]
    mean: np.ndarray  # [F] feature mean
    components: np.ndarray  # [F, 2]
    explained: tuple[float, float]  # fraction of the feature variance along each axis
    layer: str  # the layer whose input the features are
    art: list[str] | None = None  # hover pictures of the digits (filled by the page, once)

    @property
    def mistakes(self) -> np.ndarray:
        """Positions (into this map's arrays) of the wrongly predicted images."""
        return np.nonzero(self.preds != self.labels)[0]

    def project(self, features: np.ndarray) -> np.ndarray:
        """Place new feature vectors [k, F] on this map: [k, 2]."""
        return (np.asarray(features, np.float64).reshape(len(features), -1) - self.mean) @ self.components


def classifier_layer(model: nn.Module) -> tuple[str, nn.Module]:
    """(name, module) of the last Conv2d/Linear: its input is the penultimate representation."""
    last = None
    for name, m in model.named_modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            last = (name, m)
    if last is None:
        raise LabError("this model has no linear or convolution layer to take features from")
    return last


def features(model: nn.Module, x: torch.Tensor | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(penultimate features [B, F], class probabilities [B, 10]) of a batch of model inputs."""
    from .inference.probes import as_input, eval_mode, softmax_probs

    _, layer = classifier_layer(model)
    got: list[torch.Tensor] = []
    handle = layer.register_forward_pre_hook(lambda _m, inp: got.append(inp[0].detach().flatten(1).float()))
    try:
        t = as_input(model, x)
        with eval_mode(model), torch.inference_mode():
            probs = softmax_probs(model(t))
    finally:
        handle.remove()
    return got[0].cpu().numpy(), probs


def pca2(feats: np.ndarray) -> tuple[np.ndarray, np.ndarray, tuple[float, float]]:
    """(mean [F], components [F, 2], explained variance fractions) of features [N, F]."""
    f = np.asarray(feats, np.float64)
    mean = f.mean(0)
    centered = f - mean
    _, s, vt = np.linalg.svd(centered, full_matrices=False)
    comps = vt[:2].T.copy()
    if comps.shape[1] < 2:  # a 1-feature layer: a flat second axis
        comps = np.concatenate([comps, np.zeros((len(mean), 2 - comps.shape[1]))], 1)
    for j in range(2):  # deterministic sign: the largest loading is positive
        k = int(np.argmax(np.abs(comps[:, j])))
        if comps[k, j] < 0:
            comps[:, j] *= -1
    var = s**2
    total = float(var.sum()) or 1.0
    ex = [float(v / total) for v in var[:2]] + [0.0, 0.0]
    return mean, comps, (ex[0], ex[1])


def build_map(model: nn.Module, x_u8: torch.Tensor, y: torch.Tensor, n: int = MAP_POINTS,
              progress: Callable[[float], None] | None = None) -> TestMap:
    """The map of the first `n` test images (uint8 [N, 28, 28] and labels) under `model`."""
    from .data import to_float

    n = min(n, len(x_u8))
    feats, probs = [], []
    for s in range(0, n, BATCH):
        f, p = features(model, to_float(x_u8[s : min(n, s + BATCH)]))
        feats.append(f)
        probs.append(p)
        if progress is not None:
            progress(min(n, s + BATCH) / n)
    f = np.concatenate(feats)
    p = np.concatenate(probs)
    mean, comps, ex = pca2(f)
    preds = p.argmax(1)
    return TestMap(np.arange(n), (f - mean) @ comps, y[:n].numpy().astype(np.int64), preds,
                   p[np.arange(n), preds], mean, comps, ex, classifier_layer(model)[0])


def cached_map(key: Any, model: nn.Module, x_u8: torch.Tensor, y: torch.Tensor, n: int = MAP_POINTS,
               progress: Callable[[float], None] | None = None) -> TestMap:
    """build_map, once per `key` (e.g. run id, weights file, mtime); later calls return the same map."""
    with _lock:
        if (key, n) in _cache:
            _cache.move_to_end((key, n))
            return _cache[(key, n)]
    m = build_map(model, x_u8, y, n, progress)
    with _lock:
        _cache[(key, n)] = m
        while len(_cache) > CACHE_MAPS:
            _cache.popitem(last=False)
    return m


def is_cached(key: Any, n: int = MAP_POINTS) -> bool:
    with _lock:
        return (key, n) in _cache


def place(tmap: TestMap, model: nn.Module, x: torch.Tensor | np.ndarray) -> np.ndarray:
    """Where one input (a 28x28 image in [0, 1] or a normalized tensor) lands on the map: [2]."""
    f, _ = features(model, x)
    return tmap.project(f)[0]


def point_from_selection(selection: Any) -> int | None:
    """The test index of the clicked map point (its customdata[0]) from a st.plotly_chart selection."""
    for p in selection_points(selection):
        try:
            cd = p["customdata"]
            if isinstance(cd, dict):  # a row of a 2-D customdata array arrives as {"0": .., "1": ..}
                cd = cd.get("0", cd.get(0))
            return int(cd[0] if isinstance(cd, (list, tuple)) else cd)
        except (KeyError, TypeError, ValueError, IndexError):
            continue
    return None


def ascii_digits(imgs: np.ndarray) -> list[str]:
    """Images [k, 28, 28] in [0, 1] as 7 lines of 14 block characters each (2x2 pixels per half block):
    how the map's hover shows a digit (plotly hover labels cannot hold images)."""
    a = np.asarray(imgs, np.float32).reshape(-1, 14, 2, 14, 2).mean((2, 4)) > 0.35  # [k, 14, 14] ink
    codes = a[:, 0::2].astype(np.int8) + 2 * a[:, 1::2].astype(np.int8)  # [k, 7, 14]: top + 2 * bottom
    chars = np.array(list("░▀▄█"))[codes]
    return ["<br>".join("".join(row) for row in img) for img in chars]


def ascii_digit(img: np.ndarray) -> str:
    """One 28x28 image as block characters (see ascii_digits)."""
    return ascii_digits(np.asarray(img)[None])[0]
