"""Compare page in a real browser: open it, tick two runs in the table, see both curves, drill into a cell."""

from __future__ import annotations

import os
import re
import sys

import pytest

from .conftest import REPO_ROOT
from .harness import _track_runs, expect_text, get_exception_blocks, goto, screenshot, select_option, wait_for_rerun

sys.path.insert(0, str(REPO_ROOT / "tests"))
from test_compare import make_runs  # noqa: E402

ROW_H = 35  # st.dataframe's default row and header height in px (glide-data-grid)


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory):
    from cnnlab.data import load_mnist

    root = tmp_path_factory.mktemp("compare-e2e") / "checkpoints"
    ids = make_runs(root, load_mnist())
    return root, ids


def _tick_row(page, row: int) -> None:
    """Click the row-selection checkbox of table row `row` (0-based, unsorted order)."""
    grid = page.locator('[data-testid="stDataFrame"]').first
    grid.scroll_into_view_if_needed()
    box = grid.bounding_box()
    runs = _track_runs(page)
    page.mouse.click(box["x"] + 18, box["y"] + ROW_H * (row + 1) + ROW_H / 2)
    wait_for_rerun(page, runs)


def test_compare_two_runs_and_drill_into_the_confusion_matrix(streamlit_server, page, store_dir, tmp_path):
    root, ids = store_dir
    env = {"CNNLAB_CHECKPOINT_DIR": str(root),
           "CNNLAB_DATA_DIR": os.environ.get("CNNLAB_DATA_DIR", str(REPO_ROOT.parent / "shared" / "data"))}
    server = streamlit_server(REPO_ROOT / "app.py", env=env)
    goto(page, f"{server.url}/compare")
    expect_text(page, "Compare runs")
    expect_text(page, "4 of 4 runs shown", timeout=20_000)
    # newest first: broken, diverged, fork, alpha -> tick the fork (row 2) and alpha (row 3)
    _tick_row(page, 2)
    _tick_row(page, 3)
    chart = page.locator('[data-testid="stPlotlyChart"]').first
    legend = chart.locator(".legendtext")
    expect_text(page, re.compile(r"Dotted lines are forks"), timeout=20_000)
    names = [t.strip() for t in legend.all_text_contents()]
    assert "alpha" in names and "alpha fork" in names, names
    # the diff shows the differing epochs; the evaluation drills into a cell through the fallback
    # glide-data-grid draws on a canvas; its cells also live in an (invisible) accessibility table
    page.locator('[data-testid="stDataFrame"] td', has_text="recipe.epochs").first.wait_for(state="attached")
    select_option(page, "True digit", "4")
    select_option(page, "Predicted digit", "9")
    expect_text(page, re.compile(r"test images of digit 4 predicted as 9"), timeout=20_000)
    # a click on a confusion-matrix cell selects it (plot area = plotly's drag layer)
    cm = page.locator('[data-testid="stPlotlyChart"]').filter(has_text="predicted").first
    cm.scroll_into_view_if_needed()
    area = cm.locator(".nsewdrag").first.bounding_box()
    t, p = 7, 9
    runs = _track_runs(page)
    page.mouse.click(area["x"] + (p + 0.5) / 10 * area["width"], area["y"] + (t + 0.5) / 10 * area["height"])
    wait_for_rerun(page, runs)
    expect_text(page, re.compile(r"test images of digit 7 predicted as 9"), timeout=20_000)
    screenshot(page, tmp_path / "compare.png")
    assert get_exception_blocks(page) == []
    assert page.errors == []
