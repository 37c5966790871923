"""Ctrl-C during `python -m cnnlab train`, in a real subprocess sent real SIGINTs: the first press finishes
the epoch in progress (like the Train page's "Stop after this epoch"), a second one stops now ("Stop now")."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cnnlab.runs import RunStore, read_jsonl

ROOT = Path(__file__).resolve().parents[1]
TINY_ARCH = "conv out=8 k=3 stride=2\nrelu\nmaxpool k=2\nflatten\nlinear out=10\n"  # test_jobs.TINY as text
FINISHING = re.compile(r"finishing epoch (\d+); Ctrl-C again to stop now")


@pytest.fixture
def store() -> Path:
    return Path(os.environ["CNNLAB_CHECKPOINT_DIR"])  # conftest: a fresh folder per test


@pytest.fixture
def start_training(store, tmp_path):
    """start(subset) -> (process, its stderr file): a 1000-epoch CLI run of the tiny net on `subset` images
    (32 a step). The process is killed at the end of the test whatever happened."""
    procs: list[subprocess.Popen] = []

    def start(subset: int) -> tuple[subprocess.Popen, Path]:
        arch = tmp_path / "tiny.txt"
        arch.write_text(TINY_ARCH)
        err = tmp_path / "stderr.txt"
        env = {**os.environ, "CNNLAB_CHECKPOINT_DIR": str(store), "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
        with open(err, "w") as f:
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "cnnlab", "train", "--preset", "fast", "--arch", str(arch), "--subset",
                 str(subset), "--val-size", "500", "--batch-size", "32", "--optimizer", "sgd", "--lr", "0.05",
                 "--epochs", "1000", "--quiet", "--json"], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=f,
                text=True))
        return procs[-1], err

    yield start
    for proc in procs:
        proc.kill()
        proc.communicate()


def wait_for(proc: subprocess.Popen, pred, what: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert proc.poll() is None, f"training ended before {what}"
        assert time.monotonic() < deadline, f"no {what} after {timeout} s"
        time.sleep(0.05)


def run_dir(store: Path) -> Path | None:
    dirs = [p for p in store.glob("*") if p.is_dir() and not p.name.startswith(("_", "."))] if store.exists() else []
    return dirs[0] if dirs else None


def steps(run: Path) -> list[int]:
    return [r["step"] for r in read_jsonl(run / "metrics.jsonl") if r.get("kind") == "step"]


def epochs(run: Path) -> list[int]:
    return [r["epoch"] for r in read_jsonl(run / "metrics.jsonl") if r.get("kind") == "epoch"]


def ctrl_c(proc: subprocess.Popen, err: Path, *, twice: bool) -> tuple[dict, str]:
    """Send Ctrl-C (and, once the first one is answered, a second one); (the final JSON line, stderr)."""
    proc.send_signal(signal.SIGINT)
    if twice:
        wait_for(proc, lambda: FINISHING.search(err.read_text()) is not None, "'finishing epoch' line")
        proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=300)
    text = err.read_text()
    assert proc.returncode == 130, text[-2000:]
    return json.loads(out.strip().splitlines()[-1]), text


def test_first_ctrl_c_finishes_the_epoch_in_progress(store, start_training) -> None:
    proc, err = start_training(2000)  # 63 steps an epoch
    wait_for(proc, lambda: run_dir(store) is not None and (run_dir(store) / "status.json").exists(), "run folder")
    run = run_dir(store)
    wait_for(proc, lambda: len(steps(run)) > 63 + 5, "steps of epoch 2")  # into epoch 2: one epoch is saved
    final, text = ctrl_c(proc, err, twice=False)
    said = FINISHING.search(text)
    assert said, text[-2000:]
    n = int(said.group(1))
    status = json.loads((run / "status.json").read_text())
    assert n >= 2 and status["steps_per_epoch"] == 63
    assert status["status"] == "stopped" and status["message"] == f"stopped by the user after epoch {n}"
    assert epochs(run) == list(range(1, n + 1))  # the epoch in progress was finished, validated and recorded
    assert steps(run) == list(range(1, n * 63 + 1))  # every step of it, and none of the next one
    assert RunStore(store).get(run.name).load_checkpoint("last")["epoch"] == n  # resume continues after it
    assert final["status"] == "stopped" and final["epochs"] == n and final["run_id"] == run.name


def test_second_ctrl_c_stops_now(store, start_training) -> None:
    proc, err = start_training(30000)  # 938 steps an epoch
    wait_for(proc, lambda: run_dir(store) is not None and len(steps(run_dir(store))) > 5, "first steps")
    run = run_dir(store)
    final, text = ctrl_c(proc, err, twice=True)
    assert int(FINISHING.search(text).group(1)) == 1 and "stopping now" in text
    status = json.loads((run / "status.json").read_text())
    assert status["status"] == "stopped" and status["message"].startswith("stopped by the user at step ")
    assert epochs(run) == [] and 5 < len(steps(run)) < 938  # epoch 1 was cut short, not finished
    assert not RunStore(store).get(run.name).has_checkpoint("last")  # nothing of the partial epoch is kept
    assert final["status"] == "stopped" and final["epochs"] == 0
