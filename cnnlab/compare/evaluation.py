"""A run's predictions on the 10k test images, and the drill-downs of the confusion matrix."""

from __future__ import annotations

from cnnlab.selection import selection_points

import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from ..errors import CheckpointError, LabError
from ..modelsource import LoadedModel, ModelRef, ModelSource
from ..runs import RunStore


@dataclass
class Evaluation:
    """A run's predictions on the 10k test images."""

    run_id: str
    which: str  # "best" | "last"
    epoch: int | None
    labels: np.ndarray  # int64 [N]
    preds: np.ndarray  # int64 [N]
    probs: np.ndarray  # float32 [N, 10]

    @property
    def confidence(self) -> np.ndarray:
        """Probability of the predicted class."""
        return self.probs[np.arange(len(self.preds)), self.preds]

    @property
    def accuracy(self) -> float:
        return float((self.preds == self.labels).mean()) if len(self.labels) else float("nan")

    @property
    def confusion(self) -> np.ndarray:
        """10x10 counts, rows = true class, columns = predicted class."""
        return np.bincount(self.labels * 10 + self.preds, minlength=100).reshape(10, 10)

    @property
    def per_class_acc(self) -> np.ndarray:
        cm = self.confusion
        return np.diag(cm) / np.maximum(cm.sum(1), 1)


def confusion_cell(labels: np.ndarray, preds: np.ndarray, confidence: np.ndarray, true: int, pred: int,
                   limit: int | None = None) -> np.ndarray:
    """Test indices behind cell (true, pred): mistakes most confident first; the diagonal least confident first."""
    labels, preds, confidence = np.asarray(labels), np.asarray(preds), np.asarray(confidence)
    if not (0 <= int(true) <= 9 and 0 <= int(pred) <= 9):
        raise LabError(f"confusion cell ({true}, {pred}) is outside 0..9")
    idx = np.nonzero((labels == int(true)) & (preds == int(pred)))[0]
    order = np.argsort(confidence[idx], kind="stable")
    if true != pred:
        order = order[::-1]
    idx = idx[order]
    return idx[:limit] if limit is not None else idx


def most_confident_mistakes(ev: Evaluation, k: int = 16) -> np.ndarray:
    """Indices of the k wrong predictions with the highest confidence."""
    wrong = np.nonzero(ev.preds != ev.labels)[0]
    order = np.argsort(-ev.confidence[wrong], kind="stable")
    return wrong[order][:k]


def cell_from_selection(selection: Any) -> tuple[int, int] | None:
    """(true, pred) of the clicked confusion cell from a st.plotly_chart selection state, else None."""
    for p in selection_points(selection):
        try:
            x, y = int(round(float(p["x"]))), int(round(float(p["y"])))
        except (KeyError, TypeError, ValueError):
            continue
        if 0 <= x <= 9 and 0 <= y <= 9:
            return y, x  # rows (y) are the true class, columns (x) the prediction
    return None


_eval_cache: "OrderedDict[tuple, Evaluation]" = OrderedDict()
_eval_lock = threading.Lock()
EVAL_CACHE_SIZE = 6


def _ckpt_key(path: Path) -> tuple[int, int]:
    try:
        st = path.stat()
    except FileNotFoundError:
        raise CheckpointError(f"no {path.name} in run '{path.parent.name}'") from None
    return st.st_mtime_ns, st.st_size


def available_checkpoints(store: RunStore, run_id: str) -> list[str]:
    """Which weights files a run has, best first."""
    handle = store.get(run_id)
    return [w for w in ("best", "last") if handle.has_checkpoint(w)]


def evaluate_run(store: RunStore, run_id: str, which: str = "best", mnist: Any = None,
                 source: ModelSource | None = None) -> Evaluation:
    """Predict the test set with a run's best/last weights, loaded the way the Draw page loads them
    (`modelsource`, weights_only); cached per (run, file, mtime, size)."""
    handle = store.get(run_id)
    path = handle.path / f"{which}.pt"
    key = (str(handle.path), which, *_ckpt_key(path))
    with _eval_lock:
        if key in _eval_cache:
            _eval_cache.move_to_end(key)
            return _eval_cache[key]
    loaded = (source if source is not None else ModelSource(store)).load(ModelRef(run_id, which))
    ev = _evaluate(loaded, handle.config.get("recipe"), mnist)
    with _eval_lock:
        _eval_cache[key] = ev
        while len(_eval_cache) > EVAL_CACHE_SIZE:
            _eval_cache.popitem(last=False)
    return ev


def _evaluate(loaded: LoadedModel, recipe: Any, mnist: Any) -> Evaluation:
    from .. import data as D
    from ..tta import recipe_shift, tta_probs

    mnist = mnist if mnist is not None else D.load_mnist()
    # the run's own test-time augmentation, so this matches the test accuracy its result reports
    probs = tta_probs(loaded.model, mnist.test_x, recipe_shift(recipe)).numpy().astype(np.float32)
    if not np.isfinite(probs).all():
        probs = np.nan_to_num(probs, nan=0.1)
    return Evaluation(loaded.ref.run_id, loaded.ref.which, loaded.epoch, mnist.test_y.numpy().astype(np.int64),
                      probs.argmax(1).astype(np.int64), probs)


def test_images(indices: Iterable[int], mnist: Any = None) -> np.ndarray:
    """Test images [k, 28, 28] in [0, 1]."""
    from .. import data as D

    mnist = mnist if mnist is not None else D.load_mnist()
    idx = np.asarray(list(indices), dtype=np.int64)
    if not len(idx):
        return np.zeros((0, 28, 28), np.float32)
    return mnist.test_x[idx].numpy().astype(np.float32) / 255.0


test_images.__test__ = False  # type: ignore[attr-defined]  # not a pytest test


def checkpoint_bytes(store: RunStore, run_id: str, which: str) -> bytes:
    """The raw best.pt / last.pt of a run, for a download."""
    path = store.get(run_id).path / f"{which}.pt"
    if not path.is_file() or path.is_symlink():
        raise CheckpointError(f"no {which}.pt in run '{run_id}'")
    return path.read_bytes()


def worst_cell(confusion: np.ndarray) -> tuple[int, int]:
    """(true, pred) of the largest off-diagonal count; (0, 0) if there are no mistakes."""
    off = np.array(confusion, dtype=float)
    np.fill_diagonal(off, -1)
    t, p = np.unravel_index(int(np.argmax(off)), off.shape)
    return (int(t), int(p)) if off[t, p] > 0 else (0, 0)


def cell_table(ev: Evaluation, indices: Iterable[int]) -> list[dict]:
    """Rows (test index, true, predicted, confidence, probability of the true class) for a drill-down."""
    return [{"test index": int(i), "true": int(ev.labels[i]), "predicted": int(ev.preds[i]),
             "confidence": round(float(ev.confidence[i]), 4),
             "p(true)": round(float(ev.probs[i, ev.labels[i]]), 4)} for i in indices]
