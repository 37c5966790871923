"""Every page whole at a laptop width (1024x768) and a desktop one (1400x1000), issue 12's frictions:
no button, label, metric or picker value cut short ("Random miscla…", "Res…", "Show c…", "chan…",
"onecycl"), no page that scrolls sideways, a navigation that leaves the pages their width.

Before: at 1024 px the sidebar took 300 px and the Train page's setup column was ~190 px wide:
"Resume fro…", "S…", "Optimize r", "Augmen…" and "onecycl" were cut; Compare's export buttons read
"Metrics (C…" and its Mistakes metric "623 of 10,…".
"""

from __future__ import annotations

import re

import pytest

from .harness import choose_radio, click_button, cut_texts, expect_text, get_exception_blocks, goto, select_option
from .test_newcomer_e2e import APP, LOAD_MS, VIEWPORTS, _env, _launch


def whole(page, where: str) -> None:
    assert cut_texts(page) == [], where
    assert get_exception_blocks(page) == [], where


@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_every_page_is_whole(streamlit_server, page, runs_store, viewport):
    page.set_viewport_size(viewport)
    root, ids = runs_store
    server = streamlit_server(APP, env=_env(root))

    goto(page, server.url + "/train", timeout=LOAD_MS)
    expect_text(page, "Saved runs")
    select_option(page, "Saved run", f"alpha · done · {ids['alpha']}")
    page.get_by_text("Fork from a saved epoch").first.click()
    expect_text(page, "Fork learning rate")
    whole(page, "Train")

    goto(page, f"{server.url}/draw?run={ids['fast']}", timeout=LOAD_MS)
    choose_radio(page, "Test-set image")
    expect_text(page, re.compile(r"Test image #0"))
    whole(page, "Draw: a test image, inside the model")
    choose_radio(page, "Compare two models")
    whole(page, "Draw: compare two models")
    choose_radio(page, "Robustness")
    whole(page, "Draw: robustness")

    goto(page, f"{server.url}/compare?run={ids['fork']}", timeout=LOAD_MS)
    expect_text(page, "Export and import", timeout=60_000)
    whole(page, "Compare")
    goto(page, server.url + "/sweep", timeout=LOAD_MS)
    whole(page, "Sweep")
    assert page.errors == []


@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_train_page_with_a_job_is_whole(streamlit_server, page, tmp_path, viewport):
    """The watch panel of a running (then paused) job: controls, live fields, progress, jobs table."""
    page.set_viewport_size(viewport)
    root = tmp_path / "checkpoints"
    server = streamlit_server(APP, env=_env(root))
    goto(page, server.url, timeout=LOAD_MS)
    _launch(page, "whole", epochs=40, subset=5000)
    expect_text(page, re.compile(r"steps recorded"), timeout=LOAD_MS)
    click_button(page, "Pause")
    expect_text(page, "Paused — press Resume to continue.", timeout=60_000)
    whole(page, "Train, paused job")
    click_button(page, "Stop")
    assert page.errors == []
