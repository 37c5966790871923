"""Sweep page in a real browser, on a real local Ray (inside the loopback-only namespace).

A user defines a small sweep, sees trials appear and the parallel-coordinates plot fill in, stops one
trial, stops the sweep, and finds the trials on the Compare page through its sweep filter.
With CNNLAB_SCREENSHOTS=1 it saves docs/screenshots/sweep.png.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time

from tests.sweep_support import require_ray, short_tmp

from .conftest import REPO_ROOT
from .harness import (
    _track_runs,
    click_button,
    expect_text,
    fill_number,
    get_exception_blocks,
    goto,
    navigate,
    screenshot,
    wait_for_rerun,
    widget,
)


def _statuses(store) -> dict[str, str]:
    """run id -> status of the sweep's trials, read from the store the page writes to."""
    out = {}
    for cfg_path in store.glob("*/config.json"):
        cfg = json.loads(cfg_path.read_text())
        if cfg.get("sweep"):
            st = json.loads((cfg_path.parent / "status.json").read_text())
            out[cfg_path.parent.name] = st["status"]
    return out


def _wait(cond, timeout: float, what: str):
    deadline = time.time() + timeout
    while time.time() < deadline:
        got = cond()
        if got:
            return got
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def _say(what: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {what}", flush=True)


def _click_visible(page, name: str) -> None:
    """Click the visible button `name` (the polling fragment can briefly hold a hidden stale copy)."""
    btn = page.get_by_role("button", name=name).filter(visible=True).first
    btn.wait_for(state="visible", timeout=30_000)
    runs = _track_runs(page)
    # a DOM click: on the loaded 2-core box Chromium's input pipeline lagged past 30 s behind the redraws
    btn.dispatch_event("click", timeout=60_000)
    wait_for_rerun(page, runs, timeout=60_000)


def test_define_watch_stop_and_compare_a_sweep(streamlit_server, page, tmp_path):
    require_ray()
    store = tmp_path / "checkpoints"
    ray_tmp = short_tmp("rte-")
    env = {"CNNLAB_CHECKPOINT_DIR": str(store), "RAY_TMPDIR": str(ray_tmp), "RAY_USAGE_STATS_ENABLED": "0",
           "CNNLAB_DATA_DIR": os.environ.get("CNNLAB_DATA_DIR", str(REPO_ROOT.parent / "shared" / "data"))}
    ok = False
    try:
        server = streamlit_server(REPO_ROOT / "app.py", env=env)
        goto(page, f"{server.url}/sweep", timeout=120_000)
        expect_text(page, "Sweeps")
        # a bad space is refused on the page, naming the field, and starts nothing
        space = widget(page, "stTextArea", "Search space (one FIELD=SPEC a line)").locator("textarea")
        space.fill("lr=loguniform:0.01:0.001")
        space.press("Control+Enter")
        click_button(page, "Start sweep")
        _say('expect_text(page, re.compile(r')
        expect_text(page, re.compile(r"lr: LO 0.01 is greater than HI 0.001"))
        assert not (store / "_sweeps").exists()
        # a real one: 3 trials of long enough runs to stop one mid-way
        space.fill("lr=loguniform:0.0003:0.01")
        space.press("Control+Enter")
        fill_number(page, "Trials", 3)
        fill_number(page, "Epochs", 40)
        fill_number(page, "Training subset (0 = all)", 1000)
        click_button(page, "Start sweep")
        # trials appear and the parallel-coordinates plot fills in (a line once a trial has an epoch)
        _say('expect_text(page, re.compile(r')
        expect_text(page, re.compile(r"Hyperparameters → validation accuracy \([1-9]\d* trials?\)"), timeout=300_000)
        _say('expect_text(page, "Best val ac')
        expect_text(page, "Best val acc", timeout=30_000)
        from playwright.sync_api import expect

        expect(page.locator('[data-testid="stPlotlyChart"] .parcoords').first).to_be_attached(timeout=60_000)
        _say('running = _wait(')
        running = _wait(lambda: [r for r, s in _statuses(store).items() if s == "running"], 120, "a running trial")
        # stop one trial: the default choice of "Trial to stop" is the first running one
        _say('_click_visible(page, "Stop tri')
        _click_visible(page, "Stop trial")
        _say('stopped = _wait(')
        stopped = _wait(lambda: [r for r, s in _statuses(store).items() if s == "stopped"], 120, "a stopped trial")
        assert set(stopped) <= set(running) | set(_statuses(store))
        if os.environ.get("CNNLAB_SCREENSHOTS") == "1":
            page.set_viewport_size({"width": 1400, "height": 1400})
            page.locator('[data-testid="stPlotlyChart"] .parcoords').first.wait_for(state="visible", timeout=60_000)
            time.sleep(6)  # two fragment runs: the charts redraw at the new size
            screenshot(page, REPO_ROOT / "docs" / "screenshots" / "sweep.png")
        # stop the sweep: every trial ends, the sweep says stopped
        _say('_click_visible(page, "Stop swe')
        _click_visible(page, "Stop sweep")
        _say('expect_text(page, re.compile(r')
        expect_text(page, re.compile(r"status stopped"), timeout=180_000)
        statuses = _statuses(store)
        assert statuses and all(s in ("done", "stopped") for s in statuses.values()), statuses
        sweep_id = json.loads(next((store / "_sweeps").glob("*/sweep.json")).read_text())["id"]
        # the trials are runs: the Compare page lists them and filters by the sweep
        _say('navigate(page, server, "Compar')
        navigate(page, server, "/compare")
        expect_text(page, "Compare runs", timeout=90_000)
        box = widget(page, "stMultiSelect", "Sweep", timeout=60_000)
        runs = _track_runs(page)
        box.get_by_role("combobox").click()
        page.get_by_role("option").filter(has_text=sweep_id).first.click()
        wait_for_rerun(page, runs)
        page.keyboard.press("Escape")
        expect_text(page, f"{len(statuses)} of {len(statuses)} runs shown", timeout=20_000)
        assert get_exception_blocks(page) == []
        assert page.errors == []
        ok = True
    finally:
        if not ok:
            try:
                screenshot(page, tmp_path / "failed.png")
                print(f"screenshot of the failure: {tmp_path / 'failed.png'}")
            except Exception:  # noqa: BLE001 - the original failure is what matters
                pass
        shutil.rmtree(ray_tmp, ignore_errors=True)
