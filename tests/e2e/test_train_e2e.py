"""Train page in a real browser: `streamlit run app.py` on 127.0.0.1, Debian's Chromium via Playwright.

Flow of a new user: pick a preset with a small subset, launch, watch the curve grow, change the
learning rate mid-run and see its marker, pause, resume, reload (the page finds the run again), stop.
With CNNLAB_SCREENSHOTS=1 it saves docs/screenshots/train.png while the run trains.
"""

from __future__ import annotations

import os
import re
import time

from .conftest import REPO_ROOT
from .harness import (
    click_button,
    expect_text,
    fill_number,
    fill_text,
    get_exception_blocks,
    goto,
    screenshot,
    select_option,
    wait_for_app,
    widget,
)

STEPS_RE = re.compile(r"^([\d,]+) steps recorded")


def _steps_recorded(page) -> int:
    text = page.get_by_text(STEPS_RE).first.inner_text()
    return int(STEPS_RE.match(text).group(1).replace(",", ""))


def _wait_steps_above(page, n: int, timeout: float = 60.0) -> int:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            got = _steps_recorded(page)
        except Exception:  # caption not drawn yet
            got = -1
        if got > n:
            return got
        time.sleep(0.25)
    raise AssertionError(f"the curve did not grow past {n} steps in {timeout:.0f}s")


def _expect_shown_run(page, pattern: re.Pattern, timeout: float = 30_000) -> None:
    """The 'Show run' selectbox shows `pattern` (its text is the combobox's value, not page text)."""
    from playwright.sync_api import expect

    box = widget(page, "stSelectbox", "Show run", timeout=timeout).get_by_role("combobox")
    expect(box).to_have_value(pattern, timeout=timeout)


def _assert_clean(page) -> None:
    assert get_exception_blocks(page) == []
    assert page.errors == []


def test_train_page_flow(streamlit_server, page, tmp_path):
    env = {"CNNLAB_CHECKPOINT_DIR": str(tmp_path / "checkpoints"), "CNNLAB_DOWNLOAD": "0",
           "CNNLAB_DATA_DIR": os.environ.get("CNNLAB_DATA_DIR") or str(REPO_ROOT.parent / "shared" / "data")}
    server = streamlit_server(REPO_ROOT / "app.py", env=env)
    goto(page, server.url)
    expect_text(page, "No runs yet")

    # choose: a cheap preset on a small subset; many epochs so it is still training while we click
    # (it is stopped at the end, so it costs only the test's own seconds)
    select_option(page, "Preset", "seed002")
    expect_text(page, re.compile("Seed 002 · 30,840-parameter"))
    fill_number(page, "Training subset (0 = all)", 1000)
    fill_number(page, "Validation images", 500)
    fill_number(page, "Epochs", 40)
    fill_number(page, "Batch size", 16)
    fill_text(page, "Run name (optional)", "e2e run")
    click_button(page, "Launch")

    # watch: the curve gains points over time, without a page reload
    _expect_shown_run(page, re.compile(r"^e2e run · seed002$"))
    n1 = _wait_steps_above(page, 0)
    n2 = _wait_steps_above(page, n1)
    assert n2 > n1
    expect_text(page, re.compile(r"epoch \d+/40 · step \d+/\d+"))

    # live tweak: the new learning rate is applied and marked on the curves
    fill_number(page, "Live learning rate", 0.0005)
    if page.get_by_text(re.compile(r"lr 0\.001→0\.0005")).count() == 0:
        click_button(page, "Apply")  # Enter may already have submitted the form
    expect_text(page, re.compile(r"lr 0\.001→0\.0005"), timeout=20_000)
    if os.environ.get("CNNLAB_SCREENSHOTS") == "1":
        _wait_steps_above(page, _steps_recorded(page) + 20)
        page.set_viewport_size({"width": 1400, "height": 1500})  # the whole page: main scrolls inside
        page.locator('[data-testid="stMain"]').evaluate("el => el.scrollTo(0, 0)")
        time.sleep(1.5)
        screenshot(page, REPO_ROOT / "docs" / "screenshots" / "train.png")
        page.set_viewport_size({"width": 1400, "height": 1000})

    # pause: steps stop; resume: they go on
    click_button(page, "Pause")
    expect_text(page, "Paused — press Resume to continue.", timeout=20_000)
    expect_text(page, "⏸")  # pause marker on the curves
    time.sleep(1.5)  # let the fragment draw the last steps before the pause
    paused_at = _steps_recorded(page)
    time.sleep(2.0)
    assert _steps_recorded(page) == paused_at
    click_button(page, "Resume")
    expect_text(page, re.compile(r"^Training…"), timeout=20_000)
    _wait_steps_above(page, paused_at)

    # a reload is a new session: the URL's ?run= brings the same live run back
    assert "run=" in page.url
    page.reload()
    wait_for_app(page)
    _expect_shown_run(page, re.compile(r"^e2e run · seed002$"), timeout=20_000)
    expect_text(page, re.compile(r"^Training…"))
    after_reload = _wait_steps_above(page, paused_at)
    expect_text(page, re.compile(r"lr 0\.001→0\.0005"))  # history is there too

    click_button(page, "Stop")
    expect_text(page, re.compile(r"stopped by the user at step \d+"), timeout=30_000)
    assert _steps_recorded(page) >= after_reload
    _assert_clean(page)
