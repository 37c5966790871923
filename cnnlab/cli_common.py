"""What every `python -m cnnlab` command shares: the progress bar, JSON output, recipe flags.

The command modules (cli.py, cli_runs.py, cli_sweep.py, cli_tools.py) import this one, never each other
(cli.py registers the others' commands).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from typing import Any, Callable

from .callbacks import Callback


class Progress(Callback):
    """The training progress bar on stderr (a Trainer callback), drawn by tqdm.

    On a terminal it redraws a few times a second; when stderr is a file or a pipe (a log) it
    writes a line at most every LOG_EVERY_S seconds instead of thousands of `\r` updates.
    `show(rec)` draws a record from elsewhere (the follower of a background job).
    """

    LOG_EVERY_S = 30.0

    def __init__(self, total_steps: int, quiet: bool = False, file: Any = None):
        from tqdm import tqdm

        self.quiet, self._step = quiet, 0
        out = file if file is not None else sys.stderr
        tty = hasattr(out, "isatty") and out.isatty()
        self.bar = tqdm(total=max(1, total_steps), file=out, disable=quiet, unit="step", dynamic_ncols=tty,
                        ncols=None if tty else 100, mininterval=0.2 if tty else self.LOG_EVERY_S,
                        maxinterval=None if tty else self.LOG_EVERY_S * 2, leave=True)

    def show(self, rec: dict) -> None:
        """Draw a step, epoch or event record."""
        if self.quiet:
            return
        kind = rec.get("kind")
        if kind == "step":
            self.bar.update(max(0, rec["step"] - self._step))
            self._step = rec["step"]
            self.bar.set_postfix_str(f"epoch {rec['epoch']} loss {rec['loss']:.4f} lr {rec['lr']:.3g} "
                                     f"{rec['ips']:.0f} img/s", refresh=False)
        elif kind == "epoch":
            self.bar.write(f"epoch {rec['epoch']}: train loss {rec['train_loss']:.4f} acc {rec['train_acc']:.4f}"
                           f" | val loss {rec['val_loss']:.4f} acc {rec['val_acc']:.4f}", file=self.bar.fp)
        elif kind == "event" and rec.get("event") != "set":
            self.bar.write(f"{rec['event']} at step {rec['step']}", file=self.bar.fp)

    def on_step(self, trainer: Any, rec: dict) -> None:
        self.show(rec)

    def on_epoch(self, trainer: Any, rec: dict) -> None:
        self.show(rec)

    def on_event(self, trainer: Any, rec: dict) -> None:
        self.show(rec)

    def on_end(self, trainer: Any, result: Any) -> None:
        self.bar.close()


class TwoStepStop:
    """Ctrl-C while a command trains, like the Train page's two stop buttons: the first press asks to
    finish the epoch in progress ("stop after this epoch": it is validated and saved), the second stops
    now (the partial epoch is not kept, as with "Stop now"); a third raises KeyboardInterrupt as usual.

    A context manager around the training; installs its SIGINT handler in the main thread only. The
    handler itself only counts: each request (`after_epoch`, `now`; they return the line to print) runs
    in a short thread, so it never takes a lock that the interrupted code might hold.
    """

    def __init__(self, after_epoch: Callable[[], str], now: Callable[[], str]):
        self._actions = (after_epoch, now)
        self.presses = 0
        self._old: Any = None

    def __enter__(self) -> "TwoStepStop":
        if threading.current_thread() is threading.main_thread():
            self._old = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)
            self._old = None

    def _handle(self, signum: int, frame: Any) -> None:
        self.presses += 1
        if self.presses > len(self._actions):
            raise KeyboardInterrupt
        action = self._actions[self.presses - 1]
        threading.Thread(target=self._run, args=(action,), name="cnnlab-ctrl-c", daemon=True).start()

    @staticmethod
    def _run(action: Callable[[], str]) -> None:
        line = action()
        sys.stderr.write(f"\n{line}\n")
        sys.stderr.flush()


def finishing_line(epoch: int) -> str:
    """What the first Ctrl-C says: the epoch the run now ends after (validated and saved first)."""
    return f"finishing epoch {epoch}; Ctrl-C again to stop now"


def _print_json(obj: Any) -> None:
    print(json.dumps(obj, default=str), flush=True)


def error_json(message: str, field: str | None = None) -> dict:
    """The one JSON line every failure ends with under --json ("error" repeats the message for old readers)."""
    return {"status": "error", "message": message, "error": message, "field": field}


def add_recipe_args(ap: argparse.ArgumentParser) -> None:
    """Recipe overrides shared by train and fork (absent flags keep the preset's / parent's value)."""
    ap.add_argument("--epochs", type=int, help="number of epochs (the last epoch, for a fork)")
    ap.add_argument("--batch-size", type=int, dest="batch_size", help="images per training step")
    ap.add_argument("--lr", type=float, help="learning rate (peak LR for one-cycle)")
    ap.add_argument("--momentum", type=float, help="SGD momentum; beta1 for adam/adamw")
    ap.add_argument("--weight-decay", type=float, dest="weight_decay", help="L2 weight decay")
    ap.add_argument("--optimizer", help="sgd, adam or adamw")
    ap.add_argument("--scheduler", help="learning-rate schedule: none, step, onecycle or cosine")
    ap.add_argument("--label-smoothing", type=float, dest="label_smoothing", help="label smoothing, 0 to <1")
    ap.add_argument("--tta-shift", type=int, dest="tta_shift", metavar="PX",
                    help="test-time augmentation: the test accuracy averages the softmax over each image and its "
                         "copies shifted PX pixels up/down/left/right (0 = off)")
    ap.add_argument("--seed", type=int, help="random seed (weights, batch order, augmentation)")
    ap.add_argument("--device", help="auto, cpu, cuda or mps")
    ap.add_argument("--subset", type=int, help="training images per epoch (default: all but the validation set)")
    ap.add_argument("--val-size", type=int, dest="val_size", help="images held out of training for validation")
    ap.add_argument("--augment", type=float, metavar="STRENGTH",
                    help="augmentation strength (0 = off, 1 = the kind's full strength)")
    ap.add_argument("--aug-kind", dest="aug_kind", help="augmentation kind: affine, cropzoom or brightness")
    ap.add_argument("--val-source", dest="val_source",
                    help="holdout (validation images held out of the 60k) or test (train on all 60k, validate on test)")


def recipe_overrides(args: argparse.Namespace) -> tuple[dict, dict]:
    """(TrainConfig overrides, DataConfig overrides) from parsed args; absent flags are left out."""
    keys = ("epochs", "batch_size", "lr", "momentum", "weight_decay", "optimizer", "scheduler",
            "label_smoothing", "seed", "device", "tta_shift")
    over = {k: getattr(args, k) for k in keys if getattr(args, k, None) is not None}
    data: dict = {}
    if getattr(args, "subset", None) is not None:
        data["subset"] = args.subset
    if getattr(args, "val_size", None) is not None:
        data["val_size"] = args.val_size
    for k in ("aug_kind", "val_source"):
        if getattr(args, k, None) is not None:
            data[k] = getattr(args, k)
    if getattr(args, "augment", None) is not None:
        data["augment"] = args.augment > 0
        data["aug_strength"] = args.augment if args.augment > 0 else 1.0
    return over, data


def final_json(result: Any, run_id: str | None, params: int, wall_s: float) -> dict:
    return {"status": result.status, "message": result.message, "test_acc": result.test_acc,
            "test_loss": result.test_loss, "best_val_acc": result.best_val_acc, "epochs": result.epochs_done,
            "steps": result.step, "wall_s": round(wall_s, 3), "train_s": round(result.train_s, 3),
            "params": params, "run_id": run_id}
