"""Draw page through streamlit.testing.v1.AppTest: a saved run in the temp store, real MNIST test images."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from streamlit.testing.v1 import AppTest

from cnnlab import settings
from cnnlab.models import build_model
from cnnlab.plan import plan_run
from cnnlab.presets import get_preset
from cnnlab.recipe import TrainConfig
from cnnlab.recorder import run_config
from cnnlab.runs import RunStore

PAGE = str(Path(__file__).resolve().parents[1] / "app_pages" / "draw.py")
K = "draw_"


def save_run(preset: str = "seed002", name: str = "draw test run", seed: int = 0) -> str:
    """A run in the test's store with seeded untrained weights in best.pt and last.pt."""
    p = get_preset(preset)
    run = RunStore().create(run_config(preset, plan_run(p.spec, TrainConfig.from_dict({**p.recipe, "epochs": 1}))),
                            name=name)
    torch.manual_seed(seed)
    sd = build_model(p.spec).state_dict()
    for which in ("best", "last"):
        run.save_checkpoint({"model": sd, "epoch": 1, "val_acc": 0.42}, which)
    run.write_status(status="done", epoch=1, best_val_acc=0.42)
    return run.id


@pytest.fixture(autouse=True)
def _fresh_manager():
    """The job manager is process-wide: rebuild it on this test's store, if it exists yet."""
    try:
        from cnnlab import ui
    except ImportError:
        yield
        return
    ui.release_managers()
    yield
    ui.release_managers()


def _app() -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=90)
    at.run()
    _clean(at)
    return at


def _clean(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def _infos(at: AppTest) -> str:
    return " ".join(e.value for e in at.info)


def test_no_saved_runs_hints_how_to_train():
    at = _app()
    text = _infos(at)
    assert "No trained model yet" in text and "python -m cnnlab train --preset fast" in text
    assert "Train" in text
    assert not at.selectbox and not at.metric


def test_empty_canvas_prompts_to_draw_without_a_prediction():
    save_run()
    at = _app()
    assert "Draw a digit" in _infos(at)
    assert not at.metric  # no prediction for an empty canvas
    assert at.slider(key=K + "brush").value == 20
    at.button(key=K + "clear").click().run()  # a fresh canvas key; still the prompt
    _clean(at)
    assert at.session_state[K + "canvas_n"] == 1 and "Draw a digit" in _infos(at)


def test_select_a_run_and_a_test_image_shows_a_prediction(mnist):
    other = save_run(name="older run", seed=1)
    rid = save_run(name="newest run", seed=2)
    at = _app()
    model = at.selectbox(key=K + "model")  # one entry a run (name · preset), its weights beside it
    assert any(o.startswith("newest run · seed002") for o in model.options)
    assert any(o.startswith("older run · seed002") for o in model.options)
    assert len(model.options) == 2
    model.set_value(other).run()
    assert at.selectbox(key=K + "model_weights").options == ["best epoch", "last epoch"]
    at.selectbox(key=K + "model_weights").set_value("last").run()
    at.radio(key=K + "source").set_value("Test-set image").run()
    at.number_input(key=K + "test_idx").set_value(3).run()
    _clean(at)
    assert f"true label **{int(mnist.test_y[3])}**" in " ".join(c.value for c in at.caption)
    (metric,) = at.metric
    assert metric.label == "Prediction" and metric.value in [str(d) for d in range(10)]
    assert "confident" in metric.delta
    # the page's own model matches a direct forward pass on that image
    from cnnlab.inference import probes, robustness
    from cnnlab.modelsource import ModelRef, ModelSource

    direct = probes.predict(ModelSource(RunStore()).load(ModelRef(other, "last")).model,
                            robustness.test_image(mnist.test_x, 3))
    assert metric.value == str(direct.top)
    assert rid != other


def test_every_view_and_attribution_renders():
    save_run(seed=1, name="model a")
    b = save_run("fast", seed=2, name="model b")
    at = _app()
    at.selectbox(key=K + "model").set_value(b).run()
    at.radio(key=K + "source").set_value("Test-set image").run()
    charts = len(at.get("plotly_chart"))
    for method in ("Grad-CAM", "Integrated gradients", "Saliency"):
        at.radio(key=K + "attr").set_value(method).run()
        _clean(at)
    at.selectbox(key=K + "layer").set_value(2).run()  # the fast net's third conv
    _clean(at)
    assert "Showing 32 of 96 maps" in " ".join(c.value for c in at.caption)  # the third conv has 96
    at.radio(key=K + "view").set_value("Compare two models").run()
    _clean(at)
    assert at.selectbox(key=K + "model_b").value != at.selectbox(key=K + "model").value
    assert at.selectbox(key=K + "cmp_layer_A") and at.selectbox(key=K + "cmp_layer_B")
    at.radio(key=K + "view").set_value("Robustness").run()
    at.slider(key=K + "rot").set_value(30).run()
    at.slider(key=K + "thick").set_value(1.0).run()
    assert at.radio(key=K + "sweep").options == ["Rotation", "Shift right", "Shift down", "Stroke thickness"]
    at.radio(key=K + "sweep").set_value("shift_x").run()
    _clean(at)
    assert len(at.get("plotly_chart")) >= 4 and charts >= 4


def test_random_and_random_misclassified_pick_test_images(mnist):
    save_run()
    at = _app()
    at.radio(key=K + "source").set_value("Test-set image").run()
    at.button(key=K + "random_wrong").click().run()
    _clean(at)
    idx = at.number_input(key=K + "test_idx").value
    (metric,) = at.metric
    assert metric.value != str(int(mnist.test_y[idx]))  # the model really gets this one wrong
    at.button(key=K + "random").click().run()
    _clean(at)
    assert 0 <= at.number_input(key=K + "test_idx").value < len(mnist.test_x)


def test_corrupt_checkpoint_is_a_message_not_a_traceback():
    rid = save_run()
    (settings.checkpoint_dir() / rid / "best.pt").write_bytes(b"garbage")
    at = AppTest.from_file(PAGE, default_timeout=90).run()
    assert not at.exception
    assert any("best.pt" in e.value and "Cannot load" in e.value for e in at.error)
    at.selectbox(key=K + "model_weights").set_value("last").run()  # the other checkpoint still works
    _clean(at)


def test_feature_map_mosaic_tiles_every_shown_map_on_one_scale():
    import numpy as np

    from cnnlab.plots import probe

    maps = np.arange(40 * 5 * 5, dtype=np.float32).reshape(40, 5, 5)
    big, chan = probe.tile_maps(maps[:32], cols=8)
    assert big.shape == (4 * 6 - 1, 8 * 6 - 1) and np.isnan(big[5, 0])  # 1-pixel NaN gaps
    assert np.array_equal(big[6:11, 6:11], maps[9]) and (chan[6:11, 6:11] == 9).all()
    fig = probe.feature_map_mosaic(maps, "3_conv")
    (trace,) = fig.data
    assert trace.zmin == 0 and trace.zmax == float(maps[:32].max())
    assert "40 maps 5x5 (showing first 32)" in fig.layout.title.text


def test_filters_mosaic_is_one_heatmap_on_a_scale_symmetric_about_zero():
    import numpy as np

    from cnnlab.plots import probe

    w = np.random.default_rng(0).normal(size=(40, 3, 5, 5)).astype(np.float32)
    (trace,) = probe.filters_mosaic(w).data
    lim = float(np.abs(w[:32, 0]).max())
    assert trace.zmin == -lim and trace.zmax == lim
    assert trace.z.shape == (4 * 6 - 1, 8 * 6 - 1)  # 32 filters of input channel 0, 8 a row
    assert np.array_equal(trace.z[6:11, 6:11], w[9, 0]) and (trace.customdata[6:11, 6:11] == 9).all()
    title = probe.filters_mosaic(w).layout.title.text
    assert "40 x 5x5" in title and "input channel 0" in title and "showing first 32" in title
