"""The training loop: `Trainer` runs the steps of one run and calls its callbacks. No threads, no UI.

Its parts live beside it: the recipe (`recipe.TrainConfig`), the optimizer and LR schedule (`optim`),
pause/stop and live values (`control`), evaluation (`evaluation`), the callback protocol (`callbacks`).
"""

from __future__ import annotations

import math
import threading
import time
import traceback
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from . import data as D
from .callbacks import Callback
from .control import Control, LiveParams
from .errors import CheckpointError, LabError
from .evaluation import confusion_matrix, evaluate
from .fields import LIVE_FIELDS
from .models import build_model, use_generator
from .optim import make_optimizer, schedule_factor, stretched_step
from .plan import RunPlan
from .settings import pick_device


@dataclass
class TrainResult:
    status: str  # done | stopped | diverged | failed
    message: str = ""
    traceback: str = ""
    epochs_done: int = 0
    step: int = 0
    best_val_acc: float | None = None
    best_epoch: int | None = None
    test_acc: float | None = None
    test_loss: float | None = None
    confusion: list[list[int]] | None = None
    per_class_acc: list[float] | None = None
    wall_s: float = 0.0
    train_s: float = 0.0


def _is_log_probs(spec: list[dict]) -> bool:
    return bool(spec) and str(spec[-1].get("type", "")).lower() == "logsoftmax"


@dataclass
class _EpochTally:
    """Running sums of the epoch in progress (kept on the device: no sync per step)."""

    loss: torch.Tensor
    correct: torch.Tensor
    n: int = 0
    win_t: float = 0.0  # start of the images/s window
    win_n: int = 0  # images in it

    @classmethod
    def start(cls, device: torch.device) -> "_EpochTally":
        return cls(torch.zeros((), device=device), torch.zeros((), device=device, dtype=torch.long),
                   win_t=time.perf_counter())


class Trainer:
    """Trains one model on MNIST tensors, step by step, calling its callbacks and obeying a Control."""

    def __init__(self, plan: RunPlan, mnist: D.Mnist, *, control: Control | None = None,
                 callbacks: list[Callback] | tuple[Callback, ...] = (), resume_state: dict | None = None,
                 init_weights: dict | None = None):
        spec, cfg = plan.spec, plan.cfg  # validated where they entered (plan.plan_run): trusted here
        self.plan, self.spec, self.cfg, self.mnist = plan, spec, cfg, mnist
        self.callbacks: list[Callback] = list(callbacks)
        self.device = pick_device(cfg.device)
        self.control = control or Control()
        if self.control.live is None:
            self.control.live = LiveParams.from_config(cfg)
        self.live: LiveParams = self.control.live
        self.epochs = cfg.epochs  # live-editable: the run ends after this many epochs
        self.live.record(epochs=self.epochs)
        self.sched_anchor: tuple[float, float] = (0, 0.0)  # (step, schedule progress) of the last epochs change
        # initial weights: a private generator; the plan's summary: the spec is not checked again
        self.model = build_model(spec, seed=cfg.seed, summary=plan.summary).to(self.device)
        if cfg.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.optimizer = make_optimizer(self.model, cfg)
        self.log_probs = _is_log_probs(spec)
        self.splits = D.make_splits(mnist, cfg.data)
        self.val_data = D.validation_data(mnist, cfg.data, self.splits)
        self.gen = torch.Generator().manual_seed(cfg.seed)  # batch order and augmentation
        # dropout masks: this trainer's own generator, never torch's process-wide one, so a job that starts
        # (or draws) at the same time cannot change this run's curve
        self.dropout_gen = torch.Generator(device=self.device).manual_seed(cfg.seed)
        use_generator(self.model, self.dropout_gen)
        self.epoch = 0  # epochs completed
        self.step = 0  # optimizer steps taken
        # True from the end of an epoch of this session until the next one begins: a "stop after this epoch"
        # seen then ends the run there (before the first one ends, it ends the first one). With the epoch count,
        # changed under _stop_lock, so epoch_to_finish() and the loop agree.
        self._between_epochs = False
        self._stop_lock = threading.Lock()
        self.lr_scale = 1.0
        self.aug_strength = cfg.data.aug_strength if cfg.data.augment else 0.0
        self.best_val_acc: float | None = None
        self.best_epoch: int | None = None
        self.steps_per_epoch = D.steps_per_epoch(len(self.splits.train_idx), cfg.batch_size)
        self.total_steps = self.steps_per_epoch * self.epochs
        self._weights_lock = threading.Lock()
        self.elapsed_before = 0.0  # training seconds of earlier sessions (resume)
        self.train_s = 0.0  # training seconds of this session, up to the last completed epoch
        self._t_start = 0.0  # perf_counter at which this run's training clock reads 0 (earlier sessions included)
        self._t_paused = 0.0  # seconds spent paused in this session
        self._log_every = 1 if self.device.type == "cpu" else 10  # .item() syncs an accelerator: only at log steps
        self._tally = _EpochTally.start(self.device)
        if init_weights is not None:
            self._load_model_state(init_weights)
        if resume_state is not None:
            self.load_state(resume_state)

    # ---- state for checkpoints, resume and fork
    def _load_model_state(self, sd: dict) -> None:
        try:
            self.model.load_state_dict(sd)
        except (RuntimeError, KeyError) as exc:
            raise CheckpointError(f"the weights do not fit this architecture: {str(exc).splitlines()[0]}") from exc

    def checkpoint_state(self) -> dict:
        """A plain dict (tensors and numbers only) to resume this run exactly from its last epoch."""
        return {
            "model": self.weights_copy(),
            "optimizer": self.optimizer.state_dict(),
            "epoch": self.epoch,
            "step": self.step,
            "lr_scale": self.lr_scale,
            "aug_strength": self.aug_strength,
            "live": self.live.snapshot(),
            "epochs": self.epochs,
            "sched_anchor": list(self.sched_anchor),
            "best_val_acc": self.best_val_acc,
            "best_epoch": self.best_epoch,
            "gen_state": self.gen.get_state(),
            "dropout_rng": self.dropout_gen.get_state(),
            "elapsed": self.elapsed_before + self.train_s,
        }

    def load_state(self, st: dict) -> None:
        self._load_model_state(st["model"])
        self.optimizer.load_state_dict(st["optimizer"])
        self.epoch, self.step = int(st["epoch"]), int(st["step"])
        self.lr_scale = float(st.get("lr_scale", 1.0))
        self.aug_strength = float(st.get("aug_strength", self.aug_strength))
        self.best_val_acc, self.best_epoch = st.get("best_val_acc"), st.get("best_epoch")
        self.gen.set_state(st["gen_state"])
        if "dropout_rng" in st:
            self.dropout_gen.set_state(st["dropout_rng"])
        elif "torch_rng" in st and self.device.type == "cpu":  # saved before trainers had their own RNG
            self.dropout_gen.set_state(st["torch_rng"])
        self.elapsed_before = float(st.get("elapsed", 0.0))
        live = st.get("live") or {}
        self.live.record(**{k: v for k, v in live.items() if k in LIVE_FIELDS})
        self._set_epochs(int(st.get("epochs", self.epochs)), tuple(st.get("sched_anchor") or (0, 0.0)))
        for g in self.optimizer.param_groups:  # the optimizer state carries the live momentum/wd
            self.live.record(weight_decay=g.get("weight_decay", 0.0))

    def epoch_to_finish(self) -> int:
        """The epoch after which a "stop after this epoch" asked now ends the run: the one in progress, or the
        one just counted (being validated, or between epochs)."""
        with self._stop_lock:
            return self.epoch if self._between_epochs else self.epoch + 1

    def weights_copy(self) -> dict:
        """A CPU copy of the current weights, safe to take while the loop runs in another thread."""
        with self._weights_lock:
            return {k: v.detach().to("cpu", copy=True) for k, v in self.model.state_dict().items()}

    # ---- reporting to the callbacks
    def _call(self, hook: str, *args: Any) -> None:
        for cb in self.callbacks:
            getattr(cb, hook)(self, *args)

    def publish_health(self, rec: dict) -> None:
        """Hand a layer-health record (made by a callback) to every callback's `on_health`."""
        self._call("on_health", rec)

    def _event(self, event: str, **kw: Any) -> None:
        rec = {"kind": "event", "event": event, "step": self.step, "epoch": self.epoch + 1,
               "t": time.time(), **kw}
        self._call("on_event", rec)

    def _clock(self) -> float:
        """Training seconds of this run so far (earlier sessions included, pauses not)."""
        return time.perf_counter() - self._t_start - self._t_paused

    # ---- schedule and live values
    def _schedule(self) -> float:
        """The schedule's LR multiplier at the current step (stretched after a live epochs change)."""
        at = stretched_step(self.step, self.sched_anchor, self.total_steps)
        return schedule_factor(self.cfg, at, self.epoch, self.total_steps)

    def current_lr(self) -> float:
        return self.cfg.lr * self.lr_scale * self._schedule()

    def _set_epochs(self, epochs: int, anchor: tuple[float, float]) -> None:
        self.epochs, self.sched_anchor = epochs, (anchor[0], float(anchor[1]))
        self.total_steps = self.steps_per_epoch * epochs
        self.live.record(epochs=epochs)

    def _change_epochs(self, requested: int, floor: int) -> int:
        """Apply a live epochs value (never below `floor`, the epochs done or in progress); the new count.

        The schedule re-stretches from this step (see `stretched_step`); StepLR keeps its steps.
        """
        new = max(int(requested), floor, 1)
        if new != self.epochs:
            progress = stretched_step(self.step, self.sched_anchor, self.total_steps) / max(1, self.total_steps)
            self._set_epochs(new, (self.step, min(1.0, progress)))
        return new

    def _apply_live(self, floor: int | None = None) -> None:
        """Apply pending live changes; `floor`: the fewest epochs the run can still end after."""
        pending = self.live.take_pending()
        for k, new in pending.items():
            extra: dict = {}
            if k == "epochs":
                old = self.epochs
                new_eff = self._change_epochs(new, self.epoch + 1 if floor is None else floor)
                if new_eff != new:
                    extra["requested"] = new  # fewer than already trained: ends after the epoch in progress
                new = new_eff
            elif k == "lr":
                old = self.current_lr()
                sched = self.cfg.lr * self._schedule()
                # live LR rescales the schedule: from this step on lr_t = schedule_t * scale, = new now
                self.lr_scale = new / sched if sched > 0 else self.lr_scale
            elif k == "momentum":
                g0 = self.optimizer.param_groups[0]
                old = g0["momentum"] if "momentum" in g0 else g0["betas"][0]
                for g in self.optimizer.param_groups:
                    if "momentum" in g:
                        g["momentum"] = new
                    else:
                        g["betas"] = (new, g["betas"][1])
            elif k == "weight_decay":
                old = self.optimizer.param_groups[0]["weight_decay"]
                for g in self.optimizer.param_groups:
                    g["weight_decay"] = new
            else:
                old = self.aug_strength
                self.aug_strength = new
            self.live.record(**{k: new})
            self._event("set", field=k, old=old, new=new, **extra)

    def _wait_if_paused(self) -> None:
        if not self.control.pause_event.is_set():
            return
        self._event("pause")
        paused_at = time.perf_counter()
        while self.control.pause_event.is_set() and not self.control.stop_event.is_set():
            self.control.stop_event.wait(0.02)
        self._t_paused += time.perf_counter() - paused_at
        if not self.control.stop_event.is_set():
            self._event("resume")

    def _loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.log_probs:  # the net ends in log-softmax (seed 001): NLL, smoothing applied by hand
            nll = F.nll_loss(out, y)
            if self.cfg.label_smoothing:
                return (1 - self.cfg.label_smoothing) * nll - self.cfg.label_smoothing * out.mean(1).mean()
            return nll
        return F.cross_entropy(out, y, label_smoothing=self.cfg.label_smoothing)

    # ---- the loop
    def run(self) -> TrainResult:
        """Train the remaining epochs, then evaluate on the test set. Never raises for a training failure."""
        t0 = time.perf_counter()
        self._t_paused = 0.0
        result = TrainResult(status="done")
        try:
            self._call("on_start")
            status, message = self._train()
            result.status, result.message = status, message
            if status == "done":
                self._test(result)
        except LabError as exc:
            result.status, result.message = "failed", str(exc)
            result.traceback = traceback.format_exc()
        except Exception as exc:  # a training thread must end with a status, not vanish
            result.status = "failed"
            result.message = f"{type(exc).__name__}: {exc}"
            result.traceback = traceback.format_exc()
        result.epochs_done, result.step = self.epoch, self.step
        result.best_val_acc, result.best_epoch = self.best_val_acc, self.best_epoch
        result.wall_s = time.perf_counter() - t0
        result.train_s = self.elapsed_before + self.train_s
        self._call("on_end", result)
        return result

    def _test(self, result: TrainResult) -> None:
        """The test-set figures of the trained model, into `result`."""
        tl, ta, preds = evaluate(self.model, self.mnist.test_x, self.mnist.test_y, self.device,
                                 self.cfg.eval_batch_size, self.cfg.channels_last, self.cfg.tta_shift)
        cm = confusion_matrix(preds, self.mnist.test_y)
        result.test_loss, result.test_acc = tl, ta
        result.confusion = cm.tolist()
        result.per_class_acc = (cm.diag().float() / cm.sum(1).clamp(min=1).float()).tolist()

    def _train(self) -> tuple[str, str]:
        """Epochs until the planned count, a stop or a divergence: (status, message)."""
        self._t_start = time.perf_counter() - self.elapsed_before
        self.train_s = 0.0
        self.model.train()
        while True:
            self._apply_live(floor=self.epoch)  # between epochs: a shorter run can end here
            if self.epoch >= self.epochs:
                return "done", ""
            with self._stop_lock:
                stop = self._between_epochs and self.control.stop_after_epoch.is_set()
                self._between_epochs = stop  # unless it stops here, the next epoch begins
            if stop:
                self._event("stop")
                return "stopped", f"stopped by the user after epoch {self.epoch}"
            self._tally = _EpochTally.start(self.device)
            for idx in D.iterate_indices(self.splits.train_idx, self.cfg.batch_size, True, self.gen):
                ended = self._control() or self._train_step(idx, self._live_values())
                if ended:
                    return ended
            ended = self._end_of_epoch()
            if ended:
                return ended

    def _control(self) -> tuple[str, str] | None:
        """Obey pause and stop requests between steps; (status, message) when the run must end."""
        if not self.control.stop_event.is_set():
            self._wait_if_paused()  # a stop also ends a pause
        if not self.control.stop_event.is_set():
            return None
        self._event("stop")
        return "stopped", f"stopped by the user at step {self.step} (epoch {self.epoch + 1})"

    def _live_values(self) -> float:
        """Apply pending live changes and set this step's learning rate; the LR."""
        self._apply_live()
        lr = self.current_lr()
        for g in self.optimizer.param_groups:
            g["lr"] = lr
        return lr

    def _train_step(self, idx: torch.Tensor, lr: float) -> tuple[str, str] | None:
        """One optimizer step on the images `idx`; (status, message) if the loss diverged."""
        cfg, dev, tally = self.cfg, self.device, self._tally
        xb = D.make_batch(self.mnist.train_x, idx, self.aug_strength, self.gen, cfg.data.aug_kind)
        xb = xb.to(dev, non_blocking=True)
        yb = self.mnist.train_y.index_select(0, idx).to(dev, non_blocking=True)
        if cfg.channels_last:
            xb = xb.contiguous(memory_format=torch.channels_last)
        self._call("on_batch_start")  # callbacks that sample a step (layer health) arm here
        out = self.model(xb)
        loss = self._loss(out, yb)
        with self._weights_lock:
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
        self.step += 1
        self._call("on_batch_end")  # grads of this step are still in .grad here
        n = len(idx)
        tally.loss += loss.detach() * n
        correct = (out.detach().argmax(1) == yb).sum()
        tally.correct += correct
        tally.n += n
        tally.win_n += n
        if self.step % self._log_every and tally.n < len(self.splits.train_idx):
            return None
        lv = loss.item()
        if not math.isfinite(lv):
            self._event("diverged", value=str(lv))
            return "diverged", (
                f"training diverged: the loss became {lv} at step {self.step} (epoch {self.epoch + 1}) "
                f"with learning rate {lr:.3g}; lower the learning rate (or add BatchNorm) and retry")
        now = time.perf_counter()
        ips = tally.win_n / max(1e-9, now - tally.win_t)
        tally.win_t, tally.win_n = now, 0
        self._call("on_step", {
            "kind": "step", "step": self.step, "epoch": self.epoch + 1, "loss": lv,
            "acc": correct.item() / n, "lr": lr, "ips": ips, "t": self._clock(), "wall": time.time()})
        return None

    def _end_of_epoch(self) -> tuple[str, str] | None:
        """Count the epoch, validate, record it; (status, message) if its mean loss diverged."""
        tally = self._tally
        with self._stop_lock:
            self.epoch += 1
            self._between_epochs = True
        self.train_s = self._clock() - self.elapsed_before
        tl = (tally.loss / max(1, tally.n)).item()
        if not math.isfinite(tl):
            self._event("diverged", value=str(tl))
            return "diverged", f"training diverged: the epoch's mean loss is {tl} (epoch {self.epoch}); lower the learning rate"
        vl, va, _ = evaluate(self.model, *self.val_data, self.device, self.cfg.eval_batch_size, self.cfg.channels_last)
        improved = self.best_val_acc is None or va > self.best_val_acc
        if improved:
            self.best_val_acc, self.best_epoch = va, self.epoch
        self._call("on_epoch", {
            "kind": "epoch", "epoch": self.epoch, "step": self.step, "train_loss": tl,
            "train_acc": tally.correct.item() / max(1, tally.n), "val_loss": vl, "val_acc": va,
            "lr": self.current_lr(), "best": improved, "t": self._clock(), "wall": time.time()})
        return None
