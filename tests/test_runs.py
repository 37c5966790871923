"""Run store: real folders under tmp_path, real torch.save files, real subprocesses."""

from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

from cnnlab.errors import CheckpointError, LabError
from cnnlab.runs import (
    ImportRefused,
    InvalidRunId,
    RunNotFound,
    RunStore,
    clean_name,
    new_run_id,
    read_jsonl,
    validate_run_id,
)

SPEC = [{"type": "conv", "out": 4, "k": 3}, {"type": "relu"}, {"type": "flatten"},
        {"type": "linear", "out": 10}, {"type": "logsoftmax"}]
CONFIG = {"preset": "seed004", "spec": SPEC, "recipe": {"epochs": 2, "lr": 0.01}, "params": 1234}


def _state() -> dict:
    return {"model": {"w": torch.randn(4, 3), "b": torch.zeros(4)}, "epoch": 1, "step": 10}


def _tree(path: Path) -> set[str]:
    return {str(p.relative_to(path)) for p in path.rglob("*")}


@pytest.fixture
def store(tmp_path: Path) -> RunStore:
    return RunStore(tmp_path / "store")


def test_create_list_rename_tag_delete(store: RunStore) -> None:
    a = store.create(CONFIG, name="first")
    b = store.create({**CONFIG, "preset": "fast"}, run_id="20990101-000000-fast-beef")
    assert a.config["spec"] == SPEC and a.config["id"] == a.id and a.config["parent"] is None
    assert set(a.config["versions"]) == {"python", "torch", "torchvision", "cnnlab"}
    assert a.status["status"] == "queued" and a.status["pid"] == os.getpid()
    ids = [r.id for r in store.list_runs(live_ids={a.id, b.id})]
    assert set(ids) == {a.id, b.id}
    info = {r.id: r for r in store.list_runs(live_ids={a.id, b.id})}
    assert info[a.id].name == "first" and info[a.id].preset == "seed004" and info[a.id].params == 1234
    assert info[a.id].status == "queued" and info[a.id].error is None and info[a.id].epochs_planned == 2
    assert info[b.id].name == b.id  # no name: the id

    assert store.rename(a.id, "  better\x00 \tname\n ") == "better name"
    assert store.set_tags(a.id, ["x", " x ", "cnn\x1b", ""]) == ["x", "cnn"]
    assert store.set_notes(a.id, "line1\nline2\x07") == "line1\nline2"
    assert store.get(a.id).meta == {"name": "better name", "tags": ["x", "cnn"], "notes": "line1\nline2"}

    with pytest.raises(LabError, match="stop it"):
        store.delete(a.id, live_ids={a.id})
    store.get(a.id).write_status(status="done")
    store.delete(a.id)
    assert [r.id for r in store.list_runs()] == [b.id]
    assert _tree(store.root) == {b.id} | {f"{b.id}/{f}" for f in ("config.json", "meta.json", "status.json")}
    with pytest.raises(RunNotFound):
        store.get(a.id)
    with pytest.raises(LabError, match="already exists"):
        store.create(CONFIG, run_id=b.id)


def test_new_run_id_shape_and_validation() -> None:
    rid = new_run_id("Seed 004/../x")
    assert validate_run_id(rid) == rid
    parts = rid.split("-")
    assert len(parts[0]) == 8 and len(parts[1]) == 6 and len(parts[-1]) == 4 and ".." not in rid


@pytest.mark.parametrize("bad", ["../x", "..", "a/b", "/etc", "a\x00b", "a\nb", "x" * 101, "", ".hidden",
                                 "a..b", "a b", None, 5])
def test_bad_ids_refused(store: RunStore, bad) -> None:
    for call in (store.get, store.delete, lambda i: store.rename(i, "n"), store.export_zip):
        with pytest.raises(InvalidRunId):
            call(bad)
    if bad is not None:  # None means "make one up"
        with pytest.raises(InvalidRunId):
            store.create(CONFIG, run_id=bad)


def test_symlinked_run_folder_outside_root_refused(store: RunStore, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (store.root / "linked").symlink_to(outside, target_is_directory=True)
    with pytest.raises(InvalidRunId, match="outside"):
        store.delete("linked")
    assert outside.exists() and store.list_runs() == []


def test_name_sanitized() -> None:
    assert clean_name("a\x1b[31mred\u202e\tz", "id") == "a[31mred z"
    assert clean_name("\x00\n ", "fallback") == "fallback"
    assert len(clean_name("n" * 500, "id")) == 200


def test_metrics_append_incremental_and_truncated_line(store: RunStore) -> None:
    run = store.create(CONFIG)
    run.append_metrics([{"kind": "step", "step": i, "epoch": 0, "loss": 1.0 / (i + 1)} for i in range(3)])
    assert [r["step"] for r in run.read_metrics()] == [0, 1, 2]
    run.append_metrics([{"kind": "epoch", "epoch": 1, "step": 3, "val_acc": 0.9}])
    assert run.read_metrics(since=3) == [{"kind": "epoch", "epoch": 1, "step": 3, "val_acc": 0.9}]
    # a kill -9 mid-write leaves a partial line: readers skip it, the next writer cuts it
    with open(run.path / "metrics.jsonl", "a") as f:
        f.write('{"kind": "step", "st')
    assert len(run.read_metrics()) == 4
    again = store.get(run.id)  # e.g. a resumed run in a new process
    again.append_metrics([{"kind": "step", "step": 4, "epoch": 1}])
    assert [r["step"] for r in again.read_metrics()] == [0, 1, 2, 3, 4]
    assert (run.path / "metrics.jsonl").read_text().count("\n") == 5
    run.append_event({"kind": "event", "event": "pause", "step": 4})
    assert run.read_events()[0]["event"] == "pause"
    csv_text = store.metrics_csv(run.id).splitlines()
    assert csv_text[0].startswith("kind,epoch,step,loss") and len(csv_text) == 6


def test_checkpoint_atomic_and_roundtrip(store: RunStore) -> None:
    run = store.create(CONFIG)
    state = _state()
    run.save_checkpoint(state, "last")
    run.save_checkpoint(state, "best")
    run.write_result({"test_acc": 0.99, "confusion": torch.eye(10, dtype=torch.long), "wall_s": 1.5})
    run.write_status(status="done", epoch=2, best_val_acc=0.98)
    loaded = run.load_checkpoint("best")
    assert torch.equal(loaded["model"]["w"], state["model"]["w"]) and loaded["step"] == 10
    assert run.result["confusion"][3][3] == 1
    assert sorted(os.listdir(run.path)) == ["best.pt", "config.json", "last.pt", "meta.json",
                                           "result.json", "status.json"]  # no temp files left
    assert run.status["status"] == "done" and run.status["epoch"] == 2  # merged, not replaced
    with pytest.raises(ValueError):
        run.save_checkpoint(state, "../x")
    with pytest.raises(ValueError):
        run.write_status(status="bogus")


def test_corrupt_checkpoint_and_missing_config_list_as_error(store: RunStore) -> None:
    good = store.create(CONFIG, name="good")
    good.write_status(status="done")
    bad = store.create(CONFIG, name="bad")
    bad.write_status(status="done")
    bad.save_checkpoint(_state(), "last")
    data = (bad.path / "last.pt").read_bytes()
    (bad.path / "last.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="last.pt"):
        bad.load_checkpoint("last")
    with pytest.raises(CheckpointError, match="no best.pt"):
        bad.load_checkpoint("best")
    noconf = store.create(CONFIG)
    (noconf.path / "config.json").unlink()
    junk = store.create(CONFIG)
    (junk.path / "status.json").write_text("{not json")
    (store.root / "not an id").mkdir()
    (store.root / "stray.txt").write_text("x")

    runs = {r.id: r for r in store.list_runs()}
    assert set(runs) == {good.id, bad.id, noconf.id, junk.id}
    assert runs[good.id].status == "done" and runs[good.id].error is None
    assert runs[bad.id].status == "error" and "last.pt" in runs[bad.id].error and runs[bad.id].name == "bad"
    assert runs[noconf.id].status == "error" and "config.json" in runs[noconf.id].error
    assert runs[junk.id].status == "error" and "status.json" in runs[junk.id].error


def test_interrupted_detection(store: RunStore) -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    dead = store.create(CONFIG)
    dead.write_status(status="running", pid=proc.pid, proc_start=None)
    reused = store.create(CONFIG)  # a live pid whose start time differs: the pid was reused
    reused.write_status(status="running", pid=os.getppid(), proc_start=-1)
    mine = store.create(CONFIG)
    mine.write_status(status="running")
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        from cnnlab.runs import proc_start_time

        live = store.create(CONFIG)
        live.write_status(status="running", pid=other.pid, proc_start=proc_start_time(other.pid))
        runs = {r.id: r for r in store.list_runs(live_ids=set())}
        assert runs[dead.id].status == "interrupted" and str(proc.pid) in runs[dead.id].message
        assert runs[reused.id].status == "interrupted"
        assert runs[mine.id].status == "interrupted"  # our pid, but the job manager doesn't run it
        assert runs[live.id].status == "running"  # another live process (e.g. the CLI)
        assert store.get(dead.id).status["status"] == "interrupted"  # persisted
        assert mine.status["status"] == "running"  # own-pid verdict is not persisted
        assert {r.id: r.status for r in store.list_runs(live_ids={mine.id})}[mine.id] == "running"
    finally:
        other.kill()
        other.wait()


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _pt_bytes(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def test_export_import_round_trip(store: RunStore) -> None:
    run = store.create(CONFIG, name="exported")
    run.append_metrics([{"kind": "step", "step": 1, "epoch": 0, "loss": 2.0}])
    run.save_checkpoint(_state(), "last")
    run.write_result({"test_acc": 0.97})
    run.write_status(status="done", test_acc=0.97)
    store.set_tags(run.id, ["keep"])
    data = store.export_zip(run.id)
    assert sorted(zipfile.ZipFile(io.BytesIO(data)).namelist()) == sorted(
        f"{run.id}/{f}" for f in ("config.json", "meta.json", "status.json", "metrics.jsonl",
                                  "last.pt", "result.json"))

    new_id = store.import_zip(data)  # the id is taken: a fresh one
    assert new_id != run.id
    copy = store.get(new_id)
    assert copy.config["imported_from"] == run.id and copy.config["id"] == new_id
    assert copy.config["spec"] == SPEC and copy.meta["tags"] == ["keep"] and copy.meta["name"] == "exported"
    assert copy.read_metrics() == run.read_metrics()
    assert torch.equal(copy.load_checkpoint()["model"]["w"], run.load_checkpoint()["model"]["w"])
    store.delete(run.id)
    assert store.import_zip(data) == run.id  # free again: keeps its id
    assert not [p for p in store.root.iterdir() if p.name.startswith(".")]


def test_import_of_active_run_becomes_interrupted(store: RunStore) -> None:
    run = store.create(CONFIG)
    run.write_status(status="running")
    data = store.export_zip(run.id)
    st = store.get(store.import_zip(data)).status
    assert st["status"] == "interrupted" and st["pid"] is None


class _Evil:
    def __reduce__(self):
        return (os.system, (f"touch {os.environ['EVIL_MARK']}",))


def _evil_pt(mark: Path) -> bytes:
    os.environ["EVIL_MARK"] = str(mark)
    try:
        return _pt_bytes({"model": _Evil()})
    finally:
        del os.environ["EVIL_MARK"]


def _lying_bomb() -> bytes:
    """A zip whose headers claim 100 bytes for a member that inflates to 4 MiB."""
    data = bytearray(_zip({"r/config.json": b"{}", "r/metrics.jsonl": b"\n" * (4 << 20)}))
    for sig, off in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        start = 0
        while (i := data.find(sig, start)) >= 0:
            n = 26 if sig == b"PK\x03\x04" else 28
            name_len = struct.unpack_from("<H", data, i + n)[0]
            name = bytes(data[i + n + (4 if sig == b"PK\x03\x04" else 18): ][:name_len])
            if name.endswith(b"metrics.jsonl"):
                struct.pack_into("<I", data, i + off, 100)
            start = i + 4
    return bytes(data)


CFG = json.dumps(CONFIG).encode()


REFUSALS = {"traversal": "leave its folder", "absolute": "absolute", "bomb": "over the 1048576-byte limit",
            "lying_bomb": "damaged zip", "unexpected": "unexpected file", "evil_pt": "posix.system",
            "no_config": "config.json is missing", "bad_json": "status.json is unreadable",
            "nested": "nested path", "symlink": "symlink", "not_zip": "not a zip", "two_tops": "one folder"}


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_malicious_zip_refused(store: RunStore, tmp_path: Path, case: str) -> None:
    mark = tmp_path / "pwned"
    kwargs = {}
    if case == "traversal":
        data = _zip({"r/config.json": CFG, "r/../../evil": b"x"})
    elif case == "absolute":
        data = _zip({"/tmp/config.json": CFG})
    elif case == "bomb":  # ~10 KB compressed, 10 MiB inflated
        data = _zip({"r/config.json": CFG, "r/metrics.jsonl": b"\n" * (10 << 20)})
        assert len(data) < 100_000
        kwargs = {"max_member": 1 << 20}
    elif case == "lying_bomb":
        data = _lying_bomb()
        kwargs = {"max_member": 1 << 20}
    elif case == "unexpected":
        data = _zip({"r/config.json": CFG, "r/run.sh": b"rm -rf /"})
    elif case == "evil_pt":
        data = _zip({"r/config.json": CFG, "r/last.pt": _evil_pt(mark)})
    elif case == "no_config":
        data = _zip({"r/meta.json": b"{}"})
    elif case == "bad_json":
        data = _zip({"r/config.json": CFG, "r/status.json": b"{oops"})
    elif case == "nested":
        data = _zip({"r/sub/config.json": CFG})
    elif case == "symlink":
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            zf.writestr("r/config.json", CFG)
            info = zipfile.ZipInfo("r/last.pt")
            info.external_attr = (0o120777 << 16)
            zf.writestr(info, "/etc/passwd")
        data = buf.getvalue()
    elif case == "not_zip":
        data = b"hello"
    else:
        data = _zip({"a/config.json": CFG, "b/meta.json": b"{}"})
    before = _tree(tmp_path)
    with pytest.raises(ImportRefused, match="import refused") as err:
        store.import_zip(data, **kwargs)
    assert REFUSALS[case] in str(err.value)
    assert not mark.exists()  # the pickled os.system never ran
    assert _tree(tmp_path) == before  # nothing written anywhere, no leftover temp folders
    assert store.list_runs() == []


def test_read_jsonl_missing_file(tmp_path: Path) -> None:
    assert read_jsonl(tmp_path / "nope.jsonl") == []


def test_export_does_not_hold_the_run_lock_while_compressing(store: RunStore, monkeypatch) -> None:
    import threading

    import cnnlab.runs.archive as archive

    run = store.create({"preset": "p", "spec": [], "recipe": {}}, name="busy")
    run.append_metrics([{"kind": "step", "step": 1, "loss": 1.0}])
    wrote = threading.Event()
    compress = archive.compress

    def compress_while_training(files):
        # a training thread appends while the zip is being made: it must not wait for the export
        t = threading.Thread(target=lambda: (run.append_metrics([{"kind": "step", "step": 2}]), wrote.set()))
        t.start()
        assert wrote.wait(60), "the training thread's write waited for the export"  # a deadlock guard only
        return compress(files)

    monkeypatch.setattr(archive, "compress", compress_while_training)
    data = store.export_zip(run.id)
    assert wrote.is_set()
    with zipfile.ZipFile(io.BytesIO(data)) as zf:  # the snapshot taken before the write: one step
        assert zf.read(f"{run.id}/metrics.jsonl").count(b"\n") == 1
    assert [r["step"] for r in run.read_metrics()] == [1, 2]
