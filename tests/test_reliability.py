"""Bad input at the engine and store level: each case gives a clear message (a LabError, never a bare
traceback), leaves nothing half-written, and does not disturb other runs.

Only what the other suites do not already cover: test_data (missing / wrong MNIST files), test_models
(misfit and oversized specs, text that is not a number), test_engine (every hyperparameter out of range),
test_runs (bad ids, names, corrupt files in the list, malicious zips), test_modelsource (foreign, pickled
and truncated checkpoints when a model is loaded), test_jobs (damaged last.pt on resume, foreign fork weights).
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest
import torch

from cnnlab import data as D
from cnnlab import trainform as tf
from cnnlab.data import DataConfig
from cnnlab.errors import CheckpointError, ConfigError, DataMissingError, LabError, SpecError
from cnnlab.jobs import JobManager
from cnnlab.models import build_model
from cnnlab.plan import plan_run
from cnnlab.presets import get_preset
from cnnlab.runs import RunStore
from cnnlab.spec import MAX_ACT_BYTES, MAX_PARAMS, validate_spec

from test_jobs import TINY, cfg  # the tiny net and recipe the job tests use


@pytest.fixture
def store(tmp_path) -> RunStore:
    return RunStore(tmp_path / "runs")


@pytest.fixture
def mgr(store, mnist):
    m = JobManager(store, max_concurrent=2, mnist_loader=lambda: mnist, threads=1)
    yield m
    m.shutdown(wait=10)


def _assert_data_missing(exc: DataMissingError, root: Path) -> None:
    msg = str(exc)
    assert str(root.resolve()) in msg
    for name in D.RAW_FILES:
        assert name in msg
    assert "Traceback" not in msg


# ----------------------------------------------------------------------------- data


@pytest.mark.parametrize("download", [False, True])
def test_data_dir_under_a_regular_file_names_the_directory_and_files(tmp_path, download):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    root = blocker / "data"
    with pytest.raises(DataMissingError) as err:  # mkdir fails before any download is tried
        D.load_mnist(root, download=download)
    _assert_data_missing(err.value, root)
    assert blocker.read_text() == "not a directory"


def test_data_dir_from_the_environment_under_a_regular_file(tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    monkeypatch.setenv("CNNLAB_DATA_DIR", str(blocker / "mnist"))
    with pytest.raises(DataMissingError) as err:
        D.load_mnist(download=False)
    _assert_data_missing(err.value, blocker / "mnist")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_unwritable_data_dir(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        with pytest.raises(DataMissingError) as err:
            D.load_mnist(ro / "data", download=True)
        _assert_data_missing(err.value, ro / "data")
    finally:
        ro.chmod(0o700)


@pytest.mark.parametrize("what", ["truncated", "directory", "empty"])
def test_damaged_mnist_file_is_a_data_missing_error(tmp_path, what):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    src = D.settings.data_dir() / "MNIST" / "raw"
    for name in D.RAW_FILES:
        if (src / name).exists():
            shutil.copy(src / name, raw / name)
        else:
            shutil.copy(src / f"{name}.gz", raw / f"{name}.gz")
    target = raw / "t10k-labels-idx1-ubyte"
    for p in (target, target.with_suffix(".gz")):
        p.unlink(missing_ok=True)
    if what == "truncated":
        target.write_bytes((src / "t10k-labels-idx1-ubyte").read_bytes()[:100])
    elif what == "directory":
        target.mkdir()
    else:
        target.write_bytes(b"")
    with pytest.raises(DataMissingError) as err:
        D.load_mnist(tmp_path, download=False)
    _assert_data_missing(err.value, tmp_path)


def test_missing_data_fails_only_its_job(tmp_path, store, mnist):
    """A job that finds no MNIST fails with the message; a job with data in the same manager finishes."""
    calls = []

    def loader():
        calls.append(1)
        if len(calls) == 1:
            return D.load_mnist(tmp_path / "file" / "below", download=False)
        return mnist

    (tmp_path / "file").write_text("x")
    m = JobManager(store, max_concurrent=1, mnist_loader=loader, threads=1)
    try:
        bad = m.submit("tiny", plan_run(TINY, cfg(epochs=1)))
        good = m.submit("tiny", plan_run(TINY, cfg(epochs=1)))
        assert m.wait(good, 60).status == "done"
        v = m.get(bad)
        assert v.status == "failed" and "MNIST is not available" in v.message
        assert all(n in tf.short_cause(v.message) for n in D.RAW_FILES)  # the page shows the whole message
    finally:
        m.shutdown()


# ----------------------------------------------------------------------------- the form's values


@pytest.mark.parametrize("field", ["lr", "momentum", "weight_decay", "gamma", "pct_start", "label_smoothing",
                                   "aug_strength", "batch_size", "epochs", "seed", "step_size", "subset",
                                   "val_size"])
@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf"), "12", None, True])
def test_form_values_that_no_widget_sends_are_still_refused_by_name(field, value):
    vals = {**tf.form_defaults("fast"), "augment": True, field: value}
    if field == "subset" and value is None:
        return  # None is "all images"
    cfg, err = tf.try_build_config(vals)
    assert cfg is None and err is not None and err.field == field, (field, value, cfg, err)
    assert field in tf.field_message(err)


def test_a_form_missing_a_field_names_it():
    vals = tf.form_defaults("fast")
    del vals["epochs"]
    _, err = tf.try_build_config(vals)
    assert err.field == "epochs"


# ----------------------------------------------------------------------------- launching while training


def test_bad_submissions_are_refused_without_touching_a_running_job(mgr, store):
    rid = mgr.submit("tiny", plan_run(TINY, cfg(epochs=30, data=DataConfig(subset=2000, val_size=500))))
    deadline = time.monotonic() + 60
    while mgr.get(rid).step < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    before = set(p.name for p in store.root.iterdir())
    bad = [
        lambda: mgr.submit("tiny", plan_run(TINY, cfg(lr=float("nan")))),
        lambda: mgr.submit("tiny", plan_run(TINY, cfg(batch_size=0))),
        lambda: mgr.submit("tiny", plan_run(TINY, cfg(epochs=10**6))),
        lambda: mgr.submit("tiny", plan_run([{"type": "conv", "out": 100_000, "pad": 1}, {"type": "flatten"},
                                    {"type": "linear", "out": 10}], cfg())),
        lambda: mgr.submit("tiny", plan_run([], cfg())),
        lambda: mgr.submit("tiny", plan_run("conv out=8", cfg())),
        lambda: tf.launch(mgr, "fast", True, "conv out=abc\nflatten\nlinear out=10", tf.form_defaults("fast")),
        lambda: tf.launch(mgr, "fast", False, "", {**tf.form_defaults("fast"), "lr": -1.0}),
        lambda: mgr.resume("../../etc"),
        lambda: mgr.fork(rid, 1, {"epochs": 1}),
        lambda: mgr.fork("no-such-run"),
    ]
    for call in bad:
        with pytest.raises(LabError) as err:
            call()
        assert str(err.value) and "Traceback" not in str(err.value)
    assert set(p.name for p in store.root.iterdir()) == before  # no folder for a refused run
    step = mgr.get(rid).step
    deadline = time.monotonic() + 30
    while mgr.get(rid).step <= step and time.monotonic() < deadline:
        time.sleep(0.01)
    assert mgr.get(rid).status == "running" and mgr.get(rid).step > step  # still stepping
    mgr.stop(rid)


def test_oversized_architectures_are_refused_before_any_memory_is_used():
    huge = [{"type": "conv", "out": 4096, "pad": 1}, {"type": "conv", "out": 4096, "pad": 1},
            {"type": "flatten"}, {"type": "linear", "out": 10}]
    with pytest.raises(SpecError, match=f"{MAX_PARAMS:,}"):
        validate_spec(huge)  # 151M parameters: refused from the shapes alone
    with pytest.raises(SpecError, match=f"{MAX_PARAMS:,}"):
        build_model(huge)  # which build_model checks before it allocates anything
    wide = [{"type": "resize", "size": 256}, {"type": "conv", "out": 256, "k": 1}, {"type": "gap"}, {"type": "flatten"},
            {"type": "linear", "out": 10}]  # 4 GiB of activations for a batch of 64
    with pytest.raises(SpecError, match=f"{MAX_ACT_BYTES // 2**20} MiB"):
        build_model(wide)
    assert f"{MAX_PARAMS:,}" in tf.limits_caption() and f"{MAX_ACT_BYTES // 2**20} MiB" in tf.limits_caption()


@pytest.mark.parametrize("text,needle", [
    ("", "empty"), ("   \n# only a comment\n", "empty"), ("conv out=abc", "must be a number"),
    ("conv out=1e400", "out"), ("conv out=16 k=3.5\nflatten\nlinear out=10", "k"),
    ("[1, 2, 3]", "layer"), ('{"type": "conv"}', "list of layer objects"), ("conv out=-3", "out"),
    ("conv out=16 k=3\n" * 20 + "flatten\nlinear out=10", "does not fit"),
    ("relu\n" * 300 + "flatten\nlinear out=10", "limit of 200"),
])
def test_custom_architecture_text_never_raises_past_check_spec_text(text, needle):
    res = tf.check_spec_text(text)
    assert res.error and res.spec is None, res
    assert needle in res.error
    with pytest.raises(SpecError):
        tf.spec_for_launch("fast", True, text)


# ----------------------------------------------------------------------------- names


@pytest.mark.parametrize("name", ["../../escape", "a/b/c", "/etc/passwd", "..", "x" * 5000, "bell\x07\x1b[2J\x00end",
                                  "line\nbreak\ttab", "\u202eevil.exe", "  ", "C:\\Windows\\x"])
def test_run_names_are_display_text_never_paths(mgr, store, tmp_path, name):
    before = sorted(p.name for p in tmp_path.iterdir())
    rid = mgr.submit("tiny", plan_run(TINY, cfg(epochs=1)), name=name)
    stored = store.get(rid).meta["name"]
    assert len(stored) <= 200 and stored.strip() == stored and stored
    assert not any(ord(c) < 32 or c == "\u202e" for c in stored)
    renamed = mgr.rename(rid, name + "/../../more")
    assert len(renamed) <= 200 and not any(ord(c) < 32 for c in renamed)
    assert [p.name for p in store.root.iterdir() if not p.name.startswith(".")] == [rid]
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing beside the store
    mgr.stop(rid)


# ----------------------------------------------------------------------------- damaged run folders


@pytest.fixture
def stopped_run(mgr, store):
    """A TINY run stopped after its first epoch of two (last.pt, epoch_1.pt saved)."""
    rid = mgr.submit("tiny", plan_run(TINY, cfg(epochs=2)))
    mgr.stop(rid, after_epoch=True)
    assert mgr.wait(rid, 60).status == "stopped"
    return rid


def _copy(store: RunStore, rid: str, new: str) -> Path:
    dst = store.root / new
    shutil.copytree(store.root / rid, dst)
    return dst


class Boom:
    """Unpickling this would run code (touch a marker file); weights_only loading must refuse it."""

    marker: Path | None = None

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_damaged_checkpoints_fail_their_resume_clearly_and_others_resume(mgr, store, stopped_run, tmp_path):
    state = torch.load(store.root / stopped_run / "last.pt", weights_only=True)
    foreign = _copy(store, stopped_run, "foreign-arch")
    torch.save({**state, "model": build_model(get_preset("seed002").spec).state_dict()}, foreign / "last.pt")
    pickled = _copy(store, stopped_run, "pickled-code")
    Boom.marker = tmp_path / "pwned"
    torch.save({**state, "model": {"w": Boom()}}, pickled / "last.pt")
    nokeys = _copy(store, stopped_run, "not-resumable")
    torch.save({"model": state["model"]}, nokeys / "last.pt")
    truncated = _copy(store, stopped_run, "truncated")
    (truncated / "last.pt").write_bytes((foreign / "last.pt").read_bytes()[:300])

    infos = {r.id: r for r in mgr.list_runs()}
    assert infos["truncated"].status == "error" and "last.pt" in infos["truncated"].error
    assert not tf.can_resume(infos["truncated"])  # the page offers no Resume for it

    expect = {"foreign-arch": "do not fit this architecture", "pickled-code": "cannot load",
              "not-resumable": "not a resumable checkpoint", "truncated": "last.pt"}
    for rid, needle in expect.items():
        assert mgr.resume(rid) == rid
        v = mgr.wait(rid, 60)
        assert v.status == "failed" and needle in v.message, (rid, v.message)
        assert "\n" not in tf.short_cause(v.message)
        assert store.get(rid).status["status"] == "failed"
    assert not Boom.marker.exists()  # the pickled code never ran
    with pytest.raises(CheckpointError):
        store.get("pickled-code").load_checkpoint("last")

    # the original run is untouched by its damaged copies and still resumes to the end
    assert mgr.resume(stopped_run) == stopped_run
    assert mgr.wait(stopped_run, 60).status == "done"
    steps = [r["step"] for r in store.get(stopped_run).read_metrics() if r.get("kind") == "step"]
    assert steps == sorted(set(steps))


def test_run_folders_with_missing_files_list_with_errors_and_the_rest_still_load(mgr, store, stopped_run):
    for missing in ("config.json", "status.json", "meta.json", "metrics.jsonl", "last.pt"):
        _copy(store, stopped_run, f"no-{missing.replace('.', '-')}")
        (store.root / f"no-{missing.replace('.', '-')}" / missing).unlink()
    (store.root / "empty-folder").mkdir()
    infos = {r.id: r for r in mgr.list_runs()}
    assert infos[stopped_run].status == "stopped" and infos[stopped_run].error is None
    for rid in ("no-config-json", "no-status-json", "no-meta-json", "empty-folder"):
        assert infos[rid].status == "error" and "missing" in infos[rid].error, infos[rid]
        level, line = tf.saved_status_line(infos[rid])
        assert level == "error" and "missing" in line
        assert not tf.can_resume(infos[rid])
    # a missing curve or checkpoint is not damage: the run lists, it just has less to show / resume
    assert infos["no-metrics-jsonl"].status == "stopped"
    assert tf.can_resume(infos["no-metrics-jsonl"]) and not tf.can_resume(infos["no-last-pt"])
    # the intact run still loads and the stored view of a damaged one is None or an error view, never a raise
    assert store.get(stopped_run).load_checkpoint("last")["epoch"] == 1
    assert mgr.fork_epochs(stopped_run) == [1]
    for rid in infos:
        view = tf.stored_view(mgr, rid)
        assert view is None or view.status in ("error", "stopped")
    with pytest.raises(LabError, match="config.json"):
        mgr.resume("no-config-json")
    with pytest.raises(LabError):
        mgr.fork("no-config-json", 1)


def test_fork_form_values_are_checked_before_anything_is_created(mgr, store, stopped_run):
    n = len(list(store.root.iterdir()))
    for epoch, lr, epochs, opt, field in [
        (1, 0.0, 2, "sgd", "lr"), (1, float("nan"), 2, "sgd", "lr"), (1, -1.0, 2, "sgd", "lr"),
        (1, 1e9, 2, "sgd", "lr"), (1, 0.1, 1, "sgd", "epochs"), (1, 0.1, 0, "sgd", "epochs"),
        (1, 0.1, 2.5, "sgd", "epochs"), (1, 0.1, 10**6, "sgd", "epochs"), (1, 0.1, 2, "rmsprop", "optimizer"),
        (7, 0.1, 9, "sgd", "epoch"), (0, 0.1, 2, "sgd", "epoch"), (True, 0.1, 2, "sgd", "epoch"),
    ]:
        with pytest.raises(LabError) as err:
            tf.fork_run(mgr, stopped_run, epoch, lr, epochs, opt)
        if isinstance(err.value, ConfigError):
            assert err.value.field == field, (epoch, lr, epochs, opt, err.value)
        else:
            assert "epoch" in str(err.value)
    assert len(list(store.root.iterdir())) == n
