"""Process jobs (`JobManager(workers="process")`, what the app runs): each job trains in a process of its own
(`cnnlab.jobs.child`), real MNIST subsets, a real run store; the parent relays controls and records."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from cnnlab.data import DataConfig
from cnnlab.errors import ConfigError
from cnnlab.jobs import FINAL, JobManager
from cnnlab.models import build_model
from cnnlab.plan import plan_run
from cnnlab.runs import RunStore
from cnnlab.runs.liveness import pid_alive

from test_jobs import TINY, cfg  # the job tests' tiny net and recipe

REPO = Path(__file__).resolve().parents[1]


def wait_for(pred, timeout: float = 120.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.01)


def kinds(recs: list[dict], kind: str) -> list[dict]:
    return [r for r in recs if r.get("kind") == kind]


@pytest.fixture
def store(tmp_path) -> RunStore:
    return RunStore(tmp_path / "runs")


@pytest.fixture
def pmgr(store):
    m = JobManager(store, max_concurrent=2, workers="process", threads=1)
    yield m
    m.shutdown(wait=20)


def test_a_process_job_trains_in_its_own_process_and_its_view_matches_the_store(pmgr, store) -> None:
    rid = pmgr.submit("tiny", plan_run(TINY, cfg()))
    view = pmgr.wait(rid, timeout=300)
    assert view.status == "done", view.message
    assert view.test_acc is not None and view.test_acc > 0.5
    status = store.get(rid).status
    assert status["status"] == "done" and status["pid"] != os.getpid()  # written by the training process
    recs = view.records_since(0)[0]
    disk = store.get(rid).read_metrics()
    assert [r["step"] for r in kinds(recs, "step")] == [r["step"] for r in kinds(disk, "step")]
    assert [r["epoch"] for r in kinds(recs, "epoch")] == [1, 2]
    assert view.epochs_done == 2 and view.step == view.total_steps == 2 * view.steps_per_epoch


def test_pause_weights_live_change_and_stop_reach_the_training_process(pmgr, store) -> None:
    rid = pmgr.submit("tiny", plan_run(TINY, cfg(epochs=50)))
    view = pmgr.get(rid)
    wait_for(lambda: view.step > 3, what="first steps")
    pmgr.pause(rid)
    wait_for(lambda: view.status == "paused", what="paused")
    weights = pmgr.weights_copy(rid)  # the Draw page's live model
    expected = build_model(TINY).state_dict()
    assert weights is not None and set(weights) == set(expected)
    assert all(weights[k].shape == expected[k].shape for k in expected)
    pmgr.set_live(rid, lr=0.0123, momentum=0.5)
    assert view.live_values()["lr"] == pytest.approx(0.0123)  # shown at once, applied at the next step
    pmgr.unpause(rid)
    wait_for(lambda: len(kinds(view.records_since(0)[0], "event")) >= 4, what="set events")
    events = kinds(view.records_since(0)[0], "event")
    sets = {e["field"]: e["new"] for e in events if e["event"] == "set"}
    assert sets == {"lr": pytest.approx(0.0123), "momentum": pytest.approx(0.5)}
    assert [e["event"] for e in events][:2] == ["pause", "resume"]
    assert view.live_values()["momentum"] == pytest.approx(0.5)
    pmgr.stop(rid)
    assert pmgr.wait(rid, timeout=120).status == "stopped"
    assert store.get(rid).status["status"] == "stopped"
    assert pmgr.weights_copy(rid) is None


def test_stop_after_the_epoch_then_resume_in_a_new_process_continues_the_run(pmgr, store) -> None:
    rid = pmgr.submit("tiny", plan_run(TINY, cfg(epochs=3, data=DataConfig(subset=4096, val_size=500))))
    view = pmgr.get(rid)
    wait_for(lambda: view.step > 2, what="first steps")
    pmgr.pause(rid)  # within epoch 1 (128 steps of a few ms; a request reaches the process in a few of them)
    wait_for(lambda: view.status == "paused", what="paused")
    assert 0 < view.step < view.steps_per_epoch
    pmgr.stop(rid, after_epoch=True)
    pmgr.unpause(rid)
    view = pmgr.wait(rid, timeout=120)
    assert view.status == "stopped" and view.epochs_done == 1
    assert store.get(rid).has_checkpoint("last")
    pmgr.resume(rid)
    view = pmgr.wait(rid, timeout=300)
    assert view.status == "done", view.message
    recs = store.get(rid).read_metrics()
    assert [r["epoch"] for r in kinds(recs, "epoch")] == [1, 2, 3]
    steps = [r["step"] for r in kinds(recs, "step")]
    assert steps == sorted(set(steps))  # continued after epoch 1, nothing trained twice
    assert any(e.get("event") == "resumed" for e in store.get(rid).read_events())


def test_a_killed_training_process_fails_its_job_with_a_message_and_others_keep_training(pmgr, store) -> None:
    victim = pmgr.submit("tiny", plan_run(TINY, cfg(epochs=50)))
    other = pmgr.submit("tiny", plan_run(TINY, cfg(epochs=2)))
    view = pmgr.get(victim)
    wait_for(lambda: view.step > 2, what="first steps")
    os.kill(store.get(victim).status["pid"], signal.SIGKILL)
    view = pmgr.wait(victim, timeout=60)
    assert view.status == "failed" and "ended unexpectedly" in view.message and "resume" in view.message
    assert store.get(victim).status["status"] == "failed"
    assert pmgr.wait(other, timeout=300).status == "done"


def test_a_failure_inside_the_training_process_reaches_the_view_with_its_traceback(store, tmp_path,
                                                                                  monkeypatch) -> None:
    monkeypatch.setenv("CNNLAB_DATA_DIR", str(tmp_path / "no-data"))  # the child inherits it: no MNIST there
    m = JobManager(store, workers="process", threads=1)
    try:
        rid = m.submit("tiny", plan_run(TINY, cfg()))
        view = m.wait(rid, timeout=120)
    finally:
        m.shutdown(wait=10)
    assert view.status == "failed"
    assert view.message.startswith("MNIST is not available"), view.message
    assert "Traceback" in view.traceback and "load_mnist" in view.traceback  # the child's own traceback
    assert store.get(rid).status["status"] == "failed"


def test_the_training_process_dies_with_its_parent(tmp_path) -> None:
    script = textwrap.dedent(f"""
        import os, signal, sys, time
        sys.path.insert(0, {str(REPO)!r})
        from cnnlab.data import DataConfig
        from cnnlab.plan import plan_run
        from cnnlab.recipe import TrainConfig
        from cnnlab.jobs import JobManager
        from cnnlab.runs import RunStore
        store = RunStore({str(tmp_path / 'runs')!r})
        m = JobManager(store, workers="process", threads=1)
        cfg = TrainConfig(optimizer="sgd", lr=0.05, batch_size=32, epochs=500, device="cpu",
                          data=DataConfig(subset=512, val_size=500))
        rid = m.submit("tiny", plan_run({TINY!r}, cfg))
        v = m.get(rid)
        while v.step < 3:
            time.sleep(0.01)
        print(store.get(rid).status["pid"], rid, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert out.returncode == -signal.SIGKILL, out.stderr
    child_pid, rid = out.stdout.split()
    wait_for(lambda: not pid_alive(int(child_pid)), timeout=30, what="the orphaned training process to end")
    assert RunStore(tmp_path / "runs").get(rid).info().status == "interrupted"


def test_bad_worker_settings_are_refused_with_a_message(store, mnist, monkeypatch) -> None:
    with pytest.raises(ConfigError, match="workers"):
        JobManager(store, workers="fiber")
    with pytest.raises(ConfigError, match="loads MNIST itself"):
        JobManager(store, workers="process", mnist_loader=lambda: mnist)
    from cnnlab import settings

    monkeypatch.setenv("CNNLAB_JOB_WORKERS", "gpu")
    with pytest.raises(ConfigError, match="process or thread"):
        settings.job_workers()
    assert FINAL  # the shared status list the views use
