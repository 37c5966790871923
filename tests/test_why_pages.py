"""The "see why" views on the Compare and Draw pages (AppTest) on real saved runs (tiny MNIST subsets)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from cnnlab import compare as C
from cnnlab import epochs as EP
from cnnlab import fixes
from cnnlab.engine import Trainer
from cnnlab.plan import plan_run
from cnnlab.recorder import RunRecorder, create_run
from cnnlab.runs import RunStore
from test_compare import runs_template, store  # noqa: F401  (fixtures: alpha, its fork, a diverged, a broken run)
from test_jobs import TINY, cfg

ROOT = Path(__file__).resolve().parents[1]
KC, KD = "compare_", "draw_"


def _run(at: AppTest) -> AppTest:
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _figs(at: AppTest) -> list[dict]:
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def _texts(at: AppTest) -> str:
    return "\n".join(str(e.value) for kind in ("markdown", "caption", "error", "info") for e in getattr(at, kind))


def test_compare_page_shows_what_the_fork_fixed_and_broke_and_the_map(manager, store, mnist):
    ids = store.ids
    at = _run(AppTest.from_file(str(ROOT / "app_pages" / "compare.py"), default_timeout=120))
    assert not at.toggle(key=KC + "fix_on").value  # both evaluations only on demand
    at.toggle(key=KC + "fix_on").set_value(True)
    _run(at)
    at.selectbox(key=KC + "fix_a").set_value(ids["alpha"])
    at.selectbox(key=KC + "fix_b").set_value(ids["fork"])
    at.radio(key=KC + "fix_which").set_value("last")
    _run(at)
    d = fixes.error_diff(C.evaluate_run(store, ids["alpha"], "last", mnist),
                         C.evaluate_run(store, ids["fork"], "last", mnist))
    assert f"**B fixed {len(d.fixed)}** test images A got wrong and **broke {len(d.broken)}**" in _texts(at)
    digit = int(np.argmax(d.counts("fixed")))
    at.selectbox(key=KC + "fix_digit").set_value(digit)
    _run(at)
    bars = next(f for f in _figs(at) if f["data"][0].get("name", "").startswith("B fixed"))
    assert bars["data"][0]["marker"]["line"]["width"][digit] == 3
    assert f"**Fixed by B (A was wrong)**: {d.counts('fixed')[digit]}" in _texts(at)
    assert not at.toggle(key=KC + "map_on").value  # the map is computed only on demand
    at.toggle(key=KC + "map_on").set_value(True)
    _run(at)
    at.selectbox(key=KC + "map_run").set_value(ids["alpha"])
    _run(at)
    tmap = next(f for f in _figs(at) if any(t.get("name") == "0" for t in f["data"]))
    assert "PC 1" in json.dumps(tmap["layout"]["xaxis"])
    at.session_state[KC + "map_selected"] = 7  # what a click on test image #7 stores
    _run(at)
    assert f"true **{int(mnist.test_y[7])}** · predicted" in _texts(at)


@pytest.fixture
def three_epochs(mnist) -> str:
    """A real run in the test's store with epoch_1..3.pt."""
    store = RunStore()
    c = cfg(epochs=3)
    run = create_run(store, "custom", plan_run(TINY, c), name="three epochs", source="cli")
    assert Trainer(plan_run(TINY, c), mnist, callbacks=[RunRecorder(run)]).run().status == "done"
    return run.id


def test_draw_page_across_epochs_and_test_set_map(manager, three_epochs, mnist):
    at = _run(AppTest.from_file(str(ROOT / "app_pages" / "draw.py"), default_timeout=120))
    at.selectbox(key=KD + "model").set_value(three_epochs)  # its best epoch is the default weights
    at.radio(key=KD + "source").set_value("Test-set image")
    _run(at)
    at.number_input(key=KD + "test_idx").set_value(11)
    at.radio(key=KD + "view").set_value("Across epochs")
    _run(at)
    assert not at.error, [e.value for e in at.error]
    heat = next(f for f in _figs(at) if f["data"][0].get("type") == "heatmap" and f["data"][0].get("y") == ["1", "2", "3"])
    want = EP.epoch_probs(RunStore(), three_epochs, mnist.test_x[11].numpy() / 255.0)
    got = np.asarray(heat["data"][0]["z"]["bdata"] if isinstance(heat["data"][0]["z"], dict) else heat["data"][0]["z"])
    if got.dtype.kind in "US":  # base64 typed array
        import base64

        got = np.frombuffer(base64.b64decode(heat["data"][0]["z"]["bdata"]), dtype=heat["data"][0]["z"]["dtype"])
    assert np.allclose(np.asarray(got, float).reshape(3, 10), want.probs, atol=1e-5)
    assert "Top class after each epoch:" in _texts(at)
    at.radio(key=KD + "view").set_value("Test-set map")
    _run(at)
    assert not at.error, [e.value for e in at.error]
    tmap = next(f for f in _figs(at) if any(t.get("name") == "your drawing" for t in f["data"]))
    star = next(t for t in tmap["data"] if t.get("name") == "your drawing")
    assert star["marker"]["symbol"] == "star"
    at.session_state[KD + "map_selected"] = 11
    _run(at)
    assert f"true **{int(mnist.test_y[11])}** · predicted" in _texts(at)
