"""The "see why" computations without Streamlit: errors fixed/broken, one image across epochs, the test-set map."""

from __future__ import annotations

import numpy as np
import pytest

from cnnlab import compare as C
from cnnlab import epochs as EP
from cnnlab import fixes
from cnnlab import testmap as TM
from cnnlab.errors import LabError
from cnnlab.modelsource import ModelRef, ModelSource
from cnnlab.plots import why
from test_compare import runs_template, store  # noqa: F401  (fixtures: alpha, its fork, ...)


def _ev(labels, preds, conf) -> C.Evaluation:
    labels, preds = np.asarray(labels), np.asarray(preds)
    probs = np.full((len(labels), 10), 0.0, np.float32)
    probs[np.arange(len(labels)), preds] = conf
    return C.Evaluation("r", "best", 1, labels, preds, probs)


# ------------------------------------------------------------------ errors fixed / broken


def test_error_diff_on_a_known_error_set():
    labels = [0, 1, 2, 3, 4, 5, 1, 1]
    a = _ev(labels, [0, 7, 2, 3, 9, 5, 2, 1], [0.9, 0.6, 0.9, 0.8, 0.99, 0.9, 0.7, 0.5])
    b = _ev(labels, [0, 1, 8, 3, 4, 6, 1, 1], [0.9, 0.9, 0.55, 0.8, 0.9, 0.95, 0.8, 0.6])
    d = fixes.error_diff(a, b)
    assert d.fixed.tolist() == [4, 6, 1]  # A wrong, B right; A's confidence 0.99, 0.7, 0.6
    assert d.broken.tolist() == [5, 2]  # A right, B wrong; B's confidence 0.95, 0.55
    assert d.counts("fixed").tolist() == [0, 2, 0, 0, 1, 0, 0, 0, 0, 0]
    assert d.counts("broken")[[2, 5]].tolist() == [1, 1]
    assert d.of_digit("fixed", 1).tolist() == [6, 1] and d.of_digit("broken", 3).tolist() == []
    assert d.captions([4]) == ["A 9 99% · B 4 90%"]
    assert d.rows([5])[0] == {"test index": 5, "true": 5, "A predicts": 5, "A confidence": 0.9,
                              "B predicts": 6, "B confidence": 0.95}
    with pytest.raises(LabError):
        fixes.error_diff(a, _ev(labels[:4], labels[:4], [1] * 4))


def test_error_diff_of_a_fork_against_its_parent(store, mnist):
    ids = store.ids
    a, b = C.evaluate_run(store, ids["alpha"], "last", mnist), C.evaluate_run(store, ids["fork"], "last", mnist)
    d = fixes.error_diff(a, b)
    wrong_a, wrong_b = a.preds != a.labels, b.preds != b.labels
    assert len(d.fixed) - len(d.broken) == int(wrong_a.sum()) - int(wrong_b.sum())
    assert wrong_a[d.fixed].all() and not wrong_b[d.fixed].any() and wrong_b[d.broken].all()
    assert (np.diff(a.confidence[d.fixed]) <= 0).all() and (np.diff(b.confidence[d.broken]) <= 0).all()
    assert d.counts("fixed").sum() == len(d.fixed)
    same = fixes.error_diff(a, a)
    assert len(same.fixed) == len(same.broken) == 0
    fig = why.fix_counts(d.counts("fixed"), d.counts("broken"), selected=3)
    assert fig.data[0].name == f"B fixed ({len(d.fixed)})" and list(fig.data[1].y) == list(-d.counts("broken"))


# ------------------------------------------------------------------ one image across epochs


def test_epoch_probs_match_each_epochs_weights_and_are_cached(store, mnist):
    rid = store.ids["alpha"]  # 1 epoch: epoch_1.pt == last.pt
    img = mnist.test_x[0].numpy() / 255.0
    EP.cache_clear()
    ep = EP.epoch_probs(store, rid, img)
    assert ep.epochs == [1] and ep.probs.shape == (1, 10)
    last = ModelSource(store).load(ModelRef(rid, "last"))
    from cnnlab.inference.probes import predict

    assert np.allclose(ep.probs[0], predict(last.model, img).probs, atol=1e-6)
    m1 = EP.epoch_model(store, rid, 1)
    assert EP.epoch_model(store, rid, 1) is m1  # loaded once
    fork = EP.epoch_probs(store, store.ids["fork"], img)
    assert fork.epochs == [2]


def test_top_class_history_of_a_model_that_changes_its_mind():
    probs = np.eye(10, dtype=np.float32)[[3, 3, 5, 8, 8, 8]]
    ep = EP.EpochProbs([1, 2, 3, 4, 5, 6], probs)
    assert ep.top.tolist() == [3, 3, 5, 8, 8, 8] and ep.changes() == 2 and ep.first_stable() == 4
    flat = EP.EpochProbs([1, 2, 3], np.tile(np.full(10, 0.1, np.float32), (3, 1)))  # learned nothing
    assert flat.changes() == 0 and flat.first_stable() == 1
    assert EP.EpochProbs([], np.zeros((0, 10))).first_stable() is None
    fig = why.epoch_heatmap(ep.epochs, ep.probs)
    assert list(fig.data[1].x) == ["3", "3", "5", "8", "8", "8"]


# ------------------------------------------------------------------ the test set as a map


def test_pca_keeps_the_geometry_of_points_on_a_plane():
    rng = np.random.default_rng(0)
    u, v = np.linalg.qr(rng.normal(size=(50, 2)))[0].T
    coef = rng.normal(size=(300, 2)) * [5.0, 1.0]
    feats = 7.0 + coef[:, :1] * u + coef[:, 1:] * v
    mean, comps, explained = TM.pca2(feats)
    xy = (feats - mean) @ comps
    assert sum(explained) == pytest.approx(1.0) and explained[0] > explained[1]
    d_feat = np.linalg.norm(feats[:, None] - feats[None], axis=-1)
    d_map = np.linalg.norm(xy[:, None] - xy[None], axis=-1)
    assert np.allclose(d_feat, d_map, atol=1e-8)  # a plane maps onto the map without distortion


def test_map_places_a_test_image_where_the_map_has_it_and_marks_the_mistakes(store, mnist):
    loaded = ModelSource(store).load(ModelRef(store.ids["alpha"], "last"))
    seen = []
    tmap = TM.cached_map(("alpha", "t"), loaded.model, mnist.test_x, mnist.test_y, n=600, progress=seen.append)
    assert seen[-1] == 1.0 and len(seen) == 3  # 600 images in batches of 250
    assert tmap.xy.shape == (600, 2) and tmap.layer == "10_linear"  # seed002 (after its pixels layer)'s last linear layer
    ev = C.evaluate_run(store, store.ids["alpha"], "last", mnist)
    assert tmap.preds.tolist() == ev.preds[:600].tolist()
    assert tmap.mistakes.tolist() == np.nonzero(ev.preds[:600] != ev.labels[:600])[0].tolist()
    for i in (0, 17, 599):
        star = TM.place(tmap, loaded.model, mnist.test_x[i].numpy() / 255.0)
        assert np.allclose(star, tmap.xy[i], atol=1e-3)
    again = TM.cached_map(("alpha", "t"), loaded.model, mnist.test_x, mnist.test_y, n=600, progress=seen.append)
    assert again is tmap and len(seen) == 3  # cached: no recomputation
    fig = why.test_map(tmap.xy, tmap.labels, tmap.preds, tmap.confidence, tmap.indices, star=(0.0, 0.0),
                       star_label="7", selected=17)
    wrong = [t for t in fig.data if t.name and t.name.endswith("mistakes")]
    assert sum(len(t.x) for t in wrong) == len(tmap.mistakes)
    assert fig.data[-1].name == "your drawing" and fig.data[-1].marker.symbol == "star"
    assert TM.point_from_selection({"selection": {"points": [{"customdata": [17, 3, 0.9]}]}}) == 17
    assert TM.point_from_selection({"selection": {"points": [{"customdata": {"0": 69, "1": 0, "2": 0.2}}]}}) == 69
    assert TM.point_from_selection({"selection": {"points": []}}) is None


def test_ascii_digit_shows_the_ink():
    img = np.zeros((28, 28), np.float32)
    img[4:24, 12:16] = 1.0  # a vertical bar: a "1"
    lines = TM.ascii_digit(img).split("<br>")
    assert len(lines) == 7 and all(len(line) == 14 for line in lines)
    assert all(line[6:8] == "██" and line.count("░") == 12 for line in lines[1:6])
    assert lines[0] == lines[6] == "░" * 14  # pixel rows 0-3 and 24-27 are blank
