"""LR range test (Smith's "LR finder"): raise the learning rate exponentially on a throw-away copy of a
model and recipe, watch the loss, and suggest a learning rate. Plus a small background-job runner.

The test (`lr_range_test`) trains a fresh model of the spec with the recipe's optimizer, momentum,
weight decay, batch size, augmentation and loss, but no schedule: step i uses
`lr_i = start * (end / start) ** (i / (steps - 1))` (1e-6 to 10 over 200 steps by default). The loss
is smoothed with a debiased EMA (weight 0.98 on the past, as fastai does) and the test stops early
once the smoothed loss exceeds 4x its minimum or becomes NaN/inf ("the loss exploded").

**Suggestion rule: a tenth of the LR at the minimum of the smoothed loss** (`min_lr / 10`, fastai's
classic "minimum/10"): at the minimum the LR is already about to blow the loss up, one decade lower
is still fast and safe. The steepest-descent point (most negative slope of the smoothed loss against
log LR) is reported too (`steepest_lr`) but not used: on these nets it jumped by a decade between
seeds (the early curve is flat and noisy), while min/10 stayed within a factor of 2 (README, *LR finder*).

Nothing here touches the run store: the model is built, trained for a few hundred steps and dropped.
"""

from __future__ import annotations

import itertools
import math
import threading
import time
import traceback
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import torch

from . import data as D
from .engine import Trainer
from .errors import ConfigError, LabError
from .plan import RunPlan, plan_run
from .recipe import TrainConfig

START_LR, END_LR, STEPS = 1e-6, 10.0, 200
SMOOTHING = 0.98  # EMA weight of the past (debiased)
DIVERGE = 4.0  # stop once the smoothed loss is this many times its minimum
RULE = "min/10"
RULE_TEXT = "a tenth of the learning rate at the minimum of the smoothed loss"
SKIP_START = 10  # points ignored when looking for the minimum / steepest slope (EMA warming up)


@dataclass
class LRFindResult:
    """The curve of an LR range test and its suggestion."""

    lrs: list[float] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)  # raw loss per step
    smoothed: list[float] = field(default_factory=list)  # debiased EMA of the loss
    suggestion: float | None = None  # min_lr / 10 (RULE)
    min_lr: float | None = None  # LR at the minimum of the smoothed loss
    steepest_lr: float | None = None  # LR of the steepest descent of the smoothed loss (not used)
    rule: str = RULE
    stop_reason: str = ""  # "exploded" | "end" | "cancelled"
    steps_planned: int = STEPS
    wall_s: float = 0.0
    recipe_lr: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def lr_at(i: int, steps: int, start: float = START_LR, end: float = END_LR) -> float:
    """The LR of step i (0-based) of an exponential sweep from start to end in `steps` steps."""
    return start * (end / start) ** (i / max(1, steps - 1))


def suggest(lrs: list[float], smoothed: list[float]) -> tuple[float | None, float | None, float | None]:
    """(suggestion = min_lr / 10, min_lr, steepest_lr) of a finished curve; Nones when it is too short."""
    n = len(smoothed)
    if n < SKIP_START + 3:
        return None, None, None
    lo = SKIP_START
    i_min = min(range(lo, n), key=lambda i: smoothed[i])
    min_lr = lrs[i_min]
    steepest = None
    if i_min - lo >= 2:
        slopes = [(smoothed[i + 1] - smoothed[i - 1]) / (math.log(lrs[i + 1]) - math.log(lrs[i - 1]))
                  for i in range(lo, i_min)]
        steepest = lrs[lo + min(range(len(slopes)), key=slopes.__getitem__)]
    return min_lr / 10, min_lr, steepest


def _check(start: float, end: float, steps: int) -> None:
    if isinstance(steps, bool) or not isinstance(steps, int) or not 20 <= steps <= 2000:
        raise ConfigError("steps", f"must be an integer between 20 and 2000, got {steps!r}")
    for name, v in (("start_lr", start), ("end_lr", end)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not 0 < v <= 100:
            raise ConfigError(name, f"must be a number in (0, 100], got {v!r}")
    if start >= end:
        raise ConfigError("end_lr", f"must be more than start_lr ({start:g}), got {end:g}")


def lr_range_test(plan: RunPlan, mnist: D.Mnist, *, start_lr: float = START_LR, end_lr: float = END_LR,
                  steps: int = STEPS, on_step: Callable[[dict], None] | None = None,
                  cancel: threading.Event | None = None) -> LRFindResult:
    """Run the LR range test on a fresh model of the plan's spec with its recipe; see the module docstring."""
    _check(start_lr, end_lr, steps)
    t0 = time.perf_counter()
    cfg = plan.cfg
    trainer = Trainer(plan, mnist)  # model, optimizer, data split and loss exactly as a run would have
    model, opt, dev = trainer.model, trainer.optimizer, trainer.device
    x_all, y_all = mnist.train_x, mnist.train_y
    res = LRFindResult(steps_planned=steps, recipe_lr=cfg.lr)
    batches = itertools.chain.from_iterable(
        D.iterate_indices(trainer.splits.train_idx, cfg.batch_size, True, trainer.gen) for _ in itertools.count())
    acc, w, best = 0.0, 0.0, math.inf
    res.stop_reason = "end"
    model.train()
    for i, idx in zip(range(steps), batches):
        if cancel is not None and cancel.is_set():
            res.stop_reason = "cancelled"
            break
        lr = lr_at(i, steps, start_lr, end_lr)
        for g in opt.param_groups:
            g["lr"] = lr
        xb = D.make_batch(x_all, idx, trainer.aug_strength, trainer.gen, cfg.data.aug_kind).to(dev)
        yb = y_all.index_select(0, idx).to(dev)
        if cfg.channels_last:
            xb = xb.contiguous(memory_format=torch.channels_last)
        loss = trainer._loss(model(xb), yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        lv = loss.item()
        if not math.isfinite(lv):
            res.stop_reason = "exploded"
            break
        acc, w = SMOOTHING * acc + (1 - SMOOTHING) * lv, SMOOTHING * w + (1 - SMOOTHING)
        sm = acc / w
        res.lrs.append(lr)
        res.losses.append(lv)
        res.smoothed.append(sm)
        if on_step is not None:
            on_step({"step": i + 1, "steps": steps, "lr": lr, "loss": lv, "smoothed": sm})
        best = min(best, sm) if i >= SKIP_START else best
        if sm > DIVERGE * best:
            res.stop_reason = "exploded"
            break
    res.suggestion, res.min_lr, res.steepest_lr = suggest(res.lrs, res.smoothed)
    res.wall_s = time.perf_counter() - t0
    return res


# ----------------------------------------------------------------------------- background jobs

class FinderJob:
    """One LR range test in a daemon thread: progress, cancel, result (read from any thread)."""

    def __init__(self, job_id: str, label: str, plan: RunPlan, steps: int):
        self.id, self.label, self.plan, self.cfg, self.steps = job_id, label, plan, plan.cfg, steps
        self.cancel_event = threading.Event()
        self._lock = threading.Lock()
        self.status = "running"  # running | done | cancelled | failed
        self.step = 0
        self.last: dict | None = None
        self.result: LRFindResult | None = None
        self.message = ""
        self.thread: threading.Thread | None = None

    def on_step(self, rec: dict) -> None:
        with self._lock:
            self.step, self.last = rec["step"], rec

    @property
    def progress(self) -> float:
        with self._lock:
            return min(1.0, self.step / max(1, self.steps))

    @property
    def done(self) -> bool:
        return self.status != "running"


class LRFinder:
    """Runs LR range tests in background threads, one at a time per finder (a new one cancels the old)."""

    def __init__(self, mnist_loader: Callable[[], D.Mnist] = D.load_mnist,
                 threads: Callable[[], int] | None = None):
        self._mnist_loader = mnist_loader
        self._threads = threads  # e.g. the cores left by running training jobs
        self._lock = threading.Lock()
        self._jobs: dict[str, FinderJob] = {}
        self._seq = itertools.count(1)

    def start(self, plan: RunPlan, *, label: str = "", steps: int = STEPS) -> str:
        """Start a range test of a validated plan; its id (ConfigError for `steps` now, other failures as status)."""
        _check(START_LR, END_LR, steps)
        job = FinderJob(f"lrf-{next(self._seq)}", label, plan, steps)
        with self._lock:
            self._jobs[job.id] = job
        job.thread = threading.Thread(target=self._worker, args=(job,), name=f"cnnlab-{job.id}", daemon=True)
        job.thread.start()
        return job.id

    def get(self, job_id: str | None) -> FinderJob | None:
        with self._lock:
            return self._jobs.get(job_id) if job_id else None

    def cancel(self, job_id: str) -> None:
        job = self.get(job_id)
        if job is None:
            raise LabError(f"no LR finder job '{job_id}'")
        job.cancel_event.set()

    def wait(self, job_id: str, timeout: float | None = None) -> FinderJob:
        job = self.get(job_id)
        if job is None:
            raise LabError(f"no LR finder job '{job_id}'")
        if job.thread is not None:
            job.thread.join(timeout)
        return job

    def _worker(self, job: FinderJob) -> None:
        try:
            if self._threads is not None:
                torch.set_num_threads(max(1, int(self._threads())))
            res = lr_range_test(job.plan, self._mnist_loader(), steps=job.steps, on_step=job.on_step,
                                cancel=job.cancel_event)
            job.result = res
            job.status = "cancelled" if res.stop_reason == "cancelled" else "done"
        except BaseException as exc:  # noqa: BLE001 - a finder job ends with a status, whatever happened
            job.message = str(exc) if isinstance(exc, LabError) else f"{type(exc).__name__}: {exc}"
            job.message += "" if isinstance(exc, LabError) else "\n" + traceback.format_exc(limit=3)
            job.status = "failed"


def preset_config(name: str, **overrides: Any) -> RunPlan:
    """The validated plan of a preset with recipe overrides (None ignored; `data` merged): the CLI's entry."""
    from .presets import get_preset

    p = get_preset(name)
    recipe = dict(p.recipe)
    data = {**(recipe.pop("data", None) or {}), **(overrides.pop("data", None) or {})}
    return plan_run(p.spec, TrainConfig.from_dict({**recipe, "data": data}, **overrides))
