"""The training process of one app job: `python -m cnnlab.jobs.child FD [--preload]`.

`JobManager(workers="process")` (what the app uses) trains each job here instead of in a thread of the
Streamlit server, so a job trains like `python -m cnnlab train`: in a process's main thread, with its
own GIL and its own OpenMP pool. In a server thread a seed002 step ran at 0.82 of the CLI's rate with no
page open (OpenMP's idle workers spin less once a process holds more than one pool of them; the pages'
script runs take the GIL) and 0.64 with the Train page open.

FD is this end of a socket pair (a `multiprocessing.connection.Connection`). The parent sends one
payload (the run folder, the validated `RunPlan`, which this side trusts, live values, thread count; the
weights of a fork; whether to resume from last.pt), then commands: `("pause", bool)`, `("stop",)`,
`("stop_epoch",)`, `("live", {field: value})`, `("threads", n)`, `("weights", request_id)`. This process
writes the run's files (`RunRecorder`) and sends back what the job's view shows: `("phase", key)`,
`("start", counters)`, `("recs", [(hook, rec), ...], live values)` (batched, at most every
`SEND_EVERY_S`), `("end", TrainResult fields)`, `("error", message, traceback)`, `("weights", request_id,
bytes | None)`. The parent holds the run's writer lock.

It dies with its parent (PR_SET_PDEATHSIG, and the end of the pipe) and ignores SIGINT/SIGTERM sent to
the process group: the parent stops it at a step boundary, the way a thread job stops.
"""

from __future__ import annotations

import dataclasses
import io
import os
import signal
import sys
import threading
import time
import traceback
from multiprocessing.connection import Connection
from typing import Any, Callable

SEND_EVERY_S = 0.05  # step records are batched: a pipe write per step would cost the loop more than it needs


def _die_with_parent() -> None:
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the closed pipe still ends it
        pass
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def counters(trainer: Any) -> dict:
    """What the job's view copies from a trainer when it starts and after each epoch."""
    return {"epoch": trainer.epoch, "step": trainer.step, "steps_per_epoch": trainer.steps_per_epoch,
            "total_steps": trainer.total_steps, "epochs": trainer.epochs, "best_val_acc": trainer.best_val_acc}


def _relay_class():
    from ..callbacks import Callback

    class Relay(Callback):
        """Last callback: sends the records (after the recorder persisted them) and the status to the parent."""

        def __init__(self, send: Callable[[tuple], None]):
            self.send = send
            self.buf: list[tuple[str, dict]] = []
            self.last = time.monotonic()

        def flush(self, trainer: Any) -> None:
            if self.buf:
                self.send(("recs", self.buf, trainer.live.snapshot(), counters(trainer)))
                self.buf = []
            self.last = time.monotonic()

        def on_start(self, trainer: Any) -> None:
            self.send(("start", counters(trainer)))

        def on_step(self, trainer: Any, rec: dict) -> None:
            self.buf.append(("step", rec))
            if time.monotonic() - self.last >= SEND_EVERY_S:
                self.flush(trainer)

        def on_health(self, trainer: Any, rec: dict) -> None:
            self.buf.append(("health", rec))

        def on_epoch(self, trainer: Any, rec: dict) -> None:
            self.buf.append(("epoch", rec))
            self.flush(trainer)

        def on_event(self, trainer: Any, rec: dict) -> None:
            self.buf.append(("event", rec))
            self.flush(trainer)

        def on_end(self, trainer: Any, result: Any) -> None:
            self.flush(trainer)
            self.send(("end", dataclasses.asdict(result)))

    return Relay


def _warm_up() -> None:
    """One SGD step of a tiny conv net: the first optimizer imports torch._dynamo (about 3 s here) and the
    first convolution sets oneDNN up, so a spare's job reaches its first step in a fraction of a second."""
    import torch

    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.Flatten(), torch.nn.Linear(4 * 26 * 26, 10))
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    torch.nn.functional.cross_entropy(net(torch.zeros(2, 1, 28, 28)), torch.zeros(2, dtype=torch.long)).backward()
    opt.step()


def main(fd: int, preload: bool) -> int:
    _die_with_parent()
    conn = Connection(fd)
    send_lock = threading.Lock()

    def send(msg: tuple) -> None:
        with send_lock:
            conn.send(msg)

    import torch

    from .. import data as D
    from ..control import Control, LiveParams
    from ..health import LayerHealth
    from ..recorder import RunRecorder
    from ..runs import RunHandle
    from .job import ThreadBudget, build_trainer
    from .process import weights_payload

    from .. import settings

    mnist, loaded_from = None, None
    if preload:  # a spare process: the data is in memory before a job needs it (errors: the job reports them)
        try:
            loaded_from = settings.data_dir()
            mnist = D.load_mnist()
            _warm_up()
        except Exception:  # noqa: BLE001
            mnist = None
    try:
        payload = conn.recv()
    except (EOFError, OSError):  # the parent went away before giving work
        return 0
    for k in [k for k in os.environ if k.startswith("CNNLAB_")]:  # the parent's settings now, not at spawn
        del os.environ[k]
    os.environ.update(payload["env"])
    if loaded_from != settings.data_dir():
        mnist = None
    from pathlib import Path

    threads = [int(payload["threads"] or 0)]
    control = Control(LiveParams(**payload["live"]))
    trainer_box: list[Any] = []

    def commands() -> None:
        while True:
            try:
                msg = conn.recv()
            except (EOFError, OSError):  # the parent died: nothing may outlive it
                os._exit(1)
            kind = msg[0]
            if kind == "pause":
                (control.pause_event.set if msg[1] else control.pause_event.clear)()
            elif kind == "stop":
                control.stop_event.set()
            elif kind == "stop_epoch":
                control.stop_after_epoch.set()
            elif kind == "live":
                control.live.set(**msg[1])
            elif kind == "threads":
                threads[0] = int(msg[1])
            elif kind == "weights":
                try:
                    data = weights_payload(trainer_box[0].weights_copy()) if trainer_box else None
                except Exception:  # noqa: BLE001 - the page falls back to the saved checkpoint
                    data = None
                send(("weights", msg[1], data))

    threading.Thread(target=commands, name="cnnlab-child-commands", daemon=True).start()
    try:
        if threads[0]:
            torch.set_num_threads(threads[0])
        handle = RunHandle(Path(payload["run_dir"]))
        if mnist is None:
            send(("phase", "data"))
            mnist = D.load_mnist()
        resume_state = None
        if payload["resume"]:
            send(("phase", "resume"))
            resume_state = handle.load_checkpoint("last")
        init = payload.get("init_weights")
        init_weights = torch.load(io.BytesIO(init), weights_only=True) if init else None
        send(("phase", "model"))
        budget = ThreadBudget(lambda: threads[0])
        trainer = build_trainer(payload["plan"], mnist, control=control, resume_state=resume_state,
                                init_weights=init_weights, start_epoch=int(payload["start_epoch"]),
                                callbacks=[RunRecorder(handle), LayerHealth(), budget, _relay_class()(send)])
        trainer_box.append(trainer)
        send(("phase", "steps"))
        trainer.run()
    except BaseException as exc:  # noqa: BLE001 - the parent turns it into the job's failed status
        from ..errors import LabError

        message = str(exc) if isinstance(exc, LabError) else f"{type(exc).__name__}: {exc}"
        try:
            send(("error", message, traceback.format_exc()))
        except OSError:
            return 1
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]), "--preload" in sys.argv[2:]))
