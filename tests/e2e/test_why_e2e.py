"""The "see why" views in a real browser on real saved runs (tiny MNIST subsets): errors a fork fixed
and the test-set map on Compare, one test image across epochs and on the map on Draw, layer health on Train."""

from __future__ import annotations

import os
import re
import sys

import pytest
import torch

from .conftest import REPO_ROOT
from .harness import NAV_LINKS, _track_runs, expect_text, get_exception_blocks, goto, screenshot, select_option
from .harness import wait_for_app, wait_for_rerun

sys.path.insert(0, str(REPO_ROOT / "tests"))
from test_compare import make_runs  # noqa: E402
from test_health import NET  # noqa: E402
from test_jobs import TINY, cfg  # noqa: E402
from cnnlab.plan import plan_run  # noqa: E402

APP = REPO_ROOT / "app.py"


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory):
    """alpha and its fork (from the Compare tests), a 3-epoch run, and a run whose first ReLU is dead."""
    from cnnlab.data import load_mnist
    from cnnlab.engine import Trainer
    from cnnlab.health import LayerHealth
    from cnnlab.models import build_model
    from cnnlab.recorder import RunRecorder, create_run
    from cnnlab.runs import RunStore

    mnist = load_mnist()
    root = tmp_path_factory.mktemp("why-e2e") / "checkpoints"
    ids = make_runs(root, mnist)
    store = RunStore(root)
    three = create_run(store, "custom", plan_run(TINY, cfg(epochs=3)), name="three epochs", source="cli")
    Trainer(plan_run(TINY, cfg(epochs=3)), mnist, callbacks=[RunRecorder(three), LayerHealth()]).run()
    model = build_model(NET, seed=0)
    with torch.no_grad():
        model[0].bias.fill_(-100.0)
    dead = create_run(store, "custom", plan_run(NET, cfg(epochs=1)), name="dead relus", source="cli")
    Trainer(plan_run(NET, cfg(epochs=1)), mnist, callbacks=[RunRecorder(dead), LayerHealth(every=4)], init_weights=model.state_dict()).run()
    ids.update(three=three.id, dead=dead.id)
    return root, ids


def _env(root) -> dict[str, str]:
    return {"CNNLAB_CHECKPOINT_DIR": str(root), "CNNLAB_DOWNLOAD": "0",
            "CNNLAB_DATA_DIR": os.environ.get("CNNLAB_DATA_DIR", str(REPO_ROOT.parent / "shared" / "data"))}


def _val(root, rid: str) -> str:
    from cnnlab.runs import RunStore

    return f"{RunStore(root).get(rid).info().best_val_acc:.1%}"


def _done(page, shot) -> None:
    """A screenshot for the record; no exception block, no page error."""
    screenshot(page, shot)
    assert get_exception_blocks(page) == []
    assert page.errors == []


def _click(page, locator) -> None:
    runs = _track_runs(page)
    locator.click()
    wait_for_rerun(page, runs)


def _click_map_point(page, chart) -> None:
    """Click the first drawn point of the map (plotly's drag layer takes the click, as a user's)."""
    point = chart.locator(".scatterlayer .trace .points path").first
    point.wait_for(state="attached", timeout=30_000)
    box = point.bounding_box()
    runs = _track_runs(page)
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    expect_text(page, re.compile(r"test #\d+: true \d"), timeout=10_000)  # the hover label, with its picture
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    wait_for_rerun(page, runs)


def test_compare_fixed_broken_and_map(streamlit_server, page, store_dir, tmp_path):
    root, ids = store_dir
    server = streamlit_server(APP, env=_env(root))
    goto(page, f"{server.url}/compare", timeout=120_000)
    expect_text(page, "Which errors did B fix, which did it break?", timeout=30_000)
    _click(page, page.get_by_text("Compare the test errors of two runs", exact=False).first)
    select_option(page, "Run A (before)", "alpha")
    select_option(page, "Run B (after)", "alpha fork")
    expect_text(page, re.compile(r"B fixed \d+ test images A got wrong and broke \d+"), timeout=60_000)
    expect_text(page, "Fixed by B (A was wrong)")
    _click(page, page.get_by_text("Show the test set as a map", exact=False).first)
    chart = page.locator('[data-testid="stPlotlyChart"]').filter(has_text="PC 1").first
    chart.wait_for(state="visible", timeout=120_000)
    _click_map_point(page, chart)
    expect_text(page, re.compile(r"true \d · predicted \d \(\d+%\)"), timeout=30_000)
    _done(page, tmp_path / "compare_why.png")


def test_draw_across_epochs_and_map_star(streamlit_server, page, store_dir, tmp_path):
    root, ids = store_dir
    server = streamlit_server(APP, env=_env(root))
    goto(page, server.url, timeout=120_000)
    page.locator(NAV_LINKS).filter(has_text="Draw").first.click()
    wait_for_app(page, timeout=60_000)
    from cnnlab.runs import RunStore

    info = RunStore(root).get(ids["three"]).info()  # one entry per run: name · preset · val (best weights default)
    select_option(page, "Model", f"three epochs · {info.preset or 'custom'} · val {_val(root, ids['three'])}",
                  timeout=60_000)
    _click(page, page.get_by_text("Test-set image", exact=True).first)
    _click(page, page.get_by_text("Across epochs", exact=True).first)
    expect_text(page, re.compile(r"Top class after each epoch: 1: \d, 2: \d, 3: \d"), timeout=60_000)
    expect_text(page, "after epoch")  # the heatmap's axis
    _click(page, page.get_by_text("Test-set map", exact=True).first)
    chart = page.locator('[data-testid="stPlotlyChart"]').filter(has_text="your drawing").first
    chart.wait_for(state="visible", timeout=120_000)
    _done(page, tmp_path / "draw_why.png")


def test_train_page_flags_dead_relus_of_a_saved_run(streamlit_server, page, store_dir, tmp_path):
    root, ids = store_dir
    server = streamlit_server(APP, env=_env(root))
    goto(page, f"{server.url}/?run={ids['dead']}", timeout=120_000)
    expect_text(page, re.compile(r"Layer health: 1_relu: all its ReLUs are dead"), timeout=60_000)
    chart = page.locator('[data-testid="stPlotlyChart"]').filter(has_text="4_linear").first
    chart.wait_for(state="visible", timeout=30_000)
    select_option(page, "Quantity", "dead ReLU fraction")
    page.locator('[data-testid="stPlotlyChart"]').filter(has_text="5_relu").first.wait_for(state="visible")
    _done(page, tmp_path / "train_health.png")
