"""Bad input on the Train page (AppTest): every case shows a message, never a traceback, launches nothing
and leaves a job that is already training alone."""

from __future__ import annotations

import math
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from cnnlab import data as D
from cnnlab.spec import MAX_ACT_BYTES, MAX_PARAMS


PAGE = str(Path(__file__).resolve().parents[1] / "app_pages" / "train.py")
K = "train_"
NAN = float("nan")


def _app() -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=60)
    at.run()
    assert not at.exception, at.exception
    return at


def _errors(at: AppTest) -> list[str]:
    return [e.value for e in at.error]


def _wait(pred, timeout: float = 60.0, what: str = "condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


# (field, scheduler it needs, values refused, boundary values accepted); bounds from TrainConfig/DataConfig
FIELDS = [
    ("lr", None, [0.0, -0.1, 11.0, 1e300, NAN], [10.0, 1e-8]),
    ("momentum", None, [-0.1, 1.0, 1e300, NAN], [0.0, 0.999]),
    ("weight_decay", None, [-1e-4, 1.5, NAN], [0.0, 1.0]),
    ("step_size", "step", [0, -1, 10_001], [1, 10_000]),
    ("gamma", "step", [0.0, -0.5, 1.5, NAN], [1.0]),
    ("pct_start", "onecycle", [0.0, -0.1, 0.95, NAN], [0.9]),
    ("batch_size", None, [0, -1, 8193, 10**9], [1, 8192]),
    ("epochs", None, [0, -3, 1001, 10**9], [1, 1000]),
    ("label_smoothing", None, [-0.1, 0.6, NAN], [0.0, 0.5]),
    ("seed", None, [-1, 2**31, 2**53 - 1], [0, 2**31 - 1]),  # past 2**53 the widget itself refuses
    ("subset", None, [-1, 55_001, 10**9], [0, 1, 55_000]),  # 60000 minus 5000 validation images
    ("val_size", None, [0, -1, 99, 30_001], [100, 30_000]),
    ("aug_strength", None, [-0.5, 3.5, NAN, 1e300], [0.0, 3.0]),
]


@pytest.mark.parametrize("field,sched,bad,ok", FIELDS, ids=[f[0] for f in FIELDS])
def test_every_hyperparameter_at_and_beyond_its_bounds(manager, field, sched, bad, ok):
    at = _app()
    if field == "aug_strength":
        at.checkbox(key=K + "augment").check().run()
    if field == "batch_size":  # the subset must hold the largest batch
        at.number_input(key=K + "subset").set_value(0).run()
    if sched:
        at.selectbox(key=K + "scheduler").set_value(sched).run()
    widget = at.number_input(key=K + field)
    default = widget.value
    for v in bad:
        at.number_input(key=K + field).set_value(v).run()
        assert not at.exception, (field, v, at.exception)
        if isinstance(v, float) and math.isnan(v):
            # a number input cannot hold NaN: it comes back as 0 (refused or not, by the rules above);
            # NaN itself reaching the form is covered in test_reliability.py
            assert at.number_input(key=K + field).value == 0
            continue
        errs = _errors(at)
        assert any(f"**{field}**" in e for e in errs), (field, v, errs)
        at.button(key=K + "launch").click().run()
        assert any("Not launched" in e for e in _errors(at)), (field, v)
        assert manager.jobs() == [] and manager.list_runs() == []
    for v in ok:
        at.number_input(key=K + field).set_value(v).run()
        assert not at.exception
        assert not any(f"**{field}**" in e for e in _errors(at)), (field, v, _errors(at))
    at.number_input(key=K + field).set_value(default).run()
    assert not at.error and not at.exception


@pytest.mark.parametrize("text,needle", [
    ("", "empty"),
    ("conv out=abc k=3\nflatten\nlinear out=10", "must be a number"),
    ("conv out=16 k=three", "must be a number"),
    ("conv 16 3", "key=value"),
    ("conv out=8 k=29\nflatten\nlinear out=10", "'k'"),
    ("conv out=8 k=5\nmaxpool k=2\nmaxpool k=2\nmaxpool k=2\nconv out=8 k=5\nflatten\nlinear out=10", "does not fit"),
    ("conv out=8\nflatten\nlinear out=7", "exactly 10"),
    ("conv out=4096 pad=1\nconv out=4096 pad=1\nflatten\nlinear out=10", f"{MAX_PARAMS:,}"),
    ("resize size=256\nconv out=256 k=1\ngap\nflatten\nlinear out=10", f"{MAX_ACT_BYTES // 2**20} MiB"),
    ("[{'type': 'conv'}]", "not valid JSON"),
    ("[" * 50_000, "nested too deeply"),  # RecursionError in the JSON parser
    ('{"type": "conv", "out": 8}', "list of layer objects"),  # one object, not a list
    ("conv out=1e400\nflatten\nlinear out=10", "out"),
])
def test_custom_architecture_that_does_not_fit_is_explained_and_not_launched(manager, text, needle):
    at = _app()
    at.toggle(key=K + "custom").set_value(True).run()
    caps = " ".join(c.value for c in at.caption)
    assert f"{MAX_PARAMS:,} parameters" in caps and f"{MAX_ACT_BYTES // 2**20} MiB" in caps  # limits stated
    at.text_area(key=K + "spec_text").input(text).run()  # refused from shapes, never built
    assert not at.exception, at.exception
    errs = _errors(at)
    assert any("Architecture does not fit" in e and needle in e for e in errs), errs
    at.button(key=K + "launch").click().run()
    assert any("Not launched" in e for e in _errors(at))
    assert manager.jobs() == [] and manager.list_runs() == []


BAD_NAMES = ["../../outside", "a/b\\c", "/etc/passwd", "x" * 1000, "bell\x07esc\x1b[2Jnul\x00end",
             "two\nlines\ttab", "\u202eright-to-left"]


def _tiny(at: AppTest) -> None:
    at.selectbox(key=K + "preset").set_value("seed002").run()
    for f, v in (("subset", 640), ("val_size", 500), ("epochs", 1), ("batch_size", 64)):
        at.number_input(key=K + f).set_value(v)
    at.run()


def _folders(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if not p.name.startswith("."))


def test_hostile_run_names_and_renames_stay_display_text(manager, tmp_path):
    at = _app()
    _tiny(at)
    outside = sorted(p.name for p in tmp_path.iterdir())
    at.text_input(key=K + "name").input(BAD_NAMES[0])
    at.button(key=K + "launch").click().run()
    assert not at.exception and not at.error, _errors(at)
    (job,) = manager.jobs()
    rid = job.id
    assert _folders(manager.store.root) == [rid]
    for name in BAD_NAMES:
        at.text_input(key=K + f"rename_{rid}").input(name).run()
        assert not at.exception, (name, at.exception)
        stored = manager.store.get(rid).meta["name"]
        assert 0 < len(stored) <= 200 and not any(ord(c) < 32 or c == "\u202e" for c in stored), repr(stored)
        assert manager.get(rid).name == stored
        assert _folders(manager.store.root) == [rid]  # renaming never creates or moves a folder
    assert sorted(p.name for p in tmp_path.iterdir()) == outside
    assert not (tmp_path.parent / "outside").exists()


def test_a_bad_launch_leaves_the_training_job_alone(manager):
    at = _app()
    at.selectbox(key=K + "preset").set_value("seed002").run()
    for f, v in (("subset", 3000), ("val_size", 500), ("epochs", 20), ("batch_size", 16)):
        at.number_input(key=K + f).set_value(v)
    at.run()
    at.button(key=K + "launch").click().run()
    (job,) = manager.jobs()
    _wait(lambda: manager.get(job.id).step >= 3, what="first steps")

    at.number_input(key=K + "lr").set_value(-1.0).run()
    at.button(key=K + "launch").click().run()
    assert any("Not launched" in e for e in _errors(at))
    at.number_input(key=K + "lr").set_value(1e-3).run()
    at.toggle(key=K + "custom").set_value(True).run()
    at.text_area(key=K + "spec_text").input("conv out=99999999\nflatten\nlinear out=10").run()
    at.button(key=K + "launch").click().run()
    assert any("Not launched" in e for e in _errors(at))
    assert not at.exception
    assert [j.id for j in manager.jobs()] == [job.id] and len(manager.list_runs()) == 1
    step = manager.get(job.id).step
    _wait(lambda: manager.get(job.id).step > step + 5, what="steps after the bad launches")
    assert manager.get(job.id).status == "running"
    assert at.session_state[K + "run"] == job.id  # the watch panel still follows it


def _launch_until_failed(at: AppTest, manager) -> str:
    """Launch a tiny run from the page, wait for its job to fail, return the page's error texts."""
    _tiny(at)
    at.button(key=K + "launch").click().run()
    (job,) = manager.jobs()
    _wait(lambda: manager.get(job.id).status == "failed", what="failed")
    at.run()
    return "\n".join(_errors(at))


def test_data_dir_under_a_regular_file_is_a_message(manager, tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    monkeypatch.setenv("CNNLAB_DATA_DIR", str(blocker / "data"))
    at = _app()
    at.checkbox(key=K + "augment").check().run()  # the preview needs MNIST too: a warning, not a crash
    assert not at.exception
    warns = " ".join(w.value for w in at.warning)
    assert "MNIST is not available" in warns
    # the message says where the files go, and Launch waits for them (app.py adds the data panel on every
    # page): no failed run is left behind
    assert str(blocker / "data") in warns
    for name in D.RAW_FILES:
        assert name in warns
    assert at.button(key=K + "launch").disabled and not manager.jobs()
    assert not at.exception
    assert blocker.read_text() == "x"


def test_wrong_mnist_file_is_a_message(manager, tmp_path, monkeypatch):
    import shutil

    raw = tmp_path / "data" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    src = D.settings.data_dir() / "MNIST" / "raw"
    for name in D.RAW_FILES:
        shutil.copy(src / name, raw / name)
    (raw / "train-images-idx3-ubyte").write_bytes(b"<html>not mnist</html>")
    monkeypatch.setenv("CNNLAB_DATA_DIR", str(tmp_path / "data"))
    at = _app()
    errs = _launch_until_failed(at, manager)
    assert "MNIST is not available" in errs and "unreadable" in errs, errs
    assert not at.exception


def test_hostile_run_in_the_url_is_ignored(manager):
    at = AppTest.from_file(PAGE, default_timeout=60)
    at.query_params["run"] = "../../../etc/passwd"
    at.run()
    assert not at.exception
    assert any("No runs yet" in i.value for i in at.info)
    assert not at.error
