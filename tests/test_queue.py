"""A queued job says what it waits for, and the Train page can raise the number of jobs at once
(issue 11, item 13). Real job manager (the app's), real MNIST, the job tests' tiny net."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from cnnlab.errors import ConfigError
from cnnlab.plan import plan_run

from test_jobs import TINY, cfg, wait_for

PAGE = str(Path(__file__).resolve().parents[1] / "app_pages" / "train.py")
K = "train_"


def _infos(at: AppTest) -> str:
    return "\n".join(str(e.value) for e in at.info)


def test_a_queued_job_names_the_jobs_holding_the_slots_and_the_page_raises_the_limit(manager):
    first = manager.submit("tiny", plan_run(TINY, cfg(epochs=1000)), name="first")
    second = manager.submit("tiny", plan_run(TINY, cfg(epochs=1000)), name="second")
    manager.pause(second)
    wait_for(lambda: manager.get(second).status == "paused", what="the pause")
    wait_for(lambda: manager.get(first).status == "running", what="the first job's first step")
    third = manager.submit("tiny", plan_run(TINY, cfg(epochs=1)), name="third")
    view = manager.get(third)
    assert view.status == "queued"
    assert "“first” (running)" in view.message and "“second” (paused)" in view.message
    assert "keeps its slot" in view.message and "next in line" in view.message

    at = AppTest.from_file(PAGE, default_timeout=60)
    at.query_params["run"] = third
    at.run()
    assert not at.exception, at.exception
    assert "“second” (paused)" in _infos(at) and "Jobs at once" in _infos(at)
    assert at.number_input(key=K + "max_jobs").value == 2
    at.number_input(key=K + "max_jobs").set_value(3).run()
    assert not at.exception
    assert not any("max_concurrent" in w.value for w in at.warning), [w.value for w in at.warning]
    assert manager.max_concurrent == 3
    wait_for(lambda: manager.get(third).status not in ("queued",), what="the queued job to start")
    assert manager.wait(third, 120).status == "done"
    assert manager.get(second).status == "paused" and manager.get(first).status == "running"


@pytest.mark.parametrize("bad", [0, 17, 2.5, "3", True, None])
def test_the_limit_is_checked(manager, bad):
    with pytest.raises(ConfigError, match="max_concurrent"):
        manager.set_max_concurrent(bad)
    assert manager.max_concurrent == 2
