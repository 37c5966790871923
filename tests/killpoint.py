"""Train a tiny run and SIGKILL this very process at one write point of one epoch (fault tests).

    python tests/killpoint.py STORE POINT EPOCH EPOCHS

POINT is `during:<file>` (half of the file's temp copy written, then killed: what a kill mid-write leaves)
or `after:<file>` (killed right after the file is complete), for a file the epoch-end writes atomically:
epoch_<EPOCH>.pt, best.pt, last.pt, status.json. The kill is real (SIGKILL, no cleanup, no finally);
only the moment is chosen. Prints the run id on its first line before training.
"""

from __future__ import annotations

import io
import os
import signal
import sys
import tempfile
from pathlib import Path

from cnnlab import fsutil
from cnnlab.jobs import JobManager
from cnnlab.plan import plan_run
from cnnlab.recorder import RunRecorder
from cnnlab.runs import RunStore

from test_jobs import TINY, cfg


def main() -> None:
    store, point, epoch, epochs = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    when, target = point.split(":", 1)
    state = {"epoch": None}
    real_write, real_on_epoch = fsutil._atomic_write, RunRecorder.on_epoch

    def on_epoch(self, trainer, rec):
        state["epoch"] = rec["epoch"]
        try:
            real_on_epoch(self, trainer, rec)
        finally:
            state["epoch"] = None

    def atomic_write(path, write):
        path = Path(path)
        if state["epoch"] != epoch or path.name != target:
            return real_write(path, write)
        if when == "after":
            real_write(path, write)
        else:  # during: the temp file holds half the bytes when the process dies
            buf = io.BytesIO()
            write(buf)
            fd, _ = tempfile.mkstemp(prefix=fsutil.TMP_PREFIX + path.name + ".", dir=path.parent)
            os.write(fd, buf.getvalue()[: max(1, len(buf.getvalue()) // 2)])
            os.fsync(fd)
        os.kill(os.getpid(), signal.SIGKILL)

    fsutil._atomic_write = atomic_write
    RunRecorder.on_epoch = on_epoch
    mgr = JobManager(RunStore(Path(store)), max_concurrent=1, threads=1)
    rid = mgr.submit("tiny", plan_run(TINY, cfg(epochs=epochs)))
    print(rid, flush=True)
    mgr.wait(rid)
    sys.exit(f"the kill point {point} of epoch {epoch} was never reached")


if __name__ == "__main__":
    main()
