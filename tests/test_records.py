"""The one reader of a run's records (cnnlab.runs.records): incremental tails, merged runs, live jobs."""

from __future__ import annotations

import json
import threading

from cnnlab.plan import plan_run
from cnnlab.runs import records as R
from cnnlab.fsutil import atomic_write_bytes
from cnnlab.jobs import JobManager
from cnnlab.runs import RunStore

from test_jobs import TINY, cfg


def _append(path, *recs) -> None:
    with open(path, "a") as f:
        f.write("".join(json.dumps(r) + "\n" for r in recs))


def test_read_records_is_incremental_and_skips_partial_lines(tmp_path):
    path = tmp_path / "m.jsonl"
    tail = R.JsonlTail(path)
    path.write_text('{"a": 1}\n{"a": 2}\n{"a"')
    tail.poll()
    assert tail.records == [{"a": 1}, {"a": 2}]
    with open(path, "a") as f:
        f.write(': 3}\n{"a": 4}\n')
    tail.poll()
    assert tail.records == [{"a": 1}, {"a": 2}, {"a": 3}, {"a": 4}]
    path.write_text('{"b": 1}\n')  # truncated/replaced: start over
    assert tail.poll() == ([{"b": 1}], True)
    assert tail.records == [{"b": 1}]
    assert R.JsonlTail(tmp_path / "missing.jsonl").poll() == ([], False)
    assert R.read_jsonl(tmp_path / "missing.jsonl") == []


def test_an_appended_record_is_read_from_the_position_without_re_reading(tmp_path):
    path = tmp_path / "metrics.jsonl"
    _append(path, {"kind": "step", "step": 1}, {"kind": "step", "step": 2})
    tail = R.JsonlTail(path)
    assert tail.poll() == ([{"kind": "step", "step": 1}, {"kind": "step", "step": 2}], False)
    assert tail.offset == path.stat().st_size
    # scribble over the bytes already read (same file, same size): a full re-read would see garbage
    size = path.stat().st_size
    with open(path, "r+b") as f:
        f.write(b"x" * (size - 1))
    _append(path, {"kind": "step", "step": 3})
    new, reset = tail.poll()
    assert new == [{"kind": "step", "step": 3}] and not reset
    assert [r["step"] for r in tail.records] == [1, 2, 3]
    assert tail.offset == path.stat().st_size
    assert tail.poll() == ([], False)  # nothing new: nothing read


def test_a_partial_last_line_waits_for_its_newline_and_a_bad_line_is_skipped(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_bytes(b'{"e": 1}\nnot json\n[1, 2]\n{"e": 2')
    tail = R.JsonlTail(path)
    assert tail.poll()[0] == [{"e": 1}]
    offset = tail.offset
    with open(path, "ab") as f:
        f.write(b"}\n")
    assert tail.poll()[0] == [{"e": 2}] and tail.offset > offset


def test_stored_records_merge_both_files_and_restart_after_a_rewrite(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    _append(run / "metrics.jsonl", {"kind": "step", "step": 1}, {"kind": "step", "step": 2})
    _append(run / "events.jsonl", {"kind": "event", "event": "pause", "step": 1})
    reader = R.StoredRecords(run)
    recs, k = reader.since(0)
    assert [(r["kind"], r["step"]) for r in recs] == [("step", 1), ("event", 1), ("step", 2)] and k == 3
    _append(run / "metrics.jsonl", {"kind": "epoch", "step": 2, "epoch": 1})
    assert reader.since(k) == ([{"kind": "epoch", "step": 2, "epoch": 1}], 4)
    gen = reader.generation
    # a resume's rewind rewrites the file atomically: indexes restart, the generation says so
    atomic_write_bytes(run / "metrics.jsonl", (json.dumps({"kind": "step", "step": 1}) + "\n").encode())
    recs, k = reader.since(0)
    assert reader.generation == gen + 1 and [r["kind"] for r in recs] == ["step", "event"] and k == 2
    # copies: a reader changing what it got changes nothing in the reader
    recs[0]["step"] = 99
    assert reader.since(0)[0][0]["step"] == 1


def test_the_shared_stored_cache_is_bounded(tmp_path, monkeypatch):
    monkeypatch.setattr(R, "STORED_CACHE", 2)
    a, b, c = (R.stored(tmp_path / n) for n in "abc")
    assert R.stored(tmp_path / "c") is c and R.stored(tmp_path / "b") is b
    assert R.stored(tmp_path / "a") is not a  # evicted, read again when asked


def test_run_records_wait_wakes_on_append_and_on_close(tmp_path):
    recs = R.RunRecords(tmp_path)
    woke = threading.Event()
    waiting = threading.Event()

    def waiter() -> None:
        waiting.set()
        if recs.wait(0):
            woke.set()

    t = threading.Thread(target=waiter)
    t.start()
    waiting.wait()
    recs.append({"kind": "step", "step": 1})
    t.join()
    assert woke.is_set() and recs.since(0) == ([{"kind": "step", "step": 1}], 1)
    assert not recs.wait(1, timeout=0)  # nothing new, not closed
    recs.close()
    assert recs.wait(1, timeout=None)  # closed: returns at once


def test_a_finished_jobs_records_are_freed_and_read_from_the_store(tmp_path, mnist):
    store = RunStore(tmp_path / "runs")
    mgr = JobManager(store, max_concurrent=1, mnist_loader=lambda: mnist)
    try:
        rid = mgr.submit("tiny", plan_run(TINY, cfg(epochs=1)))
        view = mgr.get(rid)
        seen, k = [], 0
        while view.status not in ("done", "stopped", "failed", "diverged"):
            view.wait_records(k, timeout=5)
            new, k = view.records_since(k)
            seen += new
        mgr.wait(rid, 60)
        job = mgr._jobs[rid]
        job.thread.join(30)
        assert job.records.closed and job.records.held == 0  # the memory is gone
        new, k = view.records_since(k)
        seen += new
        full, n = view.records_since(0)  # from the store now, same records
        assert full == seen and n == k == len(full)
        assert [r["step"] for r in full if r["kind"] == "step"] == list(range(1, 17))
        disk = R.read_jsonl(store.run_dir(rid) / "metrics.jsonl")
        assert len(disk) + len(R.read_jsonl(store.run_dir(rid) / "events.jsonl")) == n
    finally:
        mgr.shutdown(wait=10)
