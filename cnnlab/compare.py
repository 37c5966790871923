"""Comparing runs: table rows, config diffs, curve series, and a run's evaluation on the test set.

Pure logic over the run store (no Streamlit). Everything here reads files; nothing writes.
"""

from __future__ import annotations

import json
import math
import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from . import records as R
from .errors import CheckpointError, LabError
from .plots.series import downsample
from .runs import RunInfo, RunStore
from .status import ACTIVE

# ------------------------------------------------------------------ the runs table

TABLE_COLUMNS = ["name", "id", "architecture", "params", "optimizer", "lr", "batch", "epochs", "augmentation",
                 "best val acc", "test acc", "train time (s)", "status", "parent", "created", "tags",
                 "sweep", "problem"]  # the id second: far right, it was out of view at 1024 px


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None


def _aug_text(data: dict) -> str:
    if not isinstance(data, dict) or not data.get("augment"):
        return "off"
    return f"x{_num(data.get('aug_strength')) or 0:g}"


def _created_text(iso: Any) -> str:
    try:
        return datetime.fromisoformat(str(iso)).strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        return str(iso or "")


def run_row(info: RunInfo, names: dict[str, str] | None = None) -> dict:
    """One table row for a run (from its RunInfo: nothing is read here)."""
    recipe = info.recipe if isinstance(info.recipe, dict) else {}
    data = recipe.get("data") if isinstance(recipe.get("data"), dict) else {}
    parent = info.parent if isinstance(info.parent, dict) else None
    parent_text = ""
    if parent:
        pid = str(parent.get("run_id"))
        parent_text = f"{(names or {}).get(pid, pid)} @ epoch {parent.get('epoch')}"
    arch = info.preset or "custom"
    if info.title:
        arch = f"{arch} ({info.title})"
    planned = info.epochs_planned
    done = info.epochs if isinstance(info.epochs, int) else 0
    train_s = _num(info.train_s)
    problem = info.error or (info.message if info.status in ("failed", "diverged", "interrupted") else "")
    return {
        "name": info.name,
        "id": info.id,
        "architecture": arch,
        "params": info.params if isinstance(info.params, int) else None,
        "optimizer": str(recipe.get("optimizer") or ""),
        "lr": _num(recipe.get("lr")),
        "batch": recipe.get("batch_size") if isinstance(recipe.get("batch_size"), int) else None,
        "epochs": f"{done}/{planned}" if planned else str(done),
        "augmentation": _aug_text(data),
        "best val acc": _num(info.best_val_acc),
        "test acc": _num(info.test_acc),
        "train time (s)": round(train_s, 1) if train_s is not None else None,
        "status": info.status,
        "parent": parent_text,
        "created": _created_text(info.created),
        "tags": ", ".join(info.tags),
        "sweep": info.sweep or "",
        "problem": problem or "",
    }


def table_rows(infos: Iterable[RunInfo]) -> list[dict]:
    """Rows for the runs table, in the given order; parents shown by their display name."""
    infos = list(infos)
    names = {i.id: i.name for i in infos}
    return [run_row(i, names) for i in infos]


def filter_rows(rows: list[dict], text: str = "", statuses: Iterable[str] = (), tags: Iterable[str] = (),
                sweeps: Iterable[str] = ()) -> list[dict]:
    """Rows whose name/id/architecture/tags contain `text` (case-insensitive), in `statuses`, with all `tags`,
    trials of one of `sweeps`."""
    needle = (text or "").strip().lower()
    statuses, tags, sweeps = set(statuses or ()), set(tags or ()), set(sweeps or ())
    out = []
    for row in rows:
        hay = " ".join(str(row.get(k) or "") for k in ("name", "id", "architecture", "tags", "optimizer")).lower()
        if needle and needle not in hay:
            continue
        if statuses and row.get("status") not in statuses:
            continue
        row_tags = {t.strip() for t in str(row.get("tags") or "").split(",") if t.strip()}
        if tags and not tags <= row_tags:
            continue
        if sweeps and row.get("sweep") not in sweeps:
            continue
        out.append(row)
    return out


def merge_selection(previous: list[str], view_ids: list[str], selected_rows: Iterable[int]) -> list[str]:
    """New selection after a table click: rows hidden by the filter keep their state, visible ones follow the table."""
    picked = [view_ids[i] for i in selected_rows if 0 <= i < len(view_ids)]
    hidden = [rid for rid in previous if rid not in view_ids]
    kept = [rid for rid in previous if rid in picked]
    return hidden + kept + [rid for rid in picked if rid not in kept]


def is_active(info: RunInfo) -> bool:
    """Whether a run is queued, running or paused (cannot be deleted)."""
    return info.status in ACTIVE


# ------------------------------------------------------------------ config diff

DIFF_IGNORE = ("id", "created")


def flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts/lists as {"recipe.lr": 0.01, "spec.0.type": "conv", ...}."""
    out: dict[str, Any] = {}
    if isinstance(obj, dict):
        items = obj.items() if obj else []
        if not obj and prefix:
            out[prefix] = {}
        for k, v in items:
            out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    elif isinstance(obj, list):
        if not obj and prefix:
            out[prefix] = []
        for i, v in enumerate(obj):
            out.update(flatten(v, f"{prefix}.{i}" if prefix else str(i)))
    else:
        out[prefix] = obj
    return out


_MISSING = "—"


def config_diff(a: dict, b: dict, ignore: Iterable[str] = DIFF_IGNORE) -> list[dict]:
    """Only the fields that differ between two configs: [{"field", "a", "b"}] in a stable order."""
    ignore = set(ignore)
    fa = {k: v for k, v in flatten(a).items() if k.split(".")[0] not in ignore}
    fb = {k: v for k, v in flatten(b).items() if k.split(".")[0] not in ignore}
    keys = list(fa) + [k for k in fb if k not in fa]
    rows = []
    for k in keys:
        va, vb = fa.get(k, _MISSING), fb.get(k, _MISSING)
        if va != vb or isinstance(va, bool) != isinstance(vb, bool):  # True == 1 in Python
            rows.append({"field": k, "a": _show(va), "b": _show(vb)})
    return rows


def _show(v: Any) -> str:
    if isinstance(v, str):
        return v
    return json.dumps(v, default=str)


# ------------------------------------------------------------------ curves

METRICS = {  # label -> (record kind, key)
    "train loss": (("step", "loss"), ("epoch", "train_loss")),
    "validation loss": (("epoch", "val_loss"),),
    "validation accuracy": (("epoch", "val_acc"),),
    "train accuracy": (("step", "acc"), ("epoch", "train_acc")),
    "learning rate": (("step", "lr"), ("epoch", "lr")),
}
XAXES = ("epoch", "step", "time (s)")
MAX_POINTS = 400  # per trace; plotly redraws cost most of a rerun


@dataclass
class Curve:
    """One run's series for one metric, ready to plot."""

    run_id: str
    name: str
    x: list[float]
    y: list[float | None]
    status: str
    fork_x: float | None = None  # where a fork leaves its parent
    markers: list[dict] | None = None  # events: {"x", "y", "text", "event"}


def _steps_per_epoch(info: RunInfo) -> int | None:
    if info.steps_per_epoch:
        return info.steps_per_epoch
    try:
        from .engine import TrainConfig

        return TrainConfig.from_dict(info.recipe).steps_per_epoch()
    except Exception:  # an odd recipe only loses the fractional-epoch axis
        return None


def _finite(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None


def _x_of(rec: dict, xaxis: str, spe: int | None, t_offset: float) -> float | None:
    if xaxis == "step":
        return _finite(rec.get("step"))
    if xaxis == "epoch":
        if rec.get("kind") == "epoch":
            return _finite(rec.get("epoch"))
        step = _finite(rec.get("step"))
        return step / spe if step is not None and spe else None
    t = _finite(rec.get("t"))
    return t + t_offset if t is not None else None


def _pick(records: list[dict], metric: str) -> tuple[str, str, list[dict]]:
    """The first (kind, key) source of `metric` that has data (step-level preferred)."""
    for kind, key in METRICS[metric]:
        recs = [r for r in records if r.get("kind") == kind and key in r]
        if recs:
            return kind, key, recs
    kind, key = METRICS[metric][0]
    return kind, key, []


def _at_step(records: list[dict], step: float, key: str = "t") -> float | None:
    """Interpolate record[key] at a global step from step/epoch records."""
    pts = sorted((r["step"], r[key]) for r in records
                 if _finite(r.get("step")) is not None and _finite(r.get(key)) is not None)
    if not pts:
        return None
    xs, ys = zip(*pts)
    return float(np.interp(step, xs, ys))


def run_curve(store: RunStore, info: RunInfo, metric: str, xaxis: str,
              parent_records: list[dict] | None = None) -> Curve:
    """The curve of one run; a fork starts at its parent's value at the fork point."""
    if metric not in METRICS:
        raise LabError(f"unknown metric {metric!r}; known: {', '.join(METRICS)}")
    if xaxis not in XAXES:
        raise LabError(f"unknown x axis {xaxis!r}; known: {', '.join(XAXES)}")
    reader = R.stored(info.path)
    records, events = reader.metrics(), reader.events()
    spe = _steps_per_epoch(info)
    parent = info.parent if isinstance(info.parent, dict) else None
    t_offset = 0.0
    fork_x = None
    lead: list[tuple[float, float | None]] = []
    if parent and parent_records:
        fork_epoch = _finite(parent.get("epoch"))
        pend = [r for r in parent_records if r.get("kind") == "epoch" and _finite(r.get("epoch")) == fork_epoch]
        if pend:
            fork_step = pend[-1].get("step")
            parent_t = _finite(pend[-1].get("t")) or 0.0
            first_t = next((_finite(r.get("t")) for r in records if _finite(r.get("t")) is not None), None)
            if first_t is not None and first_t < parent_t:  # the fork's clock restarted at zero
                t_offset = parent_t
            # anchor: the parent's value of this metric at the fork point
            kind, key, precs = _pick(parent_records, metric)
            at = [r for r in precs if _finite(r.get("step")) is not None and r["step"] <= fork_step]
            if at:
                anchor = at[-1]
                fork_x = _x_of(anchor, xaxis, spe, 0.0)
                if fork_x is not None:
                    lead = [(fork_x, _finite(anchor.get(key)))]
    kind, key, recs = _pick(records, metric)
    pts = [(_x_of(r, xaxis, spe, t_offset), _finite(r.get(key))) for r in recs]
    pts = lead + [(x, y) for x, y in pts if x is not None]
    # the Train page's downsampler: a divergence spike survives; a non-finite value stays a gap
    dx, dy = downsample([p[0] for p in pts], [p[1] for p in pts], MAX_POINTS, gaps=True)
    x, y = dx.tolist(), [v if math.isfinite(v) else None for v in dy.tolist()]
    markers = _event_markers(events, records, xaxis, spe, t_offset, key, recs)
    return Curve(info.id, info.name, x, y, info.status, fork_x, markers)


def _event_markers(events: list[dict], records: list[dict], xaxis: str, spe: int | None, t_offset: float,
                   key: str, recs: list[dict]) -> list[dict]:
    out = []
    for ev in events:
        name = ev.get("event")
        if name not in ("set", "diverged", "pause", "resume", "stop"):
            continue
        step = _finite(ev.get("step"))
        if step is None:
            continue
        if xaxis == "step":
            x = step
        elif xaxis == "epoch":
            x = step / spe if spe else _finite(ev.get("epoch"))
        else:
            t = _at_step(records, step)
            x = t + t_offset if t is not None else None
        if x is None:
            continue
        y = _at_step(recs, step, key) if recs else None
        if name == "set":
            text = f"{ev.get('field')}: {_fmt(ev.get('old'))} → {_fmt(ev.get('new'))}"
        elif name == "diverged":
            text = f"diverged ({ev.get('value', 'loss not finite')})"
        else:
            text = str(name)
        out.append({"x": x, "y": y, "text": f"{text} @ step {int(step)}", "event": name})
    return out


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def curves(store: RunStore, infos: list[RunInfo], metric: str, xaxis: str) -> list[Curve]:
    """Curves of several runs (parents' records read for forks even when the parent is not selected)."""
    out = []
    for info in infos:
        parent_records = None
        parent = info.parent if isinstance(info.parent, dict) else None
        if parent:
            try:
                parent_records = R.stored(store.run_dir(parent.get("run_id"))).metrics()
            except LabError:
                parent_records = None
        out.append(run_curve(store, info, metric, xaxis, parent_records))
    return out


# ------------------------------------------------------------------ evaluation on the test set


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
    try:
        points = selection["selection"]["points"]
    except (KeyError, TypeError):
        try:
            points = selection.selection.points
        except AttributeError:
            return None
    for p in points or []:
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


def evaluate_run(store: RunStore, run_id: str, which: str = "best", mnist: Any = None) -> Evaluation:
    """Predict the test set with a run's best/last weights; cached per (run, file, mtime, size)."""
    handle = store.get(run_id)
    path = handle.path / f"{which}.pt"
    key = (str(handle.path), which, *_ckpt_key(path))
    with _eval_lock:
        if key in _eval_cache:
            _eval_cache.move_to_end(key)
            return _eval_cache[key]
    ev = _evaluate(handle, which, mnist)
    with _eval_lock:
        _eval_cache[key] = ev
        while len(_eval_cache) > EVAL_CACHE_SIZE:
            _eval_cache.popitem(last=False)
    return ev


def _evaluate(handle: Any, which: str, mnist: Any) -> Evaluation:
    from . import data as D
    from .models import build_model
    from .tta import recipe_shift, tta_probs

    spec = handle.config.get("spec")
    if not isinstance(spec, list):
        raise LabError(f"run '{handle.id}' has no layer spec in config.json")
    ckpt = handle.load_checkpoint(which)  # weights_only=True inside
    state = ckpt.get("model")
    if not isinstance(state, dict):
        raise CheckpointError(f"{which}.pt of run '{handle.id}' holds no model weights")
    model = build_model(spec)
    try:
        model.load_state_dict(state)
    except (RuntimeError, KeyError) as exc:
        raise CheckpointError(f"{which}.pt does not fit the run's architecture: {str(exc).splitlines()[0]}") from exc
    mnist = mnist if mnist is not None else D.load_mnist()
    model.eval()  # a fresh model, nobody else holds it
    # the run's own test-time augmentation, so this matches the test accuracy its result reports
    probs = tta_probs(model, mnist.test_x, recipe_shift(handle.config.get("recipe"))).numpy().astype(np.float32)
    if not np.isfinite(probs).all():
        probs = np.nan_to_num(probs, nan=0.1)
    epoch = ckpt.get("epoch")
    return Evaluation(handle.id, which, int(epoch) if isinstance(epoch, (int, float)) else None,
                      mnist.test_y.numpy().astype(np.int64), probs.argmax(1).astype(np.int64), probs)


def test_images(indices: Iterable[int], mnist: Any = None) -> np.ndarray:
    """Test images [k, 28, 28] in [0, 1]."""
    from . import data as D

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


# ------------------------------------------------------------------ page plumbing


def listing_signature(infos: Iterable[RunInfo]) -> tuple:
    """What the page's table depends on that changes by itself: run ids, statuses and epochs done."""
    return tuple(sorted((i.id, i.status, i.epochs if isinstance(i.epochs, int) else -1) for i in infos))


def digest(ids: Iterable[str]) -> str:
    """A short stable digest of a list of ids (for widget keys)."""
    import hashlib

    return hashlib.sha1("\n".join(ids).encode()).hexdigest()[:10]


def import_run(store: RunStore, data: bytes, max_total: int | None = None) -> str:
    """Import an uploaded run zip through the store's validation and a launch's check of its spec and recipe;
    ImportRefused (a LabError) says why."""
    from .runs import IMPORT_MAX_TOTAL, ImportRefused

    limit = IMPORT_MAX_TOTAL if max_total is None else max_total
    if not isinstance(data, (bytes, bytearray)) or not data:
        raise ImportRefused("import refused: the upload is empty")
    if len(data) > limit:
        raise ImportRefused(f"import refused: the zip is {len(data):,} bytes, over the {limit:,}-byte limit")
    from .recorder import check_run_config

    if max_total is None:
        return store.import_zip(bytes(data), check=check_run_config)
    return store.import_zip(bytes(data), max_total=max_total, max_member=max_total, check=check_run_config)


def _zip_config(data: bytes) -> dict | None:
    """config.json of a run zip, read without extracting anything (None if it has no readable one)."""
    import io
    import zipfile

    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            info = next(i for i in zf.infolist() if i.filename.rsplit("/", 1)[-1] == "config.json")
            if info.file_size > 1_000_000:
                return None
            cfg = json.loads(zf.read(info))
    except Exception:  # a bad zip: the store's import says why
        return None
    return cfg if isinstance(cfg, dict) else None


def already_imported(store: RunStore, data: bytes) -> str | None:
    """The run in the store that this zip already is (same preset, creation time and recipe), if any."""
    cfg = _zip_config(data)
    if not cfg or not cfg.get("created"):
        return None
    key = (cfg.get("created"), cfg.get("preset"), json.dumps(cfg.get("recipe"), sort_keys=True))
    for info in reversed(store.list_runs()):  # oldest first: the original, not an earlier copy
        try:
            c = store.get(info.id).config
        except LabError:
            continue
        if (c.get("created"), c.get("preset"), json.dumps(c.get("recipe"), sort_keys=True)) == key:
            return info.id
    return None


def copy_name(name: str, taken: Iterable[str]) -> str:
    """A distinct name for another copy of run `name`: "name (copy 2)", "name (copy 3)", ..."""
    taken = set(taken)
    n = 2
    while f"{name} (copy {n})" in taken:
        n += 1
    return f"{name} (copy {n})"
