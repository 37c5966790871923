"""Train page (AppTest): the LR range test section and live epochs, against the real finder and job manager."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from cnnlab.runs import RunStore
from test_train_page import K, PAGE, _texts, _tiny, _wait


def _app() -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=120)
    at.run()
    assert not at.exception, at.exception
    return at


def test_lr_finder_runs_in_the_background_and_fills_the_form(manager) -> None:
    from cnnlab import trainform as tf
    from cnnlab import ui

    ui.get_lr_finder.clear()
    at = _app()
    at.selectbox(key=K + "preset").set_value("seed002_1conv").run()
    _tiny(at, subset=4000, batch=32)
    at.number_input(key=K + "lrf_steps").set_value(100).run()
    at.button(key=K + "lrf_start").click().run()
    assert not at.exception and not at.error, _texts(at)
    finder = ui.get_lr_finder()
    job = finder.get(at.session_state[K + "lrf_job"])
    assert job is not None and job.cfg.data.subset == 4000 and job.cfg.batch_size == 32 and job.steps == 100
    at.run()
    if not job.done:  # while it runs: progress and a Cancel button
        assert at.button(key=K + "lrf_cancel")
        assert any(p.value >= 0 for p in at.get("progress"))
    _wait(lambda: job.done, timeout=600, what="the range test")
    at.run()
    assert job.status == "done", job.message
    res = job.result
    assert at.get("plotly_chart")  # the loss-vs-LR figure
    assert any("Suggested learning rate" in s.value for s in at.success)
    at.button(key=K + "lrf_use").click().run()
    assert not at.exception
    assert at.number_input(key=K + "lr").value == pytest.approx(tf.round_lr(res.suggestion))
    assert manager.jobs() == [] and RunStore().list_runs() == []  # the finder saves no run


def test_live_epochs_field_extends_a_running_job(manager) -> None:
    at = _app()
    _tiny(at, subset=1024, epochs=1, batch=32)
    at.button(key=K + "launch").click().run()
    rid = manager.jobs()[0].id
    manager.pause(rid)
    _wait(lambda: manager.get(rid).status in ("paused", "done"), what="paused")
    assert manager.get(rid).status == "paused"
    at.run()
    live_epochs = next(n for n in at.number_input if n.label == "Live epochs")  # its key carries the value shown
    assert live_epochs.value == 1
    live_epochs.set_value(2)
    at.button(key="FormSubmitter:train_live_form-Apply").click().run()
    assert not at.error, _texts(at)
    manager.unpause(rid)
    v = manager.wait(rid, timeout=600)
    assert v.status == "done" and v.epochs_done == 2 and v.epochs == 2
    at.run()
    cache = at.session_state[K + "curves"]
    assert any(e.get("field") == "epochs" and e["new"] == 2 for e in cache.events)  # marked on the curves
    assert "epoch 2/2" in at.get("progress")[0].proto.text
