"""Sweep page and the sweep store through AppTest (no Ray): a sweep whose trials are real tiny runs.

The trials here are written the way the driver writes them (a run with `sweep`/`sweep_params` in its
config, trained by the engine through RunRecorder); the page must list them, plot them, name the best,
refuse a bad space, and turn its stop buttons into the stop requests the driver polls.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from cnnlab.compare import filter_rows, table_rows
from cnnlab.engine import Trainer
from cnnlab.plan import plan_run
from cnnlab.presets import get_preset
from cnnlab.recipe import TrainConfig
from cnnlab.recorder import RunRecorder, run_config
from cnnlab.runs import RunStore
from cnnlab.sweeps.space import make_def
from cnnlab.sweeps.store import SweepStore, summary

PAGE = str(Path(__file__).resolve().parents[1] / "app_pages" / "sweep.py")
K = "sweep_"


def _cfg(lr: float) -> TrainConfig:
    return TrainConfig.from_dict({"optimizer": "adam", "lr": lr, "batch_size": 100, "epochs": 1,
                                  "eval_batch_size": 2000, "data": {"subset": 1000, "val_size": 1000}})


@pytest.fixture(autouse=True)
def _fresh_launcher(_tmp_store):
    """The page's cached launcher belongs to one run store: a fresh one on this test's store."""
    from cnnlab import ui

    ui.get_sweep_launcher.clear()
    yield
    ui.get_sweep_launcher.clear()


@pytest.fixture
def sweep(mnist, _tmp_store):
    """A running sweep (this process as its driver) with one finished trial and one still 'running'."""
    store = RunStore()
    p = get_preset("seed002")
    defn = make_def("seed002", p.spec, TrainConfig.from_dict(_cfg(0.001).to_dict()).to_dict(),
                    ["lr=loguniform:0.0003:0.01"], trials=3)
    sweeps = SweepStore(store)
    sid = "sweep-test-0001"
    sweeps.create(sid, defn.to_dict(), address=None, concurrent=2)
    ids = []
    for n, lr in enumerate((0.003, 0.0005), start=1):
        cfg = TrainConfig.from_dict({**_cfg(lr).to_dict(), "data": {"subset": 1000, "val_size": 1000}})
        config = run_config("seed002", plan_run(p.spec, cfg), source="sweep")
        config.update(sweep=sid, sweep_params={"lr": lr}, sweep_trial=n)
        handle = store.create(config, name=f"t #{n}")
        if n == 1:
            Trainer(plan_run(p.spec, cfg), mnist, callbacks=[RunRecorder(handle)]).run()
        else:
            handle.write_status(status="running")  # a live trial of this (driver) process
        ids.append(handle.id)
    plain = store.create(run_config("seed002", plan_run(p.spec, _cfg(0.001))), name="not a trial")
    plain.write_status(status="stopped")
    return sid, ids, plain.id


def _run(at: AppTest) -> AppTest:
    at.run()
    assert not at.exception, at.exception
    return at


def test_empty_page_explains_and_refuses_a_bad_space(_tmp_store):
    at = _run(AppTest.from_file(PAGE, default_timeout=120))
    assert any("No sweeps yet" in i.value for i in at.info)
    at.text_area(key=K + "space").set_value("width=uniform:0.01:2")
    at.button(key=K + "start").click()
    _run(at)
    assert any("width" in e.value and "0 channels wide" in e.value for e in at.error), [e.value for e in at.error]
    assert not (RunStore().root / "_sweeps").exists()


def test_page_shows_trials_best_and_plots_and_stops(sweep):
    sid, (done_id, running_id), _ = sweep
    at = _run(AppTest.from_file(PAGE, default_timeout=120))
    table = next(df.value for df in at.dataframe if "best val acc" in df.value.columns)
    assert list(table["run"]) == [done_id, running_id]
    assert list(table["status"]) == ["done", "running"] and list(table["lr"]) == ["0.003", "0.0005"]
    assert any(m.label == "Best trial" and m.value == "#1" for m in at.metric)
    assert len(at.get("plotly_chart")) == 2
    figs = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    par = next(f for f in figs if f["data"][0]["type"] == "parcoords")
    assert [d["label"] for d in par["data"][0]["dimensions"]] == ["lr (log10)", "best val acc"]
    assert len(par["data"][0]["dimensions"][1]["values"]) == 1  # only the trial with a val accuracy
    # stop one trial, then the whole sweep: requests the driver polls
    assert next(sb for sb in at.selectbox if sb.label == "Trial to stop").value == running_id
    at.button(key=K + "stop_trial").click()
    _run(at)
    assert SweepStore().stop_requests(sid) == {"all": False, "runs": [running_id]}
    at.button(key=K + "stop_sweep").click()
    _run(at)
    assert SweepStore().stop_requests(sid)["all"] is True


def test_sweep_ids_in_listing_compare_filter_and_summary(sweep):
    sid, ids, plain = sweep
    infos = RunStore().list_runs()
    assert {i.id: i.sweep for i in infos} == {ids[0]: sid, ids[1]: sid, plain: None}
    rows = table_rows(infos)
    assert sorted(r["id"] for r in filter_rows(rows, sweeps=[sid])) == sorted(ids)
    out = summary(SweepStore(), sid)
    assert out["best"]["run_id"] == ids[0] and out["space"] == ["lr=loguniform:0.0003:0.01"]
    assert [t["run_id"] for t in out["trials"]] == ids


def test_a_sweep_whose_driver_died_lists_as_interrupted(sweep):
    sid, _, _ = sweep
    sweeps = SweepStore()
    sweeps.update(sid, pid=2**22 + 12345, proc_start=1)  # no such process
    assert sweeps.get(sid)["status"] == "interrupted"
