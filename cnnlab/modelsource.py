"""Models for the Draw page: built from a saved run's best/last checkpoint or a running job's
current weights, in eval mode, kept in a small LRU cache so switching between models is quick.

Cache entries are keyed by `ModelRef.key` ("<run id>:best|last|live") and stamped: a saved
checkpoint with the file's (mtime, size), so a rewritten last.pt is reloaded and an unchanged one
is not; live weights with the time they were copied, refreshed on demand (or when older than
`live_max_age_s`). Weights load with `weights_only=True` (through the run store) and every model is
a fresh module the trainer never touches, so probing it cannot disturb training.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from cnnlab.errors import CheckpointError, LabError, SpecError
from cnnlab.models import build_model
from cnnlab.runs import RunNotFound, RunStore

WHICH = ("best", "last", "live")
LIVE_STATUSES = ("running", "paused")
NO_RUNS_HINT = (
    "No trained model yet. Train one on the **Train** page (the `fast` preset reaches about 99% "
    "in one epoch, about 15 seconds on a 2-core CPU), or from a terminal: `python -m cnnlab train --preset fast`."
)


@dataclass(frozen=True)
class ModelRef:
    """Which weights to load: a run's best or last checkpoint, or a running job's current weights."""

    run_id: str
    which: str  # "best" | "last" | "live"
    label: str = field(default="", compare=False)

    @property
    def key(self) -> str:
        return f"{self.run_id}:{self.which}"


@dataclass
class RunChoice:
    """One run on the Draw page's model list, with the weights it offers (best / last / live)."""

    run_id: str
    name: str
    preset: str | None
    best_val_acc: float | None
    status: str
    refs: dict[str, ModelRef] = field(default_factory=dict)  # which -> ref, in WHICH order of discovery
    damaged: bool = False

    @property
    def label(self) -> str:
        """What the picker shows: name, preset, best validation accuracy, and whether it still trains."""
        parts = [self.name, self.preset or "custom"]
        if self.best_val_acc is not None:
            parts.append(f"val {self.best_val_acc:.1%}")
        if self.status not in ("done",):
            parts.append(self.status)
        return " · ".join(parts) + (" (damaged files)" if self.damaged else "")


def default_choice(choices: list[RunChoice], wanted: str | None = None) -> RunChoice:
    """The run to preselect: `wanted` (a ?run= link) if listed, else the best finished run, else the first."""
    for c in choices:
        if c.run_id == wanted:
            return c
    done = [c for c in choices if c.status == "done" and c.best_val_acc is not None and "best" in c.refs]
    return max(done, key=lambda c: c.best_val_acc) if done else choices[0]


@dataclass
class LoadedModel:
    """An eval-mode model ready for inference, with where its weights came from."""

    ref: ModelRef
    model: nn.Module
    spec: list[dict]
    stamp: tuple  # (mtime_ns, size) of the checkpoint file, or (copied_at,) for live weights
    loaded_at: float  # time.time() when built
    epoch: int | None = None  # epochs completed when the weights were saved / copied, if known
    val_acc: float | None = None
    memo: dict[str, Any] = field(default_factory=dict)  # per-model results (misclassified indices)

    @property
    def age_s(self) -> float:
        return time.time() - self.loaded_at


def _first_line(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return (lines[0] if lines else type(exc).__name__)[:300]


def _mismatch(model: nn.Module, state: dict) -> str | None:
    """A short description of why `state` does not fit `model`, or None if it does."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    extra = [k for k in state if k not in own]
    shapes = [
        f"{k} is {tuple(state[k].shape)} in the file but {tuple(v.shape)} in the model"
        for k, v in own.items()
        if k in state and hasattr(state[k], "shape") and tuple(state[k].shape) != tuple(v.shape)
    ]
    parts = []
    if shapes:
        parts.append(shapes[0] + (f" (+{len(shapes) - 1} more)" if len(shapes) > 1 else ""))
    if missing:
        parts.append(f"missing {', '.join(missing[:3])}" + (" ..." if len(missing) > 3 else ""))
    if extra:
        parts.append(f"unexpected {', '.join(extra[:3])}" + (" ..." if len(extra) > 3 else ""))
    return "; ".join(parts) or None


def build_eval_model(spec: list[dict], state: dict, where: str) -> nn.Module:
    """Build `spec`, load `state` strictly, eval mode. CheckpointError (naming `where`) if they differ."""
    try:
        model = build_model(spec)
    except SpecError as exc:
        raise CheckpointError(f"{where}: the run's architecture is invalid: {exc}") from exc
    problem = _mismatch(model, state)
    if problem:
        raise CheckpointError(f"{where} is from another architecture than the run's spec: {problem}")
    try:
        model.load_state_dict(state)
    except (RuntimeError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{where} does not fit the run's architecture: {_first_line(exc)}") from exc
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)  # inference only; attribution differentiates the input
    return model


class ModelSource:
    """Lists loadable models and loads them through a thread-safe LRU cache."""

    def __init__(self, store: RunStore, manager: Any = None, capacity: int = 8,
                 live_max_age_s: float | None = None):
        self.store = store
        self.manager = manager  # a JobManager (jobs(), weights_copy(id)), or None: saved runs only
        self.capacity = capacity
        self.live_max_age_s = live_max_age_s
        self._cache: OrderedDict[str, LoadedModel] = OrderedDict()
        self._lock = threading.RLock()
        self.hits = 0
        self.misses = 0

    # ---- what can be loaded
    def live_jobs(self) -> list[Any]:
        """Jobs of the manager that are training now (running or paused)."""
        if self.manager is None:
            return []
        return [j for j in self.manager.jobs() if getattr(j, "status", None) in LIVE_STATUSES]

    def choices(self) -> list[ModelRef]:
        """Every loadable model: running jobs' live weights first, then saved runs' best and last."""
        return [r for c in self.run_choices() for r in c.refs.values()]

    def run_choices(self) -> list[RunChoice]:
        """The loadable models grouped by run (live jobs first, then the store's runs, newest first)."""
        out: dict[str, RunChoice] = {}
        live = self.live_jobs()
        live_ids = {_job_id(j) for j in live}
        if self.manager is not None and hasattr(self.manager, "live_ids"):
            live_ids |= set(self.manager.live_ids())  # queued jobs too: their runs are not "interrupted"
        for j in live:
            epoch = getattr(j, "epoch", None)
            where = f", epoch {epoch}" if epoch is not None else ""
            name = getattr(j, "name", None) or _job_id(j)
            c = out.setdefault(_job_id(j), RunChoice(_job_id(j), name, getattr(j, "preset", None), None, j.status))
            c.refs["live"] = ModelRef(_job_id(j), "live", f"{name} — live weights ({j.status}{where})")
        for info in self.store.list_runs(live_ids=live_ids if self.manager is not None else None):
            if info.error and info.created is None:
                continue  # config.json unreadable: no architecture to build
            # Other damage (e.g. a truncated best.pt) stays listed: loading it says what is wrong,
            # and the run's other checkpoint may be fine.
            warn = " (damaged files)" if info.error else ""
            acc = f", val {info.best_val_acc:.1%}" if isinstance(info.best_val_acc, (int, float)) else ""
            c = out.get(info.id) or RunChoice(info.id, info.name, info.preset, None, info.status)
            c.name, c.preset, c.status, c.damaged = info.name, info.preset, info.status, bool(info.error)
            c.best_val_acc = info.best_val_acc if isinstance(info.best_val_acc, (int, float)) else None
            if (info.path / "best.pt").is_file():
                c.refs["best"] = ModelRef(info.id, "best", f"{info.name} — best epoch{acc}{warn}")
            if (info.path / "last.pt").is_file():
                done = f" {info.epochs}" if info.epochs is not None else ""
                c.refs["last"] = ModelRef(info.id, "last", f"{info.name} — last epoch{done}{warn}")
            if c.refs:
                out[info.id] = c
        return list(out.values())

    # ---- loading
    def load(self, ref: ModelRef, refresh: bool = False) -> LoadedModel:
        """The model for `ref`, from the cache when its weights have not changed.

        `refresh` re-copies live weights (saved checkpoints reload by themselves when the file
        changes). Raises LabError (CheckpointError, RunNotFound) with a message for the user.
        """
        if ref.which not in WHICH:
            raise LabError(f"unknown weights {ref.which!r}; known: {', '.join(WHICH)}")
        with self._lock:
            if ref.which == "live":
                return self._load_live(ref, refresh)
            return self._load_saved(ref)

    def _cached(self, key: str, stamp: tuple | None) -> LoadedModel | None:
        hit = self._cache.get(key)
        if hit is not None and (stamp is None or hit.stamp == stamp):
            self._cache.move_to_end(key)
            self.hits += 1
            return hit
        return None

    def _put(self, loaded: LoadedModel) -> LoadedModel:
        self.misses += 1
        self._cache[loaded.ref.key] = loaded
        self._cache.move_to_end(loaded.ref.key)
        while len(self._cache) > self.capacity:
            self._cache.popitem(last=False)
        return loaded

    def _load_saved(self, ref: ModelRef) -> LoadedModel:
        handle = self.store.get(ref.run_id)
        path = handle.path / f"{ref.which}.pt"
        try:
            st = path.stat()
        except FileNotFoundError:
            raise CheckpointError(f"run '{ref.run_id}' has no {ref.which}.pt (yet)") from None
        stamp = (st.st_mtime_ns, st.st_size)
        hit = self._cached(ref.key, stamp)
        if hit is not None:
            return hit
        ckpt = handle.load_checkpoint(ref.which)  # weights_only=True; CheckpointError names the file
        state = ckpt.get("model")
        where = f"{ref.which}.pt of run '{ref.run_id}'"
        if not isinstance(state, dict) or not state:
            raise CheckpointError(f"{where} holds no model weights (no 'model' state_dict)")
        model = build_eval_model(_spec_of(handle, ref.run_id), state, where)
        epoch = ckpt.get("epoch")
        val = ckpt.get("val_acc", ckpt.get("best_val_acc") if ref.which == "best" else None)
        return self._put(LoadedModel(ref, model, handle.config["spec"], stamp, time.time(),
                                     _num(epoch, int), _num(val, float)))

    def _load_live(self, ref: ModelRef, refresh: bool) -> LoadedModel:
        hit = self._cache.get(ref.key)
        stale = hit is not None and self.live_max_age_s is not None and hit.age_s > self.live_max_age_s
        if hit is not None and not refresh and not stale:
            return self._cached(ref.key, None)  # type: ignore[return-value]
        if self.manager is None:
            raise LabError("live weights need the job manager, which is not available here")
        state = self.manager.weights_copy(ref.run_id)
        if state is None:
            raise LabError(f"job '{ref.run_id}' has no weights to show yet (queued, or already finished: "
                           "pick its saved checkpoint instead)")
        handle = self.store.get(ref.run_id)
        epoch = next((getattr(j, "epoch", None) for j in self.live_jobs() if _job_id(j) == ref.run_id), None)
        model = build_eval_model(_spec_of(handle, ref.run_id), state, f"live weights of job '{ref.run_id}'")
        now = time.time()
        return self._put(LoadedModel(ref, model, handle.config["spec"], (now,), now, _num(epoch, int)))

    # ---- per-model results
    def misclassified(self, loaded: LoadedModel, x_u8: torch.Tensor, y: torch.Tensor,
                      limit: int = 200) -> np.ndarray:
        """Test images this model gets wrong (at most `limit`), computed once per loaded model."""
        from cnnlab.inference.robustness import find_misclassified

        key = f"misclassified:{limit}:{len(x_u8)}"
        if key not in loaded.memo:
            loaded.memo[key] = find_misclassified(loaded.model, x_u8, y, limit=limit)
        return loaded.memo[key]

    def clear(self) -> None:
        with self._lock:
            self._cache.clear()


def _job_id(job: Any) -> str:
    return str(getattr(job, "run_id", None) or job.id)


def _spec_of(handle: Any, run_id: str) -> list[dict]:
    try:
        spec = handle.config.get("spec")
    except LabError as exc:
        raise CheckpointError(f"run '{run_id}': cannot read its config.json: {exc}") from exc
    if not isinstance(spec, list) or not spec:
        raise CheckpointError(f"run '{run_id}' has no architecture spec in config.json")
    return spec


def _num(v: Any, kind: type) -> Any:
    try:
        return kind(v) if v is not None else None
    except (TypeError, ValueError):
        return None


__all__ = ["ModelRef", "RunChoice", "default_choice", "LoadedModel", "ModelSource", "build_eval_model", "NO_RUNS_HINT", "RunNotFound"]
