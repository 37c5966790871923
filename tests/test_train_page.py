"""Train page through streamlit.testing.v1.AppTest: real job manager, real MNIST, tiny runs."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest
from cnnlab.plan import plan_run



PAGE = str(Path(__file__).resolve().parents[1] / "app_pages" / "train.py")
K = "train_"


def _app() -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=60)
    at.run()
    assert not at.exception, at.exception
    return at


def _tiny(at: AppTest, subset: int = 512, epochs: int = 1, batch: int = 64) -> None:
    at.number_input(key=K + "subset").set_value(subset)
    at.number_input(key=K + "val_size").set_value(500)
    at.number_input(key=K + "epochs").set_value(epochs)
    at.number_input(key=K + "batch_size").set_value(batch)
    at.run()


def _wait(pred, timeout: float = 60.0, what: str = "condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _texts(at: AppTest) -> str:
    parts = [e.value for kind in ("error", "warning", "info", "success") for e in getattr(at, kind)]
    return "\n".join(str(p) for p in parts)


def test_no_runs_hint_and_preset_defaults(manager):
    from cnnlab import trainform as tf

    at = _app()
    assert "No runs yet" in _texts(at)
    assert at.selectbox(key=K + "preset").value == "fast"
    assert at.number_input(key=K + "lr").value == pytest.approx(tf.form_defaults("fast")["lr"])
    at.selectbox(key=K + "preset").set_value("seed002").run()
    assert at.number_input(key=K + "lr").value == pytest.approx(1e-3)
    assert at.number_input(key=K + "batch_size").value == 32
    assert at.number_input(key=K + "subset").value == 0  # the notebook trains on all 60k
    assert at.selectbox(key=K + "val_source").value == "test"  # and reports the test set as validation
    assert at.selectbox(key=K + "optimizer").value == "adam"
    assert any("raw 0–255 pixels" in m.value for m in at.markdown)  # description
    assert any("Reported" in m.value for m in at.markdown)
    assert not at.exception


def test_invalid_value_refused_before_launch(manager):
    at = _app()
    at.number_input(key=K + "lr").set_value(0.0).run()
    assert any("**lr**" in e.value for e in at.error), _texts(at)
    at.button(key=K + "launch").click().run()
    assert any("Not launched" in e.value for e in at.error)
    assert manager.jobs() == []
    at.number_input(key=K + "lr").set_value(0.05)
    at.number_input(key=K + "subset").set_value(70000).run()
    assert any("**subset**" in e.value for e in at.error)
    assert manager.jobs() == []


def test_misfit_custom_architecture_shows_its_error(manager):
    at = _app()
    at.toggle(key=K + "custom").set_value(True).run()
    from cnnlab import trainform as tf

    assert at.text_area(key=K + "spec_text").value == tf.preset_spec_text("fast")
    assert not at.error
    at.text_area(key=K + "spec_text").input("# a comment and a blank line shift lines from layers\n"
                                            "conv out=8 k=5\nmaxpool k=2\n\nmaxpool k=2\nmaxpool k=2\n"
                                            "conv out=8 k=5\nflatten\nlinear out=10").run()
    errs = [e.value.replace("\\", "") for e in at.error]  # the message is shown Markdown-escaped
    # numbered as the box shows it: the 5th layer is on line 7 (before: "layer 4", counted from 0)
    assert any("Architecture does not fit" in e and e.count("line 7 (layer #5") == 1 and "(conv)" in e
               for e in errs), errs
    at.button(key=K + "launch").click().run()
    assert manager.jobs() == []
    # a fitting edit clears the error and shows the summary
    at.text_area(key=K + "spec_text").input("conv out=8 k=3\nrelu\nmaxpool k=2\nflatten\nlinear out=10").run()
    assert not at.error
    assert any("parameters" in c.value for c in at.caption)


def test_launch_tiny_run_then_pause_resume_stop(manager):
    at = _app()
    _tiny(at, subset=2000, epochs=2, batch=16)
    at.text_input(key=K + "name").input("tiny from the page")
    at.button(key=K + "launch").click().run()
    assert not at.exception and not at.error, _texts(at)
    jobs = manager.jobs()
    assert len(jobs) == 1
    rid = jobs[0].id
    assert jobs[0].name == "tiny from the page"
    assert at.session_state[K + "run"] == rid and at.query_params["run"] in (rid, [rid])
    _wait(lambda: manager.get(rid).step >= 3, what="first steps")
    at.run()
    assert at.selectbox(key=K + "show").value == rid
    cache = at.session_state[K + "curves"]
    assert cache.run_id == rid and cache.n_points >= 3
    n0 = cache.n_points

    at.button(key=K + "pause").click().run()
    _wait(lambda: manager.get(rid).status == "paused", what="paused")
    at.run()
    assert any("Paused" in i.value for i in at.info)
    step_paused = manager.get(rid).step
    time.sleep(0.5)
    assert manager.get(rid).step == step_paused

    # live tweak while paused: recorded as a set event when the loop resumes
    # the field's key carries the value it was drawn with (a change elsewhere redraws it)
    lr_box = next(n for n in at.number_input if (n.key or "").startswith(K + f"live_{rid}_lr_"))
    assert lr_box.value == manager.get(rid).live_values()["lr"]
    lr_box.set_value(0.01)
    at.button(key="FormSubmitter:train_live_form-Apply").click().run()
    assert not at.error, _texts(at)
    at.button(key=K + "resume").click().run()
    _wait(lambda: manager.get(rid).step > step_paused, what="steps after resume")
    _wait(lambda: any(r.get("event") == "set" for r in manager.get(rid).records_since(0)[0]), what="set event")
    at.button(key=K + "stop").click().run()
    _wait(lambda: manager.get(rid).status in ("stopped", "done"), what="stopped")
    at.run()
    cache = at.session_state[K + "curves"]
    assert cache.n_points > n0
    assert [e["event"] for e in cache.events][:3] == ["pause", "resume", "set"] or \
        {"pause", "resume", "set"} <= {e["event"] for e in cache.events}
    assert any("Stopped" in w.value or "stopped" in w.value for w in at.warning) or \
        manager.get(rid).status == "done"
    assert not at.exception


def test_stop_after_this_epoch_finishes_and_saves_the_epoch_in_progress(manager):
    at = _app()
    _tiny(at, subset=640, epochs=3, batch=64)  # 10 steps an epoch
    at.button(key=K + "launch").click().run()
    rid = manager.jobs()[0].id
    _wait(lambda: manager.get(rid).step >= 3, timeout=300, what="first steps")
    at.run()
    at.button(key=K + "stop_epoch").click().run()
    assert not at.exception and not at.error, _texts(at)
    view = _wait(lambda: manager.get(rid) if manager.get(rid).status in ("stopped", "done") else None,
                 timeout=300, what="stopped after the epoch")
    done = view.epochs_done
    assert view.status == "stopped" and done in (1, 2)  # after the epoch in progress, never all three
    assert view.step == 10 * done  # that epoch was finished, not cut
    handle = manager.store.get(rid)
    assert handle.saved_epoch("last") == done and done in handle.epoch_checkpoints()
    at.run()
    assert at.button(key=K + "stop_epoch").disabled and not at.exception


@pytest.mark.parametrize("manager", ["thread"], indirect=True)  # its data loader can be held back
def test_the_page_says_what_a_launched_run_does_before_its_first_step(manager, mnist):
    import threading

    gate = threading.Event()

    def loader():  # the real data, held back so that the page can be read while the job waits for it
        gate.wait(30)
        return mnist

    manager._mnist_loader = loader
    at = _app()
    _tiny(at, subset=512, epochs=1)
    try:
        at.button(key=K + "launch").click().run()
        (rid,) = [j.id for j in manager.jobs()]
        _wait(lambda: manager.get(rid).phase, what="the job to start")
        at.run()
        assert any(i.value.startswith("Starting… loading MNIST into memory") for i in at.info), _texts(at)
        assert not any("Queued" in i.value for i in at.info), _texts(at)
    finally:
        gate.set()
    _wait(lambda: manager.get(rid).step > 0, what="the first step")
    at.run()
    assert not any(i.value.startswith("Starting…") for i in at.info), _texts(at)
    assert not at.exception


def test_refresh_reattaches_via_query_param(manager):
    from cnnlab import trainform as tf

    vals = tf.form_defaults("fast")
    vals.update(subset=512, val_size=500, epochs=1, batch_size=64)
    rid_a = manager.submit("fast", plan_run(tf.preset_spec("fast")[0], tf.build_config(vals)), name="a")
    rid_b = manager.submit("fast", plan_run(tf.preset_spec("fast")[0], tf.build_config(vals)), name="b")
    at = AppTest.from_file(PAGE, default_timeout=60)
    at.query_params["run"] = rid_a
    at.run()
    assert at.selectbox(key=K + "show").value == rid_a
    at.selectbox(key=K + "show").set_value(rid_b).run()
    assert at.session_state[K + "run"] == rid_b and at.query_params["run"] in (rid_b, [rid_b])
    assert len(at.dataframe) >= 1  # the run list shows both


def test_data_missing_disables_launch_and_makes_no_run(manager, tmp_path, monkeypatch):
    from cnnlab import trainform as tf
    from cnnlab.errors import DataMissingError

    empty = tmp_path / "no-mnist"
    monkeypatch.setenv("CNNLAB_DATA_DIR", str(empty))
    at = _app()
    _tiny(at)
    launch = at.button(key=K + "launch")
    assert launch.disabled and "MNIST" in launch.help  # the app's panel says where the files go
    vals = tf.form_defaults("fast")
    with pytest.raises(DataMissingError) as err:  # the door the page uses refuses too, before any run exists
        tf.launch(manager, "fast", False, "", vals, name="x")
    assert str(empty / "MNIST" / "raw") in str(err.value)
    assert manager.jobs() == [] and manager.list_runs() == []
    assert not empty.exists()  # nothing written, no folder made
    assert not at.exception


def test_rename_from_the_page(manager):
    from cnnlab import trainform as tf

    vals = tf.form_defaults("fast")
    vals.update(subset=256, val_size=500, epochs=1, batch_size=64)
    rid = manager.submit("fast", plan_run(tf.preset_spec("fast")[0], tf.build_config(vals)))
    at = _app()
    at.text_input(key=K + f"rename_{rid}").input("my renamed run").run()
    assert manager.store.get(rid).meta["name"] == "my renamed run"
    assert at.selectbox(key=K + "show").value == rid
    assert not at.exception


# ----------------------------------------------------------------------------- saved runs (the store)

def _stopped_run(store, epochs_done: int = 1, epochs: int = 3, name: str = "saved one") -> str:
    """A real run trained to the end of epoch `epochs_done` of `epochs` by another job manager, then stopped."""
    from cnnlab import trainform as tf
    from cnnlab.jobs import JobManager

    vals = tf.form_defaults("seed002")
    vals.update(subset=640, val_size=500, epochs=epochs, batch_size=64)
    other = JobManager(store, threads=1)
    rid = other.submit("seed002", plan_run(tf.preset_spec("seed002")[0], tf.build_config(vals)), name=name)
    assert epochs_done in (1, epochs)
    if epochs_done < epochs:
        other.stop(rid, after_epoch=True)  # ends once epoch 1 and its last.pt are saved
    view = other.wait(rid, timeout=120)
    assert view.status in ("stopped", "done"), (view.status, view.message)
    assert store.get(rid).status["epoch"] == epochs_done
    return rid


def _dead_pid() -> int:
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _interrupt(store, rid: str) -> None:
    """Make a stored run look like its process died mid-training (status running, dead pid)."""
    store.get(rid).write_status(status="running", pid=_dead_pid(), proc_start=None)


def _steps(store, rid: str) -> list[int]:
    return [r["step"] for r in store.get(rid).read_metrics() if r.get("kind") == "step"]


def test_interrupted_run_is_listed_and_resume_finishes_it(manager):
    rid = _stopped_run(manager.store, epochs_done=1, epochs=2)
    _interrupt(manager.store, rid)
    at = _app()
    assert at.selectbox(key=K + "saved").value == rid
    warns = [w.value for w in at.warning]
    assert any("interrupted — the app stopped while it trained; 1 epoch saved of 2" in w for w in warns), warns
    rows = at.dataframe[-1].value
    assert list(rows["status"]) == ["interrupted"] and list(rows["epochs"]) == ["1/2"]
    assert not at.button(key=K + "saved_resume").disabled

    at.button(key=K + "saved_resume").click().run()
    assert not at.exception and not at.error, _texts(at)
    assert manager.get(rid) is not None  # now a job of this process, in the same folder
    assert at.session_state[K + "run"] == rid and at.selectbox(key=K + "show").value == rid
    _wait(lambda: manager.get(rid).step > 10, what="steps after the resume point")
    at.run()
    cache = at.session_state[K + "curves"]
    assert cache.n_points > 10  # the first epoch's curve (from the store) and the new steps
    assert any(e.get("event") == "resumed" for e in cache.events)
    _wait(lambda: manager.get(rid).status == "done", timeout=120, what="resumed run done")
    at.run()
    assert any(s.value.startswith("Done") for s in at.success), _texts(at)
    steps = _steps(manager.store, rid)
    assert steps == sorted(set(steps)) and steps[-1] == 20  # 10 steps/epoch, no step repeated
    assert at.session_state[K + "curves"].n_points == len(steps)
    assert manager.store.get(rid).result["test_acc"] > 0.1
    assert not at.exception


def test_fork_from_the_saved_runs_panel(manager):
    rid = _stopped_run(manager.store, epochs_done=1, epochs=3)
    at = _app()
    assert at.selectbox(key=K + "saved").value == rid
    assert any("stopped: 1 epoch saved of 3" in w.value for w in at.warning)
    f = K + f"fork_{rid}_"
    assert at.selectbox(key=f + "epoch").options == ["1"]
    submit = "FormSubmitter:" + K + "fork_form-Fork"
    # the fork's last epoch must come after the fork point: refused with a message, nothing created
    at.number_input(key=f + "epochs").set_value(1)
    at.button(key=submit).click().run()
    assert any("epochs" in e.value and "fork epoch" in e.value for e in at.error), _texts(at)
    (fork_box,) = [e for e in at.expander if e.label == "Fork from a saved epoch"]
    assert fork_box.proto.expanded  # the form stays open ...
    assert any("epochs" in e.value and "fork epoch" in e.value for e in fork_box.error)  # ... with the error inside it
    assert manager.jobs() == [] and len(manager.list_runs()) == 1
    at.number_input(key=f + "epochs").set_value(2)
    at.number_input(key=f + "lr").set_value(5e-4)
    at.selectbox(key=f + "optimizer").set_value("sgd")
    at.text_input(key=f + "name").input("child")
    at.button(key=submit).click().run()
    assert not at.exception and not at.error, _texts(at)
    (job,) = manager.jobs()
    assert job.name == "child" and job.parent == {"run_id": rid, "epoch": 1}
    assert at.session_state[K + "run"] == job.id
    cfg = manager.store.get(job.id).config
    assert cfg["parent"] == {"run_id": rid, "epoch": 1}
    assert cfg["recipe"]["lr"] == pytest.approx(5e-4) and cfg["recipe"]["optimizer"] == "sgd"
    _wait(lambda: manager.get(job.id).status == "done", timeout=120, what="fork done")
    steps = _steps(manager.store, job.id)
    assert steps[0] == 11 and steps[-1] == 20  # continues the parent's axis after epoch 1


def test_stored_run_in_the_url_shows_its_curves_after_a_restart(manager):
    rid = _stopped_run(manager.store, epochs_done=2, epochs=2, name="finished earlier")
    at = AppTest.from_file(PAGE, default_timeout=60)
    at.query_params["run"] = rid
    at.run()
    assert not at.exception, at.exception
    assert at.selectbox(key=K + "show").value == rid
    assert any(s.value.startswith("Done") for s in at.success), _texts(at)
    cache = at.session_state[K + "curves"]
    assert cache.n_points == 20 and len(cache.epochs) == 2
    assert at.button(key=K + "stop").disabled
    at.button(key=K + "saved_show").click().run()  # the saved panel's Show curves picks the same run
    assert at.selectbox(key=K + "show").value == rid and not at.exception


def test_damaged_run_shows_its_error_without_buttons_and_others_still_list(manager):
    good = _stopped_run(manager.store, epochs_done=1, epochs=2, name="good")
    bad = manager.store.create({"preset": "seed002", "spec": [], "recipe": {}}, name="bad")
    (bad.path / "config.json").unlink()
    at = _app()
    rows = at.dataframe[-1].value
    assert set(rows["id"]) == {good, bad.id}
    at.selectbox(key=K + "saved").set_value(bad.id).run()
    errs = [e.value for e in at.error]
    assert any("Damaged run folder" in e and "config.json" in e for e in errs), errs
    assert not any(b.key == K + "saved_resume" for b in at.button)
    at.selectbox(key=K + "saved").set_value(good).run()
    assert not at.button(key=K + "saved_resume").disabled
    assert not at.exception
