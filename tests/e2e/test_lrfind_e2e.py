"""LR range test in a real browser: the section polls while the test runs, then "Use this LR" fills the form.

AppTest does not run `run_every` fragments by itself; this checks that the page updates on its own.
"""

from __future__ import annotations

import os
import re

from playwright.sync_api import expect

from .conftest import REPO_ROOT
from .harness import click_button, expect_text, fill_number, get_exception_blocks, goto, select_option, widget

USE_RE = re.compile(r"^\s*Use this LR \(([0-9.e+-]+)\)\s*$")


def _shows(locator, timeout: float) -> bool:
    try:
        expect(locator.first).to_be_visible(timeout=timeout)
        return True
    except AssertionError:
        return False


def test_lr_finder_fills_the_learning_rate(streamlit_server, page, tmp_path):
    env = {"CNNLAB_CHECKPOINT_DIR": str(tmp_path / "checkpoints"), "CNNLAB_DOWNLOAD": "0",
           "CNNLAB_DATA_DIR": os.environ.get("CNNLAB_DATA_DIR") or str(REPO_ROOT.parent / "shared" / "data")}
    server = streamlit_server(REPO_ROOT / "app.py", env=env)
    goto(page, server.url, timeout=180_000)
    select_option(page, "Preset", "seed002_1conv", timeout=120_000)
    fill_number(page, "Training subset (0 = all)", 2000, timeout=120_000)
    section = page.locator('[data-testid="stExpander"]').filter(has_text="Find a learning rate (LR range test)")
    section.get_by_text("Find a learning rate (LR range test)").first.click()
    expect(section.locator("details")).to_have_attribute("open", "", timeout=30_000)
    started = section.locator('[data-testid="stProgress"]')
    click_button(page, "Run LR range test", timeout=120_000)
    if not _shows(started, 60_000):
        # CI (3 Dec) once saw the page idle with no test started after this click (no progress, no error): the click,
        # or the page rerun it asks for, was lost. A user would press again; so does the test, once, and says so.
        print("e2e: the first click on 'Run LR range test' started nothing; clicking again")
        click_button(page, "Run LR range test", timeout=120_000)
        expect(started).to_be_visible(timeout=60_000)
    # no click from here on: the section's fragment polls until the test ends
    expect_text(page, re.compile(r"Suggested learning rate"), timeout=300_000)
    button = page.get_by_role("button", name=USE_RE).first
    suggested = float(USE_RE.match(button.inner_text()).group(1))
    click_button(page, button.inner_text().strip(), timeout=120_000)
    lr = widget(page, "stNumberInput", "Learning rate").locator('input[data-testid="stNumberInputField"]')
    expect(lr).to_have_value(re.compile(rf"^{re.escape(f'{suggested:g}')}$"), timeout=30_000)
    assert get_exception_blocks(page) == []
    assert page.errors == []
    assert not (tmp_path / "checkpoints").exists() or not any((tmp_path / "checkpoints").iterdir())
