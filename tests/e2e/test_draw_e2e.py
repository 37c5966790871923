"""Draw page in a real browser: mouse strokes on the real canvas -> prediction and feature maps;
clearing the canvas brings the prompt back.

`test_draw_every_digit` additionally draws 0-9 by mouse with a really trained `fast` model (trained
by its fixture, or taken from the store CNNLAB_DRAW_E2E_STORE names) and wants at least 7 right.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import torch

from cnnlab.models import build_model
from cnnlab.plan import plan_run
from cnnlab.presets import get_preset
from cnnlab.recipe import TrainConfig
from cnnlab.recorder import run_config
from cnnlab.runs import RunStore

from .conftest import REPO_ROOT
from .harness import NAV_LINKS, wait_for_app
from .harness import click_button, digit_strokes, draw_strokes, expect_text, get_exception_blocks, goto, screenshot

APP = REPO_ROOT / "app.py"
PROMPT = "Draw a digit in the black box"
METRIC = '[data-testid="stMetricValue"]'


def _saved_run(root: Path, preset: str = "seed002") -> str:
    """A run with seeded untrained weights: enough to show a prediction and feature maps."""
    p = get_preset(preset)
    run = RunStore(root).create(run_config(preset, plan_run(p.spec, TrainConfig.from_dict({**p.recipe, "epochs": 1}))),
                                name="e2e run")
    torch.manual_seed(0)
    run.save_checkpoint({"model": build_model(p.spec).state_dict(), "epoch": 1}, "best")
    run.write_status(status="done", epoch=1)
    return run.id


def _env(store: Path) -> dict[str, str]:
    return {"CNNLAB_CHECKPOINT_DIR": str(store), "CNNLAB_DOWNLOAD": "0",
            "CNNLAB_DATA_DIR": os.environ.get("CNNLAB_DATA_DIR", "")}


def _open_draw(page, server) -> None:
    # Through the app's navigation, as a user would (the app opens on the Train page).
    # (The nav link's text carries its icon, so harness.navigate's exact-title match misses it.)
    goto(page, server.url)
    page.locator(NAV_LINKS).filter(has_text="Draw").first.click()
    wait_for_app(page, timeout=60_000)
    expect_text(page, PROMPT, timeout=60_000)


def _draw(page, strokes) -> None:
    """Draw, then wait until the page has processed every stroke: each mouse-up starts a rerun, and
    the harness's wait can end after the first of them."""
    draw_strokes(page, strokes)
    n = len(strokes)
    expect_text(page, re.compile(rf"^{n} strokes? ·"), timeout=30_000)
    wait_for_app(page)


def _prediction(page) -> int:
    loc = page.locator(METRIC).first
    loc.wait_for(state="visible", timeout=30_000)
    return int(loc.inner_text().strip())


def test_draw_predict_and_clear(streamlit_server, page, tmp_path):
    _saved_run(tmp_path / "store")
    server = streamlit_server(APP, env=_env(tmp_path / "store"))
    _open_draw(page, server)
    assert page.locator(METRIC).count() == 0  # no prediction on an empty canvas

    _draw(page, digit_strokes(7))
    assert 0 <= _prediction(page) <= 9
    expect_text(page, "what the model sees (28×28)")
    expect_text(page, re.compile(r"1_conv \((relu|conv)\) — 10 maps"))  # the first conv (after seed002's pixels layer)
    expect_text(page, re.compile(r"first-layer filters"))
    expect_text(page, re.compile(r"server time for this update: \d+ ms"))
    screenshot(page, tmp_path / "drawn.png")

    draw_strokes(page, [[(100, 240), (180, 240)]])  # one more stroke: the page updates again
    expect_text(page, re.compile(r"^2 strokes ·"))
    assert 0 <= _prediction(page) <= 9

    click_button(page, "Clear")
    expect_text(page, PROMPT)
    assert page.locator(METRIC).count() == 0
    assert get_exception_blocks(page) == []
    assert page.errors == []


@pytest.fixture(scope="module")
def trained_store(tmp_path_factory) -> Path:
    """A store holding a really trained `fast` run: CNNLAB_DRAW_E2E_STORE if set, else trained here
    (the real preset on the real data, one epoch: ~10 s on two cores)."""
    root = os.environ.get("CNNLAB_DRAW_E2E_STORE")
    if root and Path(root).is_dir():
        return Path(root)
    from cnnlab.data import load_mnist
    from cnnlab.engine import Trainer
    from cnnlab.recorder import RunRecorder, create_run

    store_root = tmp_path_factory.mktemp("draw-trained") / "checkpoints"
    p = get_preset("fast")
    cfg = TrainConfig.from_dict(p.recipe)
    run = create_run(RunStore(store_root), "fast", plan_run(p.spec, cfg), name="fast (trained for the draw test)")
    result = Trainer(plan_run(p.spec, cfg), load_mnist(), callbacks=[RunRecorder(run)]).run()
    assert result.status == "done" and result.test_acc > 0.98, result
    return store_root


def test_draw_every_digit(streamlit_server, page, tmp_path, trained_store):
    server = streamlit_server(APP, env=_env(trained_store))
    _open_draw(page, server)
    got = {}
    for d in range(10):
        _draw(page, digit_strokes(d))
        got[d] = _prediction(page)
        screenshot(page, tmp_path / f"digit_{d}.png")
        click_button(page, "Clear")
        expect_text(page, PROMPT)
    print("drawn -> predicted:", got)
    assert sum(got[d] == d for d in range(10)) >= 7, got
    assert get_exception_blocks(page) == [] and page.errors == []
