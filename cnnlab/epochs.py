"""One image across a run's epochs: the class probabilities given by the weights saved after each epoch.

Every run saves `epoch_<k>.pt` (weights after epoch k). `EpochModels` loads them lazily, the first time
an epoch is asked for, and keeps the built eval-mode models in a process-wide LRU keyed by the file's
path, mtime and size (a rewritten file reloads). After the first call a new drawing costs one forward
pass per epoch (a few ms for 20 epochs: `benchmarks/bench_draw.py --epochs`).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from .errors import CheckpointError, LabError
from .runs import RunStore

CACHE_MODELS = 64  # built epoch models kept (seed003, the largest preset: 2.4 MB each)

_cache: "OrderedDict[tuple, nn.Module]" = OrderedDict()
_lock = threading.Lock()


@dataclass
class EpochProbs:
    """Rows = saved epochs (ascending), columns = classes 0..9."""

    epochs: list[int]
    probs: np.ndarray  # [E, 10]

    @property
    def top(self) -> np.ndarray:
        return self.probs.argmax(1) if len(self.epochs) else np.zeros(0, np.int64)

    def first_stable(self) -> int | None:
        """The first epoch from which the top class never changes again (None without epochs)."""
        top = self.top
        if not len(top):
            return None
        k = len(top) - 1
        while k > 0 and top[k - 1] == top[-1]:
            k -= 1
        return self.epochs[k]

    def changes(self) -> int:
        """How many times the top class changed from one saved epoch to the next."""
        return int((np.diff(self.top) != 0).sum()) if len(self.epochs) > 1 else 0


def _key(path) -> tuple:
    try:
        st = path.stat()
    except FileNotFoundError:
        raise CheckpointError(f"{path.name} vanished from run '{path.parent.name}'") from None
    return (str(path), st.st_mtime_ns, st.st_size)


def epoch_model(store: RunStore, run_id: str, epoch: int, handle: Any = None) -> nn.Module:
    """The eval-mode model of `run_id` after `epoch` (loaded on first use, then cached)."""
    from .modelsource import build_eval_model

    handle = handle or store.get(run_id)
    path = handle.path / f"epoch_{int(epoch)}.pt"
    key = _key(path)
    with _lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
    ckpt = handle.load_checkpoint(f"epoch_{int(epoch)}")  # weights_only=True inside
    state = ckpt.get("model")
    where = f"epoch_{epoch}.pt of run '{run_id}'"
    if not isinstance(state, dict) or not state:
        raise CheckpointError(f"{where} holds no model weights")
    spec = handle.config.get("spec")
    if not isinstance(spec, list):
        raise LabError(f"run '{run_id}' has no layer spec in config.json")
    model = build_eval_model(spec, state, where)
    with _lock:
        _cache[key] = model
        while len(_cache) > CACHE_MODELS:
            _cache.popitem(last=False)
    return model


def saved_epochs(store: RunStore, run_id: str) -> list[int]:
    """Epochs of `run_id` with saved weights."""
    return store.get(run_id).epoch_checkpoints()


def epoch_probs(store: RunStore, run_id: str, x: torch.Tensor | np.ndarray) -> EpochProbs:
    """Class probabilities of one preprocessed image (a normalized [1,1,28,28] tensor or a 28x28
    image in [0, 1]) under every saved epoch of `run_id`."""
    from .inference.probes import predict_probs

    handle = store.get(run_id)
    epochs = handle.epoch_checkpoints()
    rows = []
    for e in epochs:
        model = epoch_model(store, run_id, e, handle)
        rows.append(predict_probs(model, x)[0])
    probs = np.stack(rows).astype(np.float32) if rows else np.zeros((0, 10), np.float32)
    return EpochProbs(epochs, probs)


def cache_clear() -> None:
    with _lock:
        _cache.clear()
