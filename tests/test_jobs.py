"""Job manager: real threads training on real MNIST subsets, a real run store under tmp_path."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
import torch

from cnnlab.data import DataConfig, load_mnist
from cnnlab.errors import ConfigError, LabError
from cnnlab.jobs import FINAL, JobManager, threads_per_job
from cnnlab.plan import plan_run
from cnnlab.recipe import TrainConfig
from cnnlab.runs import RunStore
from cnnlab.runs.records import merge_records

# a ~3k-parameter net: steps take milliseconds, so tests measure the manager, not the model
TINY = [{"type": "conv", "out": 8, "k": 3, "stride": 2}, {"type": "relu"}, {"type": "maxpool", "k": 2},
        {"type": "flatten"}, {"type": "linear", "out": 10}]


def cfg(**kw) -> TrainConfig:
    base = dict(optimizer="sgd", lr=0.05, momentum=0.9, batch_size=32, epochs=2, device="cpu",
                eval_batch_size=2000, data=DataConfig(subset=512, val_size=500))
    base.update(kw)
    return TrainConfig(**base)


def wait_for(pred, timeout: float = 60.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.005)


def steps(recs: list[dict]) -> list[dict]:
    return [r for r in recs if r.get("kind") == "step"]


def events(recs: list[dict], name: str | None = None) -> list[dict]:
    return [r for r in recs if r.get("kind") == "event" and (name is None or r.get("event") == name)]


@pytest.fixture
def store(tmp_path) -> RunStore:
    return RunStore(tmp_path / "runs")


@pytest.fixture
def mgr(store, mnist):
    m = JobManager(store, max_concurrent=2, mnist_loader=lambda: mnist)
    yield m
    m.shutdown(wait=10)


def test_thread_budget_shares_the_cores_among_running_jobs(mgr) -> None:
    assert threads_per_job(1, cores=2) == 2 and threads_per_job(2, cores=2) == 1
    assert threads_per_job(2, cores=16) == 8 and threads_per_job(4, cores=2) == 1
    cores = threads_per_job(1)
    first = mgr.submit("tiny", plan_run(TINY, cfg(epochs=500)), name="alone")
    job = mgr._jobs[first]
    wait_for(lambda: mgr.get(first).step > 2, what="the first job")
    assert job.threads == cores  # alone: every core, like the CLI
    second = mgr.submit("tiny", plan_run(TINY, cfg(epochs=500)), name="second")
    wait_for(lambda: mgr.get(second).step > 2, what="the second job")
    s = mgr.get(first).step
    wait_for(lambda: mgr.get(first).step > s + 1, what="the first job's next steps")
    assert job.threads == mgr._jobs[second].threads == max(1, cores // 2)
    mgr.stop(second)
    wait_for(lambda: mgr.get(second).status in FINAL, what="stop")
    s = mgr.get(first).step
    wait_for(lambda: mgr.get(first).step > s + 1, what="the first job's next steps")
    assert job.threads == cores  # the budget follows the running count back up
    mgr.stop(first)


def test_cnnlab_threads_fixes_each_jobs_thread_count(store, mnist, monkeypatch) -> None:
    monkeypatch.setenv("CNNLAB_THREADS", "1")
    m = JobManager(store, mnist_loader=lambda: mnist)
    try:
        rid = m.submit("tiny", plan_run(TINY, cfg(epochs=500)))
        wait_for(lambda: m.get(rid).step > 2, what="the job's first steps")
        assert m._jobs[rid].threads == 1  # alone, yet one thread: the machine is shared
    finally:
        m.shutdown()
    monkeypatch.setenv("CNNLAB_THREADS", "two")
    with pytest.raises(ConfigError, match="CNNLAB_THREADS.*whole number"):
        JobManager(store)


def test_submit_validates_before_queueing(mgr, store) -> None:
    with pytest.raises(ConfigError) as exc:
        mgr.submit("tiny", plan_run(TINY, cfg(lr=-1.0)))
    assert exc.value.field == "lr"
    with pytest.raises(LabError):
        mgr.submit("tiny", plan_run([{"type": "linear", "out": 10}], cfg()))  # no flatten: shapes do not fit
    assert store.list_runs() == [] and mgr.jobs() == []


def test_pause_freezes_steps_until_unpause_and_stop_is_fast(mgr, store) -> None:
    rid = mgr.submit("tiny", plan_run(TINY, cfg(epochs=500)))
    v = mgr.get(rid)
    wait_for(lambda: v.step >= 3, what="a few steps")
    mgr.pause(rid)
    wait_for(lambda: v.status == "paused", 5, "paused")
    frozen = v.step
    assert store.get(rid).status["status"] == "paused"
    time.sleep(0.5)
    assert v.step == frozen and v.status == "paused"
    mgr.unpause(rid)
    wait_for(lambda: v.step > frozen, 10, "steps after unpause")
    assert v.status == "running"
    at = v.step
    mgr.stop(rid)
    wait_for(lambda: v.status in FINAL, 60, "stop")
    assert v.status == "stopped"
    recs, _ = v.records_since(0)
    assert events(recs, "stop")[0]["step"] <= at + 2  # the next step boundary (the view may lag one step)
    assert [e["event"] for e in events(recs)] == ["pause", "resume", "stop"]
    assert events(recs, "pause")[0]["step"] == frozen
    assert [e["event"] for e in store.get(rid).read_events()] == ["pause", "resume", "stop"]
    assert store.get(rid).status["status"] == "stopped" and rid not in mgr.live_ids()
    with pytest.raises(LabError):
        mgr.pause(rid)  # finished: nothing to pause


def test_live_lr_reaches_optimizer_at_next_step_and_scheduler_keeps_its_shape(mgr, store) -> None:
    rid = mgr.submit("tiny", plan_run(TINY, cfg(epochs=500, scheduler="step", step_size=1, gamma=0.5)))
    v = mgr.get(rid)
    wait_for(lambda: v.step >= 2, what="steps")
    mgr.pause(rid)
    wait_for(lambda: v.status == "paused", 5, "paused")
    s = v.step
    opt = mgr._jobs[rid].trainer.optimizer  # the optimizer is not part of the view; tests may look
    before = opt.param_groups[0]["lr"]
    mgr.set_live(rid, lr=0.02, momentum=0.5)
    assert v.live_values()["lr"] == 0.02 and v.live_values()["momentum"] == 0.5
    assert opt.param_groups[0]["lr"] == before  # applied at the next step, not before
    with pytest.raises(ConfigError):
        mgr.set_live(rid, lr=-1.0)
    with pytest.raises(ConfigError):
        mgr.set_live(rid, lr=float("nan"))
    with pytest.raises(ConfigError):
        mgr.set_live(rid, batch_size=8)
    mgr.unpause(rid)
    wait_for(lambda: v.step >= s + 1, 10, "the next step")
    mgr.pause(rid)
    wait_for(lambda: v.status == "paused", 5, "paused again")
    recs, _ = v.records_since(0)
    by_step = {r["step"]: r for r in steps(recs)}
    assert by_step[s + 1]["lr"] == pytest.approx(0.02)
    assert opt.param_groups[0]["lr"] == pytest.approx(by_step[max(by_step)]["lr"])
    assert opt.param_groups[0]["momentum"] == 0.5
    sets = {e["field"]: e for e in events(recs, "set")}
    ev = sets["lr"]
    assert ev["step"] == s and ev["epoch"] == by_step[s + 1]["epoch"] and ev["new"] == 0.02
    assert ev["old"] == pytest.approx(0.05 * 0.5 ** (ev["epoch"] - 1))
    assert sets["momentum"]["old"] == 0.9 and sets["momentum"]["new"] == 0.5
    # the StepLR drop still happens, relative to the live value
    e0 = ev["epoch"]
    mgr.unpause(rid)
    wait_for(lambda: v.epoch >= e0 + 1 and v.step % v.steps_per_epoch >= 2, 30, "the next epoch")
    mgr.stop(rid)
    wait_for(lambda: v.status in FINAL, 5, "stop")
    for r in steps(v.records_since(0)[0]):
        if r["step"] > s:
            assert r["lr"] == pytest.approx(0.02 * 0.5 ** (r["epoch"] - e0)), r
    stored = [e for e in store.get(rid).read_events() if e["event"] == "set"]
    assert {(e["field"], e["new"], e["step"]) for e in stored} == {("lr", 0.02, s), ("momentum", 0.5, s)}


def test_two_jobs_run_at_once_and_the_others_wait_in_order(mgr, store) -> None:
    ids = [mgr.submit("tiny", plan_run(TINY, cfg(epochs=500)), name=f"job {i}") for i in range(4)]
    views = [mgr.get(i) for i in ids]
    wait_for(lambda: views[0].step > 0 and views[1].step > 0, what="two running jobs")
    s0, s1 = views[0].step, views[1].step
    wait_for(lambda: views[0].step > s0 and views[1].step > s1, 10, "both advancing")
    assert [v.status for v in views[2:]] == ["queued", "queued"] and views[2].step == 0
    assert mgr.live_ids() == set(ids)
    listed = {i.id: i.status for i in mgr.list_runs()}
    assert [listed[i] for i in ids] == ["running", "running", "queued", "queued"]
    mgr.stop(ids[0])
    wait_for(lambda: views[2].step > 0, 30, "the third job to start")
    assert views[3].status == "queued"  # FIFO: the fourth still waits
    mgr.stop(ids[3])  # a queued job leaves the queue at once
    assert views[3].status == "stopped" and store.get(ids[3]).status["status"] == "stopped"
    mgr.stop(ids[1])
    mgr.stop(ids[2])
    wait_for(lambda: all(v.status in FINAL for v in views), 10, "all stopped")
    assert [v.status for v in views] == ["stopped"] * 4 and views[3].step == 0
    assert [v.id for v in mgr.jobs()] == ids[::-1]
    assert {i.id: i.status for i in mgr.list_runs()} == dict.fromkeys(ids, "stopped")


def test_diverging_job_ends_diverged_while_another_finishes_and_readers_agree(mgr, store) -> None:
    bad = mgr.submit("tiny", plan_run(TINY, cfg(lr=10.0, epochs=3)))
    good = mgr.submit("tiny", plan_run(TINY, cfg(epochs=2)))
    gv = mgr.get(good)
    seen: dict[int, list[dict]] = {}

    def reader(n: int, every: float) -> None:
        out, k = [], 0
        while True:
            final = gv.status in FINAL
            recs, k = gv.records_since(k)
            out += recs
            if final:
                break
            time.sleep(every)
        seen[n] = out

    readers = [threading.Thread(target=reader, args=(n, every)) for n, every in enumerate((0.001, 0.03, 0.2))]
    for t in readers:
        t.start()
    bv = mgr.wait(bad, 60)
    assert bv.status == "diverged" and "diverged" in bv.message and "learning rate" in bv.message
    assert events(bv.records_since(0)[0], "diverged")
    assert store.get(bad).status["status"] == "diverged" and store.get(bad).status["message"] == bv.message
    assert mgr.wait(good, 60).status == "done"
    for t in readers:
        t.join(10)
    full, n = gv.records_since(0)
    assert seen[0] == seen[1] == seen[2] == full and n == len(full)
    assert [r["step"] for r in steps(full)] == list(range(1, 33))
    assert [r["epoch"] for r in full if r["kind"] == "epoch"] == [1, 2]
    assert gv.records_since(n) == ([], n)
    res = gv.result()
    assert res.status == "done" and gv.test_acc == res.test_acc > 0.3
    assert store.get(good).result["test_acc"] == res.test_acc


def test_jobs_that_raise_fail_with_their_traceback_and_the_queue_goes_on(tmp_path, store, mnist) -> None:
    calls = []

    def loader():
        calls.append(1)
        if len(calls) == 1:  # the first job finds no MNIST
            return load_mnist(tmp_path / "no-mnist-here", download=False)
        return mnist

    m = JobManager(store, max_concurrent=1, mnist_loader=loader)
    try:
        a = m.submit("tiny", plan_run(TINY, cfg(epochs=1)))
        b = m.submit("tiny", plan_run(TINY, cfg(epochs=1)), init_weights={"0_conv.weight": torch.zeros(3)})
        c = m.submit("tiny", plan_run(TINY, cfg(epochs=1)))
        assert m.wait(c, 60).status == "done"
        av, bv = m.get(a), m.get(b)
        assert av.status == "failed" and "MNIST is not available" in av.message
        assert "DataMissingError" in av.traceback and "Traceback" in av.traceback
        assert bv.status == "failed" and "do not fit" in bv.message and "CheckpointError" in bv.traceback
        st = store.get(a).status
        assert st["status"] == "failed" and "DataMissingError" in st["traceback"]
        assert av.result().status == "failed"
        # resuming a run whose last.pt is damaged fails the job (with the file named), not the manager
        d = store.create({"preset": "tiny", "spec": TINY, "recipe": cfg(epochs=1).to_dict()})
        d.write_status(status="stopped", epoch=1)
        (d.path / "last.pt").write_bytes(b"not a checkpoint")
        assert m.resume(d.id) == d.id
        dv = m.wait(d.id, 30)
        assert dv.status == "failed" and "last.pt" in dv.message and "CheckpointError" in dv.traceback
        assert m.live_ids() == set()
    finally:
        m.shutdown()


def test_a_started_job_says_what_it_does_until_its_first_step(store, mnist) -> None:
    from cnnlab import trainform as tf
    from cnnlab.jobs import PHASES

    gate, calls = threading.Event(), []

    def loader():  # the real data, held back until the test has looked at the page's line
        calls.append(threading.current_thread().name)
        gate.wait(30)
        return mnist

    m = JobManager(store, max_concurrent=1, mnist_loader=loader)
    try:
        preload = m.preload_data()  # the app loads the data at start, in the background
        wait_for(lambda: calls, what="the preload to call the loader")
        rid = m.submit("tiny", plan_run(TINY, cfg(epochs=1)))
        view = m.get(rid)
        wait_for(lambda: view.phase == PHASES["data"], what="the loading phase")
        level, line = tf.status_line(view)
        assert level == "info" and line.startswith("Starting… loading MNIST into memory"), line
        gate.set()
        preload.join(10)
        assert not preload.is_alive() and calls[0] == "cnnlab-preload-mnist"
        wait_for(lambda: view.step > 0, what="the first step")
        assert view.phase == "" and tf.status_line(view)[1].startswith("Training…")
        assert m.wait(rid, 60).status == "done" and view.phase == ""
    finally:
        gate.set()
        m.shutdown()


def test_fork_starts_from_the_parents_epoch_weights_and_records_its_parent(store, mnist) -> None:
    m = JobManager(store, max_concurrent=1, mnist_loader=lambda: mnist)
    try:
        p = m.submit("tiny", plan_run(TINY, cfg(epochs=500)), name="parent")
        pv = m.get(p)
        wait_for(lambda: pv.epochs_done >= 1, what="the parent's first epoch")
        with pytest.raises(ConfigError):
            m.fork(p, epoch=1, overrides={"epochs": 1})  # must go past the fork point
        with pytest.raises(LabError, match="saved epochs"):
            m.fork(p, epoch=400, overrides={"epochs": 401})
        c = m.fork(p, epoch=1, overrides={"lr": 0.01, "epochs": 3, "data": {"subset": 512}})
        m.pause(c)  # still queued behind the parent: it will pause before its first step
        cv = m.get(c)
        assert cv.status == "queued" and cv.parent == {"run_id": p, "epoch": 1}
        m.stop(p)
        wait_for(lambda: cv.status == "paused", 30, "the fork to start paused")
        start = m.weights_copy(c)
        saved = store.get(p).load_checkpoint("epoch_1")["model"]
        assert saved.keys() == start.keys()
        assert all(torch.equal(saved[k], start[k]) for k in saved)
        assert cv.step == 16 and cv.epochs_done == 1
        m.unpause(c)
        assert m.wait(c, 60).status == "done"
        recs = cv.records_since(0)[0]
        assert steps(recs)[0]["step"] == 17 and steps(recs)[0]["epoch"] == 2 and steps(recs)[0]["lr"] == 0.01
        assert [r["epoch"] for r in recs if r["kind"] == "epoch"] == [2, 3]
        child = store.get(c)
        assert child.config["parent"] == {"run_id": p, "epoch": 1} and child.config["recipe"]["lr"] == 0.01
        info = {i.id: i for i in m.list_runs()}
        assert info[c].parent == {"run_id": p, "epoch": 1} and info[c].status == "done"
        assert child.epoch_checkpoints() == [2, 3]
    finally:
        m.shutdown()


def test_resume_continues_the_numbering_and_reproduces_the_uninterrupted_curve(store, mnist) -> None:
    # bit-for-bit equality needs equal intra-op thread counts (oneDNN splits reductions by thread):
    # pin them, since by default a lone job gets 2 threads and two concurrent jobs 1 each
    mgr = JobManager(store, max_concurrent=2, mnist_loader=lambda: mnist, threads=1)
    # 64 steps an epoch: room to stop the third run mid-epoch 2 even when this test thread is starved
    recipe = dict(optimizer="adam", lr=2e-3, epochs=2, batch_size=16, data=DataConfig(subset=1024, val_size=500))
    straight = mgr.submit("tiny", plan_run(TINY, cfg(**recipe)))
    at_boundary = mgr.submit("tiny", plan_run(TINY, cfg(**recipe)))
    mgr.stop(at_boundary, after_epoch=True)  # finishes and saves epoch 1, then stops
    assert mgr.wait(straight, 60).status == "done"
    assert mgr.wait(at_boundary, 60).status == "stopped"
    mid = mgr.submit("tiny", plan_run(TINY, cfg(**recipe)))
    mv = mgr.get(mid)
    wait_for(lambda: mv.step > 66, 60, "a few steps of epoch 2")
    mgr.stop(mid)  # mid-epoch: the partial epoch is dropped on resume
    assert mgr.wait(mid, 10).status == "stopped" and mv.step < 128
    assert store.get(mid).status["epoch"] == 1
    with pytest.raises(LabError, match="done"):
        mgr.resume(straight)
    for rid in (at_boundary, mid):
        assert mgr.resume(rid) == rid
    with pytest.raises(LabError, match="already"):
        mgr.resume(mid)
    for rid in (at_boundary, mid):
        assert mgr.wait(rid, 60).status == "done"

    def curve(rid: str) -> tuple[list, list]:
        recs = mgr.get(rid).records_since(0)[0]
        st = [(r["step"], r["epoch"], r["loss"], r["acc"], r["lr"]) for r in steps(recs)]
        ep = [(r["epoch"], r["step"], r["train_loss"], r["val_loss"], r["val_acc"]) for r in recs if r["kind"] == "epoch"]
        return st, ep

    ref = curve(straight)
    assert [s[0] for s in ref[0]] == list(range(1, 129))
    for rid in (at_boundary, mid):
        assert curve(rid) == ref
        assert mgr.get(rid).test_acc == mgr.get(straight).test_acc
        assert [e["event"] for e in events(mgr.get(rid).records_since(0)[0])][-1] == "resumed"
        stored = store.get(rid).read_metrics()
        assert [r["step"] for r in steps(stored)] == list(range(1, 129))  # no repeated steps on disk
        assert merge_records(stored, [])[-1]["kind"] == "epoch"
        assert store.get(rid).result["test_acc"] == mgr.get(rid).test_acc
    mgr.shutdown()


def test_a_normal_exit_stops_running_jobs_cleanly(tmp_path) -> None:
    """A process that exits (e.g. streamlit run getting SIGTERM) stops its jobs instead of aborting in torch."""
    import json
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(Path(__file__).resolve().parents[1])!r})
        from cnnlab.data import DataConfig
        from cnnlab.jobs import JobManager
        from cnnlab.plan import plan_run
        from cnnlab.recipe import TrainConfig
        from cnnlab.runs import RunStore
        m = JobManager(RunStore({str(tmp_path / "runs")!r})).stop_on_exit()
        spec = {TINY!r}
        cfg = TrainConfig(optimizer="sgd", lr=0.05, batch_size=32, epochs=500, device="cpu",
                          data=DataConfig(subset=512, val_size=500))
        rid = m.submit("tiny", plan_run(spec, cfg))
        while m.get(rid).step < 5:
            time.sleep(0.01)
        print(rid, flush=True)
        sys.exit(0)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rid = proc.stdout.split()[-1]
    status = json.loads((tmp_path / "runs" / rid / "status.json").read_text())
    assert status["status"] == "stopped" and "shut down" in status["message"]
    assert RunStore(tmp_path / "runs").get(rid).read_events()[-1]["event"] == "stop"


def test_a_cli_run_resumes_in_the_app_with_the_live_values_it_trained_with(mgr, store, mnist) -> None:
    """The CLI's Trainer and the app's jobs start LiveParams in one place: augmentation off reads 0 in both."""
    from cnnlab.control import Control, LiveParams
    from cnnlab.engine import Trainer
    from cnnlab.recorder import RunRecorder, create_run

    c = cfg(epochs=2)  # augmentation off (its strength field keeps its default, 1.0)
    run = create_run(store, "tiny", plan_run(TINY, c), source="cli")
    control = Control()  # what `python -m cnnlab train` does: no LiveParams of its own
    control.stop_after_epoch.set()
    result = Trainer(plan_run(TINY, c), mnist, control=control, callbacks=[RunRecorder(run)]).run()
    assert result.status == "stopped" and result.epochs_done == 1
    assert control.live.snapshot() == LiveParams.from_config(c).snapshot()
    assert control.live.snapshot()["aug_strength"] == 0.0
    rid = mgr.resume(run.id)
    view = mgr.wait(rid, 60)
    assert view.status == "done"
    assert view.live_values()["aug_strength"] == 0.0  # was 1.0: the CLI had started it unlike the app
    assert view.live_values() == {**LiveParams.from_config(c).snapshot(), "epochs": 2}
