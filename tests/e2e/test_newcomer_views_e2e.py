"""Issue 12, the rest of a newcomer's hour in a real browser at 1024x768 and 1400x1000: Draw's second
model (defect 5), custom-layer errors by line (8), the fork form and a second import (9), charts (10),
and the Draw page's labels (sweep names, maps not shown).

Each test failed on the code before its fix; the docstring says how.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from .harness import (
    _track_runs,
    add_option,
    choose_radio,
    click_button,
    expect_text,
    fill_number,
    goto,
    select_option,
    wait_for_rerun,
    widget,
)
from .test_newcomer_e2e import APP, LOAD_MS, VIEWPORTS, _clean, _env

CHART = '[data-testid="stPlotlyChart"]'


def _choices(root) -> dict[str, str]:
    """The Draw page's run labels by run id (name · preset · accuracy), as cnnlab computes them."""
    from cnnlab.modelsource import ModelSource
    from cnnlab.runs import RunStore

    return {c.run_id: c.label for c in ModelSource(RunStore(root)).run_choices()}


def _layer_labels(preset: str) -> list[str]:
    """The conv-layer picker's labels for a preset's model ("1. 0_conv — 16×28×28", ...)."""
    from cnnlab.data import load_mnist
    from cnnlab.inference import probes, robustness
    from cnnlab.models import build_model
    from cnnlab.presets import get_preset

    image = robustness.test_image(load_mnist().test_x, 0)
    a = probes.analyze_image(build_model(get_preset(preset).spec).eval(), image)
    return [f"{i + 1}. {m.name} — {m.maps.shape[0]}×{m.maps.shape[1]}×{m.maps.shape[2]}" for i, m in enumerate(a.layers)]


def _combo(page, label: str, nth: int = 0):
    return page.locator('[data-testid="stSelectbox"]').filter(
        has=page.locator('[data-testid="stWidgetLabel"]').filter(has_text=re.compile(rf"^\s*{re.escape(label)}\s*$"))
    ).nth(nth).get_by_role("combobox")


# ----------------------------------------------------------------------------- 5. Draw: compare two models

@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_draw_second_model_layers_sweep_labels_and_hidden_maps(streamlit_server, page, runs_store, viewport):
    """Before: after changing the second model, model B's layer picker kept the old model's label; the
    robustness sweep read `rotate_deg`; the last conv layer showed 32 of its 96 maps without saying so."""
    page.set_viewport_size(viewport)
    root, ids = runs_store
    labels = _choices(root)
    server = streamlit_server(APP, env=_env(root))
    goto(page, f"{server.url}/draw?run={ids['fast']}", timeout=LOAD_MS)
    choose_radio(page, "Test-set image")
    expect_text(page, re.compile(r"Test image #0"))

    fast = _layer_labels("fast")
    select_option(page, "Conv layer", fast[-1])  # the last conv layer of `fast`: 96 maps
    expect_text(page, "Showing 32 of 96 maps (the first 32 channels).")

    choose_radio(page, "Compare two models")
    select_option(page, "Second model", labels[ids["alpha"]])
    seed002 = _layer_labels("seed002")
    expect(_combo(page, "Conv layer", 1)).to_have_value(seed002[0])  # model B's picker: seed002's layers
    select_option(page, "Second model", labels[ids["fast"]])
    expect(_combo(page, "Conv layer", 1)).to_have_value(fast[0])  # not seed002's "1. …" any more

    choose_radio(page, "Robustness")
    for human in ("Rotation", "Shift right", "Shift down", "Stroke thickness"):
        expect(page.locator('[data-testid="stRadio"] label').filter(has_text=human)).to_have_count(1)
    sweep = page.locator(CHART).last
    expect(sweep.locator(".g-xtitle")).to_have_text("rotation (degrees, counter-clockwise)")
    choose_radio(page, "Shift right")
    expect(sweep.locator(".g-xtitle")).to_have_text("shift right (pixels)")
    for code in ("rotate_deg", "shift_x", "shift_y"):
        assert page.get_by_text(code).count() == 0
    _clean(page)


# ----------------------------------------------------------------------------- 8. custom layers by line

@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_custom_layer_errors_name_the_line_of_the_box(streamlit_server, page, tmp_path, viewport):
    """Before: errors counted layers from 0 while the box counts lines from 1, so "layer 6" was line 8 here."""
    page.set_viewport_size(viewport)
    server = streamlit_server(APP, env=_env(tmp_path / "checkpoints"))
    goto(page, server.url + "/train", timeout=LOAD_MS)
    runs = _track_runs(page)
    page.get_by_text("Custom layers (edit the architecture)").click()
    wait_for_rerun(page, runs)
    box = widget(page, "stTextArea", "Layers").locator("textarea")
    text = "conv out=8 k=3 pad=1\nrelu\n\nmaxpool k=2\nmaxpool k=2\nmaxpool k=2\nmaxpool k=2\nmaxpool k=2\nflatten\nlinear out=10"
    runs = _track_runs(page)
    box.fill(text)
    box.press("Control+Enter")
    wait_for_rerun(page, runs)
    expect_text(page, re.compile(r"line 8 \(layer #7; lines counted from 1 as in the box\) \(maxpool\)"))
    line8 = text.splitlines()[7]
    assert line8 == "maxpool k=2"
    expect(page.get_by_role("button", name="Launch")).to_be_enabled()  # pressing it refuses, names the fix
    click_button(page, "Launch")
    expect_text(page, "Not launched: fix the value marked above first.")
    assert not (tmp_path / "checkpoints").exists() or not any((tmp_path / "checkpoints").iterdir())
    _clean(page)


# ----------------------------------------------------------------------------- 9. fork form, import twice

@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_fork_error_stays_in_the_open_form_and_a_second_import_is_named(streamlit_server, page, runs_store,
                                                                         tmp_path, viewport):
    """Before: an invalid fork collapsed its form, hiding the error; an import's result showed at the top
    of the page, and a second press made a silent copy with the same name."""
    page.set_viewport_size(viewport)
    root, ids = runs_store
    server = streamlit_server(APP, env=_env(root))
    goto(page, server.url + "/train", timeout=LOAD_MS)
    select_option(page, "Saved run", f"alpha · done · {ids['alpha']}")
    page.get_by_text("Fork from a saved epoch").first.click()
    fill_number(page, "Fork epochs (last epoch)", 1)  # must be more than the fork epoch (1)
    click_button(page, "Fork")
    fork_box = page.locator('[data-testid="stExpander"]').filter(has_text="Fork from a saved epoch")
    expect(fork_box.locator('[data-testid="stAlertContentError"]')).to_be_visible(timeout=30_000)
    expect(widget(page, "stNumberInput", "Fork learning rate")).to_be_visible()  # the form is still open

    from cnnlab.runs import RunStore

    zip_path = tmp_path / "alpha.zip"
    zip_path.write_bytes(RunStore(root).export_zip(ids["alpha"]))
    import shutil

    shutil.rmtree(root / ids["alpha"])  # a zip from elsewhere: the first import is a new run
    goto(page, server.url + "/compare", timeout=LOAD_MS)
    page.locator('[data-testid="stFileUploader"] input[type="file"]').set_input_files(str(zip_path))
    expect(page.get_by_role("button", name="Import run")).to_be_enabled(timeout=30_000)
    for expected in (re.compile(r"^Imported as run “"), re.compile(r"^Already imported as “alpha”.*“alpha \(copy 2\)”")):
        click_button(page, "Import run")
        msg = page.get_by_text(expected)
        expect(msg).to_be_visible(timeout=30_000)
        assert msg.first.bounding_box()["y"] < page.viewport_size["height"]  # on screen, by the button
    names = sorted(i.name for i in RunStore(root).list_runs())
    assert names.count("alpha") == 1 and "alpha (copy 2)" in names, names
    _clean(page)


# ----------------------------------------------------------------------------- 10. charts

def _texts(loc) -> list[str]:
    return [t.strip() for t in loc.all_text_contents()]


@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_compare_charts_follow_the_metric_and_stay_readable(streamlit_server, page, runs_store, viewport):
    """Before: switching the overlay to validation accuracy left train loss showing and dropped the fork's
    parent on the time axis; accuracy ticks repeated ("99%, 99%"); grey counts on the darkest confusion cells."""
    page.set_viewport_size(viewport)
    root, ids = runs_store
    server = streamlit_server(APP, env=_env(root))
    goto(page, f"{server.url}/compare?run={ids['fork']}", timeout=LOAD_MS)
    add_option(page, "Selected runs", "alpha")
    overlay = page.locator(CHART).first
    expect(overlay.locator(".g-ytitle")).to_have_text("train loss", timeout=30_000)
    expect(overlay.locator(".legendtext")).to_have_count(2, timeout=30_000)  # the rerun that adds alpha
    assert sorted(_texts(overlay.locator(".legendtext"))) == ["alpha", "alpha fork"]

    select_option(page, "Metric", "validation accuracy")
    expect(overlay.locator(".g-ytitle")).to_have_text("validation accuracy", timeout=10_000)  # the rerun, then plotly (seconds while the app warms its spare training process)
    choose_radio(page, "time (s)")
    expect(overlay.locator(".g-xtitle")).to_have_text("time (s)", timeout=10_000)
    expect(overlay.locator(".g-ytitle")).to_have_text("validation accuracy")
    assert sorted(_texts(overlay.locator(".legendtext"))) == ["alpha", "alpha fork"]
    lines = overlay.locator(".scatterlayer .trace path.js-line")
    drawn = [d for d in (lines.nth(i).get_attribute("d") for i in range(lines.count())) if d and d != "M0,0"]
    assert len(drawn) >= 2, drawn  # the parent's line and the fork's
    ticks = _texts(overlay.locator(".ytick text"))
    assert len(ticks) == len(set(ticks)) > 1, ticks

    cm = page.locator(CHART).filter(has_text="predicted").first
    cm.scroll_into_view_if_needed()
    cells = cm.locator(".textpoint text")
    counts = [int(t) for t in _texts(cells)]
    fills = [cells.nth(i).evaluate("e => getComputedStyle(e).fill") for i in range(cells.count())]
    off = [(c, f) for k, (c, f) in enumerate(zip(counts, fills)) if k // 10 != k % 10]
    darkest = max(off)
    assert darkest[1] == "rgb(255, 255, 255)", darkest  # white on the darkest red
    assert all(f in ("rgb(255, 255, 255)", "rgb(0, 0, 0)") for f in fills)
    bars = page.locator(CHART).filter(has_text="Per-class accuracy").first
    ticks = _texts(bars.locator(".ytick text"))
    assert len(ticks) == len(set(ticks)) > 1, ticks
    _clean(page)


def _overlaps(a: dict, b: dict) -> bool:
    return not (a["x"] + a["width"] <= b["x"] or b["x"] + b["width"] <= a["x"]
                or a["y"] + a["height"] <= b["y"] or b["y"] + b["height"] <= a["y"])


@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_train_chart_legend_clear_of_the_axis_title(streamlit_server, page, runs_store, viewport):
    """Before: the legend sat on the "step" title of the Train page's chart."""
    page.set_viewport_size(viewport)
    root, ids = runs_store
    server = streamlit_server(APP, env=_env(root))
    goto(page, f"{server.url}/train?run={ids['fork']}", timeout=LOAD_MS)
    chart = page.locator(CHART).filter(has_text="loss (step)").first
    chart.scroll_into_view_if_needed()
    title = chart.locator(".g-x2title").first
    expect(title).to_have_text("step", timeout=60_000)
    legend, plot = chart.locator(".legend").first, chart.locator(".main-svg").first
    lb, tb, pb = legend.bounding_box(), title.bounding_box(), plot.bounding_box()
    assert not _overlaps(lb, tb), (lb, tb)
    assert lb["y"] + lb["height"] <= pb["y"] + pb["height"] + 1, (lb, pb)  # the legend is not cut off below
    ticks = _texts(chart.locator(".y2tick text"))
    assert len(ticks) == len(set(ticks)) > 1, ticks
    _clean(page)
