"""Runs survive everything (issue 11): two processes on one run, kill -9 at each write point of an epoch,
corrupt fork files, a full disk. Real processes are killed for real (tests/killpoint.py picks the moment);
everything trains on real MNIST subsets with the job tests' tiny net."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from cnnlab.errors import LabError
from cnnlab.jobs import JobManager
from cnnlab.plan import plan_run
from cnnlab.runlock import RunBusy
from cnnlab.runs import ImportRefused, RunStore

from test_jobs import TINY, cfg

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def store(tmp_path) -> RunStore:
    return RunStore(tmp_path / "runs")


@pytest.fixture
def mgr(store, mnist):
    m = JobManager(store, max_concurrent=2, mnist_loader=lambda: mnist, threads=1)
    yield m
    m.shutdown(wait=10)


def _env(store: RunStore) -> dict:
    return {**os.environ, "CNNLAB_CHECKPOINT_DIR": str(store.root), "PYTHONPATH": str(ROOT),
            "OMP_NUM_THREADS": "1"}


def killed_run(store: RunStore, point: str, epoch: int, epochs: int) -> str:
    """A tiny run whose process was SIGKILLed at `point` of `epoch` (see tests/killpoint.py); its id."""
    proc = subprocess.run([sys.executable, str(ROOT / "tests" / "killpoint.py"), str(store.root), point,
                           str(epoch), str(epochs)], env=_env(store), capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    return proc.stdout.split()[0]


def steps_of(store: RunStore, rid: str) -> list[int]:
    return [r["step"] for r in store.get(rid).read_metrics() if r.get("kind") == "step"]


# ----------------------------------------------------------------------------- 1: one writer per run


def test_two_processes_resuming_one_run_at_once_only_one_trains(store) -> None:
    rid = killed_run(store, "after:status.json", 1, 1000)  # interrupted after epoch 1 of 1000
    assert store.list_runs()[0].status == "interrupted"
    cmd = [sys.executable, "-m", "cnnlab", "resume", rid, "--json", "--quiet"]
    procs = [subprocess.Popen(cmd, cwd=ROOT, env=_env(store), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    try:
        deadline = time.monotonic() + 300
        while all(p.poll() is None for p in procs):  # the loser ends; the winner trains 1000 epochs
            assert time.monotonic() < deadline, "both processes are still training the run"
            time.sleep(0.05)
        loser = next(p for p in procs if p.poll() is not None)
        winner = next(p for p in procs if p is not loser)
        out, err = loser.communicate()
        assert loser.returncode == 2, (out, err)
        message = f"run {rid} is being trained by process {winner.pid}"
        assert message in err
        assert message in json.loads(out.strip().splitlines()[-1])["message"]
        start = len(steps_of(store, rid))
        while len(steps_of(store, rid)) < start + 2:  # the winner goes on training (few steps: a tiny run ends fast)
            assert winner.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        winner.send_signal(signal.SIGINT)  # Ctrl-C: the CLI stops the run cleanly (resumable)
        winner.communicate(timeout=120)
        assert winner.returncode == 130
    finally:
        for p in procs:
            p.kill()
            p.wait()
    steps = steps_of(store, rid)
    assert steps == list(range(1, len(steps) + 1))  # every step once, in order
    epochs = [r["epoch"] for r in store.get(rid).read_metrics() if r.get("kind") == "epoch"]
    assert epochs == list(range(1, len(epochs) + 1))
    assert [e["event"] for e in store.get(rid).read_events()].count("resumed") == 1
    assert store.get(rid).status["status"] == "stopped"


def test_a_run_trained_here_is_refused_to_other_writers(mgr, store) -> None:
    rid = mgr.submit("tiny", plan_run(TINY, cfg(epochs=1000)))
    other = JobManager(store, max_concurrent=1, threads=1)  # e.g. a second app process on the store
    with pytest.raises(RunBusy, match=f"run {rid} is being trained by process {os.getpid()}"):
        other.resume(rid)
    with pytest.raises(LabError, match="being trained"):
        store.delete(rid, live_ids=set())
    mgr.stop(rid)
    mgr.wait(rid, 60)
    other.resume(rid)  # once the job has let go, any one writer may take over
    other.stop(rid)
    assert other.wait(rid, 60).status == "stopped"
    other.shutdown()


# ----------------------------------------------------------------------------- 2-4: kill -9 at each write point

KILL_POINTS = {  # point of epoch 2 -> the epoch last.pt holds afterwards (what resume continues from)
    "during:epoch_2.pt": 1, "after:epoch_2.pt": 1, "during:last.pt": 1, "after:last.pt": 2,
    "during:status.json": 2,
}


@pytest.mark.parametrize("point", list(KILL_POINTS))
def test_kill_at_each_write_point_then_resume_and_fork_from_every_epoch(mgr, store, point) -> None:
    rid = killed_run(store, point, 2, 3)
    resumable = KILL_POINTS[point]
    (info,) = mgr.list_runs()
    assert info.status == "interrupted"
    assert info.epochs == resumable  # the listing shows what last.pt really holds
    assert store.get(rid).load_checkpoint("last")["epoch"] == resumable

    assert mgr.resume(rid) == rid
    assert mgr.wait(rid, 120).status == "done"
    left = [p.name for p in store.get(rid).path.iterdir() if p.name.startswith(".tmp-")]
    assert left == []  # the killed writer's temp files were swept when the run was reopened
    assert steps_of(store, rid) == list(range(1, 3 * 16 + 1))
    assert mgr.fork_epochs(rid) == [1, 2, 3]
    for k in (1, 2, 3):
        child = mgr.fork(rid, k, {"epochs": k + 1})
        assert mgr.wait(child, 120).status == "done", mgr.get(child).message
        assert store.get(child).config["parent"] == {"run_id": rid, "epoch": k}


# ----------------------------------------------------------------------------- 5: fork past a corrupt epoch file


def test_fork_uses_last_or_best_when_the_epoch_file_is_corrupt(mgr, store) -> None:
    rid = mgr.submit("tiny", plan_run(TINY, cfg(epochs=2)))
    assert mgr.wait(rid, 120).status == "done"
    run = store.get(rid)
    assert run.load_checkpoint("last")["epoch"] == 2
    (run.path / "epoch_2.pt").write_bytes(b"PK\x03\x04 not a checkpoint")
    child = mgr.fork(rid, 2, {"epochs": 3})  # last.pt holds epoch 2 as well
    assert mgr.wait(child, 120).status == "done"
    (run.path / "last.pt").write_bytes(b"")
    (run.path / "best.pt").write_bytes(b"")
    with pytest.raises(LabError, match=r"no weights saved after epoch 2.*epoch_2\.pt"):
        mgr.fork(rid, 2, {"epochs": 3})  # nothing left that holds it: refused, naming what was tried


# ----------------------------------------------------------------------------- 6: a full disk


@pytest.fixture
def small_disk(tmp_path):
    """A 16 MB tmpfs (needs root and mount rights)."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mnt)], capture_output=True,
                          text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({proc.stderr.strip() or 'mount failed'})")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def _fill(folder: Path) -> Path:
    ballast = folder / "ballast"
    with open(ballast, "wb") as f:
        try:
            while True:
                f.write(b"\0" * (1 << 16))
                f.flush()
        except OSError:
            pass
    return ballast


def test_a_full_disk_fails_the_run_with_a_message_and_resume_works_once_space_is_back(small_disk, mnist) -> None:
    store = RunStore(small_disk / "runs")
    mgr = JobManager(store, max_concurrent=1, mnist_loader=lambda: mnist, threads=1)
    try:
        rid = mgr.submit("tiny", plan_run(TINY, cfg(epochs=1000)))
        deadline = time.monotonic() + 120
        while mgr.get(rid).epochs_done < 1:
            assert time.monotonic() < deadline, "the first epoch never finished"
            time.sleep(0.02)
        ballast = _fill(small_disk)
        view = mgr.wait(rid, 120)
        assert view.status == "failed"
        run_dir = store.root / rid
        assert view.message.startswith(f"no space left on device while writing {run_dir}/"), view.message
        assert view.message.endswith(" (0 MB free)")
        assert "enforce fail" not in view.message and "Traceback" not in view.message
        saved = store.get(rid).load_checkpoint("last")  # the last good checkpoint is intact
        assert saved["epoch"] >= 1
        assert not [p for p in run_dir.iterdir() if p.name.startswith(".tmp-")]

        ballast.unlink()  # space is back
        assert mgr.resume(rid) == rid
        while mgr.get(rid).epochs_done <= saved["epoch"]:
            assert mgr.get(rid).status in ("queued", "running"), mgr.get(rid).message
            time.sleep(0.02)
        mgr.stop(rid)
        assert mgr.wait(rid, 60).status == "stopped"
        steps = steps_of(store, rid)
        assert steps == list(range(1, len(steps) + 1))
    finally:
        mgr.shutdown(wait=10)


# ----------------------------------------------------------------------------- 8, 9: hostile imports


def _rezip(data: bytes, replace: dict[str, bytes]) -> bytes:
    """An exported run zip with some of its files replaced or added (by base name)."""
    src = zipfile.ZipFile(io.BytesIO(data))
    top = src.namelist()[0].split("/")[0]
    members = {i.filename.split("/")[-1]: src.read(i) for i in src.infolist()} | replace
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for base, content in members.items():
            zf.writestr(f"{top}/{base}", content)
    return buf.getvalue()


@pytest.fixture
def exported(mgr, store) -> bytes:
    rid = mgr.submit("tiny", plan_run(TINY, cfg(epochs=2)))
    assert mgr.wait(rid, 120).status == "done"
    data = store.export_zip(rid)
    store.delete(rid)
    return data


def test_imported_logs_are_bounded_by_what_the_run_can_have_written(store, exported) -> None:
    rid = store.import_zip(exported)  # a real run's logs are well inside the bound
    assert len([r for r in store.get(rid).read_metrics() if r["kind"] in ("step", "epoch")]) == 2 * 16 + 2
    store.delete(rid)
    line = json.dumps({"kind": "step", "step": 1, "epoch": 1, "loss": 2.3, "acc": 0.1, "lr": 0.05, "ips": 1e4,
                       "t": 0.1, "wall": 1.8e9}).encode() + b"\n"
    flood = _rezip(exported, {"metrics.jsonl": line * (40 * 2**20 // len(line))})  # 40 MB of steps
    assert len(flood) < 2**20  # it compresses to almost nothing
    with pytest.raises(ImportRefused, match=r"metrics\.jsonl .*limit for a log of this run's epochs and steps"):
        store.import_zip(flood)
    events = _rezip(exported, {"events.jsonl": b'{"kind": "event"}\n' * 2**20})  # 18 MB for 32 steps
    with pytest.raises(ImportRefused, match=r"events\.jsonl"):
        store.import_zip(events)
    assert [p.name for p in store.root.iterdir()] == []  # nothing left behind


@pytest.mark.parametrize("parent", [{"run_id": "../../etc", "epoch": 1}, {"run_id": "/abs", "epoch": 1},
                                    {"run_id": "ok-id", "epoch": "1; rm"}, "../../etc", ["x"]])
def test_an_imported_parent_is_validated_like_any_run_id(store, exported, parent) -> None:
    config = json.loads(zipfile.ZipFile(io.BytesIO(exported)).read(
        next(n for n in zipfile.ZipFile(io.BytesIO(exported)).namelist() if n.endswith("config.json"))))
    with pytest.raises(ImportRefused, match="config.json parent"):
        store.import_zip(_rezip(exported, {"config.json": json.dumps({**config, "parent": parent}).encode()}))
    ok = store.import_zip(_rezip(exported, {"config.json": json.dumps(
        {**config, "parent": {"run_id": "some-run.1", "epoch": 1}}).encode()}))
    assert store.get(ok).config["parent"] == {"run_id": "some-run.1", "epoch": 1}
