"""Layer health on the Train page (AppTest): a saved run with all-dead ReLUs is flagged in words and
drawn as a layer x time heatmap; the quantity selector switches the heatmap. A run without a problem
keeps the heatmap closed and undrawn (a lazy expander) until the person opens it."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from streamlit.testing.v1 import AppTest

from cnnlab.health import LayerHealth
from cnnlab.models import build_model
from cnnlab.plan import plan_run
from cnnlab.recorder import RunRecorder, create_run
from test_health import NET
from test_jobs import cfg

PAGE = str(Path(__file__).resolve().parents[1] / "app_pages" / "train.py")
K = "train_"


def _saved_run(store, mnist, dead: bool = True) -> str:
    """A real saved run whose first ReLU never fires (conv bias -100), recorded like the app records;
    `dead=False`: the same net left as initialised."""
    from cnnlab.engine import Trainer

    model = build_model(NET, seed=0)
    if dead:
        with torch.no_grad():
            model[0].bias.fill_(-100.0)
    c = cfg(epochs=1)
    run = create_run(store, "custom", plan_run(NET, c), name="dead relus" if dead else "healthy", source="cli")
    Trainer(plan_run(NET, c), mnist, callbacks=[RunRecorder(run), LayerHealth(every=4)], init_weights=model.state_dict()).run()
    return run.id


def _heatmaps(at: AppTest) -> list[dict]:
    figs = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    return [f for f in figs if any(t.get("type") == "heatmap" for t in f["data"])]


def test_saved_run_shows_layer_health_flags_and_heatmap(manager, mnist):
    rid = _saved_run(manager.store, mnist)
    at = AppTest.from_file(PAGE, default_timeout=60)
    at.query_params["run"] = rid
    at.run()
    assert not at.exception, at.exception
    errors = [e.value for e in at.error]
    assert any("Layer health: 1_relu: all its ReLUs are dead" in e for e in errors), errors
    assert at.selectbox(key=K + "health_q").value == "update_ratio"
    heat = _heatmaps(at)
    assert len(heat) == 1 and heat[0]["data"][0]["y"] == ["0_conv", "4_linear", "6_linear"]
    at.selectbox(key=K + "health_q").set_value("dead_frac").run()
    assert not at.exception, at.exception
    heat = _heatmaps(at)
    assert heat[0]["data"][0]["y"] == ["1_relu", "5_relu"]
    assert "dead ReLU fraction" in json.dumps(heat[0]["data"][0]["colorbar"])


def test_heatmap_of_a_run_without_problems_is_drawn_only_once_opened(manager, mnist):
    rid = _saved_run(manager.store, mnist, dead=False)
    at = AppTest.from_file(PAGE, default_timeout=60)
    at.query_params["run"] = rid
    at.run()
    assert not at.exception, at.exception
    assert not [e.value for e in [*at.error, *at.warning] if "Layer health" in e.value]
    assert [e.label for e in at.expander].count("Layer health") == 1
    assert _heatmaps(at) == []  # closed: nothing drawn
    at.session_state[K + "health_open"] = True  # what a click on the box does
    at.run()
    assert not at.exception, at.exception
    heat = _heatmaps(at)
    assert len(heat) == 1 and heat[0]["data"][0]["y"] == ["0_conv", "4_linear", "6_linear"]
    at.session_state[K + "health_open"] = False
    at.run()
    assert _heatmaps(at) == []
