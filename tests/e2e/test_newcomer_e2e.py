"""A newcomer's first hour (issue 12), in a real browser at a laptop width (1024x768) and a desktop one
(1400x1000): names that stick across tabs and sessions, Compare's actions on the run the user
sees, a canvas that fits, live fields with the job's values, a missing-data panel on every page,
a URL for every page.

Each test failed on the code before the fix; the comment at each says how.
"""

from __future__ import annotations

import json
import os
import re
import time
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
from .harness import (
    NAV_LINKS,
    click_button,
    expect_text,
    fill_number,
    fill_text,
    get_exception_blocks,
    goto,
    select_option,
    wait_for_app,
    widget,
)

APP = REPO_ROOT / "app.py"
LOAD_MS = 180_000  # a first page load reads MNIST and may evaluate a run: slow on a busy 2-core machine
VIEWPORTS = [pytest.param({"width": 1024, "height": 768}, id="1024"),
             pytest.param({"width": 1400, "height": 1000}, id="1400")]


def _data_dir() -> str:
    return os.environ.get("CNNLAB_DATA_DIR") or str(REPO_ROOT.parent / "shared" / "data")


def _env(store: Path, data: str | None = None) -> dict[str, str]:
    return {"CNNLAB_CHECKPOINT_DIR": str(store), "CNNLAB_DOWNLOAD": "0", "CNNLAB_DATA_DIR": data or _data_dir()}


def _stored_run(root: Path, name: str, preset: str = "seed002", val_acc: float = 0.9) -> str:
    """A finished run with seeded untrained weights (best.pt and last.pt) and a best accuracy to show."""
    p = get_preset(preset)
    run = RunStore(root).create(run_config(preset, plan_run(p.spec, TrainConfig.from_dict({**p.recipe, "epochs": 1}))),
                                name=name)
    torch.manual_seed(len(name))
    for which in ("best", "last"):
        run.save_checkpoint({"model": build_model(p.spec).state_dict(), "epoch": 1}, which)
    run.write_status(status="done", epoch=1, best_val_acc=val_acc)
    return run.id


def _meta(store: Path, rid: str) -> dict:
    return json.loads((store / rid / "meta.json").read_text())


def _runs(store: Path) -> list[str]:
    return sorted(p.name for p in store.iterdir() if p.is_dir() and not p.name.startswith(".")) \
        if store.is_dir() else []


def _clean(page) -> None:
    assert get_exception_blocks(page) == []
    assert page.errors == []


def _value(page, testid: str, label: str) -> str:
    return widget(page, testid, label).locator("input").first.input_value()


def _wait_for(cond, what: str, timeout: float = 120.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cond():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def _launch(page, name: str, epochs: int = 1, subset: int = 1000) -> None:
    select_option(page, "Preset", "seed002")
    fill_number(page, "Training subset (0 = all)", subset)
    fill_number(page, "Validation images", 500)
    fill_number(page, "Epochs", epochs)
    fill_text(page, "Run name (optional)", name)
    click_button(page, "Launch")


# ----------------------------------------------------------------------------- 1. names are kept

@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_run_names_survive_new_tabs_and_sessions(streamlit_server, page, browser, tmp_path, viewport):
    """Before: a new tab's first polls sent the rename box's default ("") and the run fell back to its id."""
    page.set_viewport_size(viewport)
    store = tmp_path / "checkpoints"
    server = streamlit_server(APP, env=_env(store))
    goto(page, server.url, timeout=LOAD_MS)
    _launch(page, "alpha")
    name_box_after_launch = _value(page, "stTextInput", "Run name (optional)")
    _launch(page, "beta")
    _wait_for(lambda: len(_runs(store)) == 2, "two runs")
    a, b = sorted(_runs(store), key=lambda r: _meta(store, r)["name"])
    fill_text(page, "Run name", "beta renamed")  # the watch panel shows the newest run, beta
    _wait_for(lambda: _meta(store, b)["name"] == "beta renamed", "the rename in meta.json")
    page.locator(NAV_LINKS).filter(has_text="Compare").first.click()
    wait_for_app(page, timeout=60_000)
    page.locator(NAV_LINKS).filter(has_text="Train").first.click()
    wait_for_app(page, timeout=60_000)
    _wait_for(lambda: all(json.loads((store / r / "status.json").read_text())["status"] == "done" for r in (a, b)),
              "both runs to finish")
    page.close()

    for _ in range(2):  # a new tab, then another one (a later session)
        ctx = browser.new_context(viewport=viewport)
        tab = ctx.new_page()
        goto(tab, server.url, timeout=LOAD_MS)
        time.sleep(4)  # the page settles (finished runs are looked at every 10-15 s)
        assert _value(tab, "stTextInput", "Run name") == "beta renamed"
        assert _meta(store, a)["name"] == "alpha" and _meta(store, b)["name"] == "beta renamed"
        assert get_exception_blocks(tab) == []
        ctx.close()
    assert name_box_after_launch == ""  # the next launch needs a name of its own


# ----------------------------------------------------------------------------- 2. Compare › Manage

@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_manage_targets_the_renamed_run(streamlit_server, page, tmp_path, viewport):
    """Before: after a rename the picker's old label matched nothing; Save tags went to another run."""
    page.set_viewport_size(viewport)
    store = tmp_path / "checkpoints"
    ids = {n: _stored_run(store, n) for n in ("C-seed002", "A-seed002", "B-seed002")}
    server = streamlit_server(APP, env=_env(store))
    goto(page, server.url + "/compare", timeout=LOAD_MS)
    select_option(page, "Run", "A-seed002")
    RunStore(store).rename(ids["A-seed002"], "A-renamed")  # renamed elsewhere (the Train page, another tab)
    fill_text(page, "Tags (comma-separated)", "keep, me")
    click_button(page, "Save tags")
    expect_text(page, "Tags saved: keep, me.")
    box = widget(page, "stSelectbox", "Run").get_by_role("combobox")
    from playwright.sync_api import expect

    expect(box).to_have_value("A-renamed")
    assert _meta(store, ids["A-seed002"])["tags"] == ["keep", "me"]
    assert _meta(store, ids["B-seed002"])["tags"] == [] and _meta(store, ids["C-seed002"])["tags"] == []

    fill_text(page, "Name", "A-final")  # and renamed here
    click_button(page, "Rename")
    expect_text(page, "Renamed to “A-final”.")
    expect(box).to_have_value("A-final")
    click_button(page, "Delete run")
    expect_text(page, re.compile(r"Delete “A-final” and all its files"))
    click_button(page, "Yes, delete")
    expect_text(page, "Deleted “A-final”.")
    assert sorted(_runs(store)) == sorted([ids["B-seed002"], ids["C-seed002"]])
    _clean(page)


# ----------------------------------------------------------------------------- 3. the canvas fits

_CANVAS_JS = """() => {
  const find = (root) => {
    const c = root.querySelector('canvas.upper-canvas');
    if (c) return c;
    for (const el of root.querySelectorAll('*')) if (el.shadowRoot) { const f = find(el.shadowRoot); if (f) return f; }
    return null;
  };
  const c = find(document);
  if (!c) return null;
  const r = c.getBoundingClientRect();
  let left = r.left, right = r.right, el = c;
  while (true) {  // clip by every ancestor (through shadow roots) that hides its overflow
    el = el.parentElement || (el.getRootNode() && el.getRootNode().host);
    if (!el) break;
    const cs = getComputedStyle(el);
    if (cs.overflowX !== 'visible') { const b = el.getBoundingClientRect(); left = Math.max(left, b.left);
                                       right = Math.min(right, b.right); }
  }
  return {width: r.width, visible: right - left, inViewport: r.left >= 0 && r.right <= window.innerWidth};
}"""


@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_canvas_is_whole(streamlit_server, page, tmp_path, viewport):
    """Before: at 1024 px the canvas sat in a third of the main area, ~167 of its 280 px visible."""
    page.set_viewport_size(viewport)
    store = tmp_path / "checkpoints"
    _stored_run(store, "e2e run")
    server = streamlit_server(APP, env=_env(store))
    goto(page, server.url + "/draw", timeout=LOAD_MS)
    expect_text(page, "Draw a digit in the black box", timeout=60_000)
    page.locator("canvas.upper-canvas").first.wait_for(state="visible", timeout=60_000)
    box = page.evaluate(_CANVAS_JS)
    assert box is not None and box["inViewport"], box
    assert box["visible"] >= box["width"] - 1 >= 279, box
    _clean(page)


# ----------------------------------------------------------------------------- 4. live tweaks

LIVE = {"lr": "Live learning rate", "momentum": "Live momentum", "weight_decay": "Live weight decay",
        "aug_strength": "Live augmentation strength"}


def _events(store: Path, rid: str) -> list[dict]:
    path = store / rid / "events.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()] if path.exists() else []


@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_live_fields_show_the_job_values_and_send_only_changes(streamlit_server, page, browser, tmp_path,
                                                                 viewport):
    """Before: a new tab on a paused job showed 0 in the live fields; Apply sent momentum 0 with the LR."""
    page.set_viewport_size(viewport)
    store = tmp_path / "checkpoints"
    server = streamlit_server(APP, env=_env(store))
    goto(page, server.url, timeout=LOAD_MS)
    _launch(page, "live", epochs=40, subset=5000)
    expect_text(page, re.compile(r"steps recorded"), timeout=LOAD_MS)  # training (loading MNIST can be slow)
    click_button(page, "Pause")
    expect_text(page, "Paused — press Resume to continue.", timeout=60_000)
    (rid,) = _runs(store)
    recipe = json.loads((store / rid / "config.json").read_text())["recipe"]
    url = page.url
    page.close()

    ctx = browser.new_context(viewport=viewport)
    tab = ctx.new_page()
    goto(tab, url, timeout=LOAD_MS)
    time.sleep(3)  # the page settles (a running job's status is looked at every 3 s)
    shown = {f: float(_value(tab, "stNumberInput", label)) for f, label in LIVE.items()}
    assert shown["lr"] == pytest.approx(recipe["lr"]) and shown["momentum"] == pytest.approx(recipe["momentum"])
    assert shown["weight_decay"] == pytest.approx(recipe["weight_decay"])

    fill_number(tab, "Live learning rate", recipe["lr"] / 2)  # Enter submits the form
    click_button(tab, "Apply")  # a second submit with nothing changed sends nothing
    click_button(tab, "Resume")  # the loop applies pending changes at its next step
    _wait_for(lambda: any(e.get("event") == "set" for e in _events(store, rid)), "the set event on disk")
    time.sleep(2)
    sets = [e for e in _events(store, rid) if e.get("event") == "set"]
    assert [e["field"] for e in sets] == ["lr"], sets  # momentum & co. were not sent
    assert sets[0]["new"] == pytest.approx(recipe["lr"] / 2)

    invalid = re.compile(r"Invalid value for lr")
    fill_number(tab, "Live learning rate", -1)
    click_button(tab, "Apply")
    expect_text(tab, invalid)
    time.sleep(3)  # a status look later the error is still there (the live form polls nothing)
    expect_text(tab, invalid, timeout=1_000)
    fill_number(tab, "Live learning rate", recipe["lr"] / 4)
    click_button(tab, "Apply")
    from playwright.sync_api import expect

    expect(tab.get_by_text(invalid)).to_have_count(0, timeout=10_000)
    click_button(tab, "Stop")
    assert get_exception_blocks(tab) == []
    ctx.close()


# ----------------------------------------------------------------------------- 6. missing MNIST

@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_missing_mnist_is_one_panel_on_every_page(streamlit_server, page, tmp_path, viewport):
    """Before: nothing said so until Launch, which then left a failed run behind."""
    page.set_viewport_size(viewport)
    store, data = tmp_path / "checkpoints", tmp_path / "nodata"
    server = streamlit_server(APP, env=_env(store, str(data)))
    for path in ("/train", "/draw", "/compare"):
        goto(page, server.url + path, timeout=LOAD_MS)
        expect_text(page, "MNIST is not here yet")
        expect_text(page, str(data / "MNIST" / "raw"))
    goto(page, server.url + "/train", timeout=LOAD_MS)
    launch = page.get_by_role("button", name="Launch")
    assert launch.is_disabled()
    assert not data.exists()  # nothing written, so no folder either
    assert _runs(store) == []

    raw = data / "MNIST" / "raw"  # the user puts the four files in place: the panel goes by itself
    raw.mkdir(parents=True)
    src = Path(_data_dir()) / "MNIST" / "raw"
    for f in src.iterdir():
        (raw / f.name).symlink_to(f)
    from playwright.sync_api import expect

    expect(page.get_by_text("MNIST is not here yet")).to_have_count(0, timeout=30_000)
    expect(page.get_by_role("button", name="Launch")).to_be_enabled(timeout=10_000)
    _clean(page)


# ----------------------------------------------------------------------------- 7. page URLs

@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_every_page_has_a_url_and_run_links_work(streamlit_server, page, tmp_path, viewport):
    """Before: /train answered "Page not found" and ran the main page; ?run= worked on Train only."""
    page.set_viewport_size(viewport)
    store = tmp_path / "checkpoints"
    best = _stored_run(store, "best one", val_acc=0.97)
    other = _stored_run(store, "other one", val_acc=0.50)
    server = streamlit_server(APP, env=_env(store))
    for path, title in (("/train", "Train"), ("/draw", "Draw"), ("/compare", "Compare runs"), ("/", "Train")):
        goto(page, server.url + path, timeout=LOAD_MS)
        expect_text(page, re.compile(rf"^{title}$"))
        assert page.get_by_text("Page not found").count() == 0
        assert page.get_by_text(re.compile("does not seem to exist")).count() == 0
    assert page.url.rstrip("/").endswith("/train")  # the root forwards to the Train page's own URL

    from playwright.sync_api import expect

    goto(page, f"{server.url}/train?run={other}", timeout=LOAD_MS)
    expect(widget(page, "stSelectbox", "Show run").get_by_role("combobox")).to_have_value(
        re.compile(r"^other one"), timeout=30_000)
    goto(page, f"{server.url}/?run={other}", timeout=LOAD_MS)  # the root keeps the link
    assert f"run={other}" in page.url
    goto(page, f"{server.url}/draw?run={other}", timeout=LOAD_MS)
    expect(widget(page, "stSelectbox", "Model").get_by_role("combobox")).to_have_value(
        re.compile(r"^other one"), timeout=30_000)
    goto(page, f"{server.url}/draw", timeout=LOAD_MS)  # no link: the best finished run
    expect(widget(page, "stSelectbox", "Model").get_by_role("combobox")).to_have_value(
        re.compile(r"^best one · seed002 · val 97\.0%"), timeout=30_000)
    goto(page, f"{server.url}/compare?run={other}", timeout=LOAD_MS)
    expect(widget(page, "stMultiSelect", "Selected runs")).to_contain_text("other one", timeout=30_000)
    assert best
    _clean(page)
