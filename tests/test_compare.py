"""cnnlab.compare: table rows, filters, config diff, curves (forks, events), confusion cells, evaluation, import."""

from __future__ import annotations

import io
import json
import math
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from cnnlab import compare as C
from cnnlab.control import Control
from cnnlab.engine import Trainer
from cnnlab.plan import plan_run
from cnnlab.recipe import TrainConfig
from cnnlab.errors import LabError
from cnnlab.plots import evaluation as P
from cnnlab.presets import get_preset
from cnnlab.recorder import RunRecorder, create_run
from cnnlab.runs import ImportRefused, RunStore
from test_runs import _zip  # the zip builder of the store's import tests


# ------------------------------------------------------------------ a small store of runs, built once


def _tiny_cfg(epochs: int = 1, **over) -> TrainConfig:
    recipe = dict(get_preset("seed002").recipe)
    data = {**recipe.pop("data", {}), "subset": 512, "val_size": 500}
    return TrainConfig.from_dict({**recipe, "data": data}, epochs=epochs, batch_size=64, device="cpu", **over)


def make_runs(root: Path, mnist) -> dict[str, str]:
    """Runs of every kind the page must show: a real run, a real fork with a live LR change, a diverged
    run, a corrupt folder. Returns {role: run id}."""
    store = RunStore(root)
    spec = get_preset("seed002").spec
    a = create_run(store, "seed002", plan_run(spec, _tiny_cfg(1)), name="alpha", source="cli")
    Trainer(plan_run(spec, _tiny_cfg(1)), mnist, callbacks=[RunRecorder(a)]).run()
    store.set_tags(a.id, ["baseline", "tiny"])
    # a fork like JobManager.fork makes: alpha's epoch-1 weights, counters continuing alpha's, its clock
    # restarting at zero; plus a live LR change at its first step
    fork = create_run(store, "seed002", plan_run(spec, _tiny_cfg(2)), name="alpha fork", parent={"run_id": a.id, "epoch": 1})
    control = Control()
    trainer = Trainer(plan_run(spec, _tiny_cfg(2)), mnist, control=control, callbacks=[RunRecorder(fork)],
                      init_weights=a.load_checkpoint("last")["model"])
    trainer.epoch, trainer.step = 1, trainer.steps_per_epoch
    control.live.set(lr=0.0005)
    trainer.run()
    # a diverged run, written record by record like the recorder does
    d = store.create({"preset": "seed002", "spec": spec, "recipe": _tiny_cfg(1, lr=5.0).to_dict(), "params": 1},
                     name="boom")
    d.write_status(status="running")
    d.append_metrics([{"kind": "step", "step": s, "epoch": 1, "loss": v, "acc": 0.1, "lr": 5.0, "ips": 1.0,
                       "t": 0.1 * s, "wall": 0.0} for s, v in ((1, 2.3), (2, 40.0), (3, 9e9))])
    d.append_event({"kind": "event", "event": "diverged", "step": 4, "epoch": 1, "value": "nan", "t": 0.0})
    d.write_status(status="diverged", message="training diverged: the loss became nan at step 4", step=4)
    # a damaged folder
    bad = store.create({"preset": "seed002", "spec": spec, "recipe": _tiny_cfg(1).to_dict()}, name="broken")
    (bad.path / "config.json").write_text("{ not json")
    return {"alpha": a.id, "fork": fork.id, "diverged": d.id, "broken": bad.id}


@pytest.fixture(scope="session")
def runs_template(tmp_path_factory, mnist):
    root = tmp_path_factory.mktemp("compare-runs")
    return root, make_runs(root, mnist)


@pytest.fixture
def store(runs_template):
    """A copy of the template store at this test's CNNLAB_CHECKPOINT_DIR."""
    src, ids = runs_template
    dst = Path(os.environ["CNNLAB_CHECKPOINT_DIR"])
    shutil.copytree(src, dst, dirs_exist_ok=True)
    s = RunStore(dst)
    s.ids = ids
    return s


# ------------------------------------------------------------------ table


def test_table_rows_show_every_run_alike_with_errors_and_parents(store):
    rows = {r["id"]: r for r in C.table_rows(store.list_runs())}
    ids = store.ids
    assert set(rows) == set(ids.values())
    a = rows[ids["alpha"]]
    assert a["name"] == "alpha" and a["architecture"] == "seed002" and a["optimizer"] == "adam"
    assert a["batch"] == 64 and a["epochs"] == "1/1" and a["augmentation"] == "off"
    assert a["params"] > 1000 and 0 < a["test acc"] <= 1 and 0 < a["best val acc"] <= 1
    assert a["status"] == "done" and a["tags"] == "baseline, tiny" and a["train time (s)"] > 0
    assert list(a) == C.TABLE_COLUMNS
    f = rows[ids["fork"]]
    assert f["parent"] == "alpha @ epoch 1" and f["epochs"] == "2/2" and f["status"] == "done"
    assert rows[ids["diverged"]]["status"] == "diverged" and "diverged" in rows[ids["diverged"]]["problem"]
    broken = rows[ids["broken"]]
    assert broken["status"] == "error" and "config.json" in broken["problem"]


def test_filter_rows_by_text_status_and_tags(store):
    rows = C.table_rows(store.list_runs())
    assert {r["name"] for r in C.filter_rows(rows, "ALPHA")} == {"alpha", "alpha fork"}
    assert [r["name"] for r in C.filter_rows(rows, statuses=["diverged"])] == ["boom"]
    assert [r["name"] for r in C.filter_rows(rows, tags=["baseline", "tiny"])] == ["alpha"]
    assert C.filter_rows(rows, tags=["nope"]) == []
    assert len(C.filter_rows(rows)) == len(rows)


def test_merge_selection_keeps_hidden_rows_and_follows_visible_ones():
    assert C.merge_selection(["a", "x"], ["a", "b", "c"], [1, 2]) == ["x", "b", "c"]
    assert C.merge_selection(["c", "a"], ["a", "b", "c"], [0, 2, 9]) == ["c", "a"]
    assert C.merge_selection([], [], []) == []


# ------------------------------------------------------------------ diff


def test_config_diff_lists_only_differing_fields():
    a = {"id": "1", "created": "x", "preset": "p", "recipe": {"lr": 0.01, "data": {"augment": False}},
         "spec": [{"type": "conv", "out": 8}], "parent": None}
    b = {"id": "2", "created": "y", "preset": "p", "recipe": {"lr": 0.02, "data": {"augment": True}},
         "spec": [{"type": "conv", "out": 8}, {"type": "relu"}], "parent": {"run_id": "1", "epoch": 1}}
    diff = {r["field"]: (r["a"], r["b"]) for r in C.config_diff(a, b)}
    assert diff == {
        "recipe.lr": ("0.01", "0.02"), "recipe.data.augment": ("false", "true"), "spec.1.type": ("—", "relu"),
        "parent": ("null", "—"), "parent.run_id": ("—", "1"), "parent.epoch": ("—", "1"),
    }  # fmt: skip
    assert C.config_diff(a, dict(a, id="other")) == []
    assert C.config_diff({"x": 1}, {"x": True}) != []  # True == 1 in Python, not here
    assert C.config_diff({"x": 1}, {"x": 1.0}) == []


def test_config_diff_of_real_runs(store):
    a, f = store.get(store.ids["alpha"]).config, store.get(store.ids["fork"]).config
    fields = {r["field"] for r in C.config_diff(a, f)}
    assert "recipe.epochs" in fields and "parent.run_id" in fields
    assert not any(k.startswith(("spec", "id", "created")) for k in fields)


# ------------------------------------------------------------------ curves


def test_fork_curve_starts_at_its_fork_point_and_marks_the_live_change(store):
    by_id = {i.id: i for i in store.list_runs()}
    alpha, fork = by_id[store.ids["alpha"]], by_id[store.ids["fork"]]
    for xaxis in C.XAXES:
        ca, cf = C.curves(store, [alpha, fork], "train loss", xaxis)
        assert cf.fork_x is not None and cf.x[0] == pytest.approx(cf.fork_x)
        assert cf.x[0] == pytest.approx(ca.x[-1], rel=0.05)  # the fork leaves where alpha ended
        assert cf.x == sorted(cf.x) and len(cf.x) > 3
    ca, cf = C.curves(store, [alpha, fork], "train loss", "step")
    assert ca.x[0] == 1 and cf.x[0] == 8 and cf.x[1] == 9
    assert cf.y[0] == pytest.approx(ca.y[-1])
    sets = [m for m in cf.markers if m["event"] == "set"]
    assert len(sets) == 1 and "lr" in sets[0]["text"] and sets[0]["x"] == 8
    val = C.curves(store, [fork], "validation accuracy", "epoch")[0]
    assert val.x == [1.0, 2.0]  # anchored at alpha's epoch 1, then the fork's epoch 2
    lr = C.curves(store, [fork], "learning rate", "step")[0]
    assert lr.y[-1] == pytest.approx(0.0005)


def test_diverged_curve_keeps_finite_points_and_marks_divergence(store):
    d = next(i for i in store.list_runs() if i.id == store.ids["diverged"])
    c = C.run_curve(store, d, "train loss", "step")
    assert c.x == [1, 2, 3] and c.y[:2] == [2.3, 40.0]
    assert [m["event"] for m in c.markers] == ["diverged"]
    assert P.overlay_curves([c], "train loss", "step").data  # builds


def test_overlay_keeps_a_divergence_spike_of_a_long_run(tmp_path):
    """5000 steps drawn with at most MAX_POINTS points: the one-step spike stays, at its own step (an even
    stride of 13 would skip index 3216)."""
    store = RunStore(tmp_path)
    spec = get_preset("seed002").spec
    run = store.create({"preset": "seed002", "spec": spec, "recipe": _tiny_cfg(1).to_dict(), "params": 1},
                       name="spiky")
    n, spike = 5000, 3217
    loss = [2.3 * math.exp(-s / 1000) + 0.05 for s in range(1, n + 1)]
    loss[spike - 1] = 57.0
    run.append_metrics([{"kind": "step", "step": s, "epoch": 1, "loss": v, "acc": 0.5, "lr": 0.1, "ips": 1.0,
                         "t": 0.01 * s} for s, v in zip(range(1, n + 1), loss)])
    run.append_metrics([{"kind": "step", "step": n + 1, "epoch": 1, "loss": float("nan"), "acc": 0.1,
                         "lr": 0.1, "ips": 1.0, "t": 0.01 * (n + 1)}])
    run.write_status(status="diverged", message="training diverged", step=n + 1)
    info = next(i for i in store.list_runs() if i.id == run.id)
    for xaxis in C.XAXES:
        curve = C.run_curve(store, info, "train loss", xaxis)
        line = P.overlay_curves([curve], "train loss", xaxis).data[0]
        ys = [v for v in line.y if v is not None]
        assert len(line.x) <= C.MAX_POINTS + 1 and max(ys) == 57.0
        assert line.y[-1] is None  # the non-finite last loss is a gap, not a point
    step_line = P.overlay_curves([C.run_curve(store, info, "train loss", "step")], "train loss", "step").data[0]
    assert step_line.x[list(step_line.y).index(57.0)] == spike and step_line.x[0] == 1 and step_line.x[-1] == n + 1


# ------------------------------------------------------------------ confusion cells and evaluation


def test_confusion_cell_lookup_orders_by_confidence():
    labels = np.array([3, 3, 3, 3, 5, 3])
    preds = np.array([5, 5, 3, 5, 5, 3])
    conf = np.array([0.6, 0.9, 0.99, 0.7, 0.8, 0.5])
    assert C.confusion_cell(labels, preds, conf, 3, 5).tolist() == [1, 3, 0]  # mistakes: most confident first
    assert C.confusion_cell(labels, preds, conf, 3, 3).tolist() == [5, 2]  # diagonal: least confident first
    assert C.confusion_cell(labels, preds, conf, 3, 5, limit=1).tolist() == [1]
    assert C.confusion_cell(labels, preds, conf, 7, 1).tolist() == []
    with pytest.raises(LabError):
        C.confusion_cell(labels, preds, conf, 10, 1)


def test_cell_from_selection_reads_plotly_points():
    assert C.cell_from_selection({"selection": {"points": [{"x": 5, "y": 3, "point_index": 35}]}}) == (3, 5)
    assert C.cell_from_selection({"selection": {"points": []}}) is None
    assert C.cell_from_selection(None) is None
    assert C.cell_from_selection({"selection": {"points": [{"x": "a"}]}}) is None


def test_worst_cell():
    cm = np.eye(10, dtype=int) * 100
    assert C.worst_cell(cm) == (0, 0)
    cm[4, 9] = 7
    cm[7, 1] = 3
    assert C.worst_cell(cm) == (4, 9)


def test_evaluate_run_matches_the_stored_result_and_is_cached(store, mnist):
    rid = store.ids["alpha"]
    ev = C.evaluate_run(store, rid, "last", mnist)
    result = store.get(rid).result
    assert ev.accuracy == pytest.approx(result["test_acc"], abs=1e-4)
    assert ev.confusion.tolist() == result["confusion"]
    assert np.allclose(ev.per_class_acc, result["per_class_acc"], atol=1e-6)
    assert C.evaluate_run(store, rid, "last", mnist) is ev  # cached by (run, file, mtime, size)
    worst = C.most_confident_mistakes(ev, 5)
    assert len(worst) == 5 and all(ev.preds[i] != ev.labels[i] for i in worst)
    assert list(ev.confidence[worst]) == sorted(ev.confidence[worst], reverse=True)
    rows = C.cell_table(ev, worst[:2])
    assert rows[0]["true"] == ev.labels[worst[0]] and 0 < rows[0]["confidence"] <= 1
    imgs = C.test_images(worst, mnist)
    assert imgs.shape == (5, 28, 28) and 0 <= imgs.min() and imgs.max() <= 1
    fig = P.digit_grid(imgs, ["x"] * 5)
    assert len(fig.layout.annotations) == 5
    assert P.confusion_heatmap(ev.confusion, selected=(3, 5)).layout.clickmode == "event+select"
    assert P.per_class_bars(ev.per_class_acc).data


def test_evaluate_run_refuses_a_foreign_pickle(store, mnist):
    rid = store.ids["alpha"]

    class Evil:
        def __reduce__(self):
            return (os.system, ("touch /tmp/cnnlab-pwned",))

    torch.save({"model": Evil()}, store.get(rid).path / "best.pt")
    with pytest.raises(LabError, match="best.pt"):
        C.evaluate_run(store, rid, "best", mnist)
    assert not Path("/tmp/cnnlab-pwned").exists()
    assert C.available_checkpoints(store, store.ids["diverged"]) == []


# ------------------------------------------------------------------ import through the page's entry point


def _evil_pickle() -> bytes:
    class Evil:
        def __reduce__(self):
            return (os.system, ("touch /tmp/cnnlab-pwned",))

    buf = io.BytesIO()
    torch.save({"model": Evil()}, buf)
    return buf.getvalue()


def _listing(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.mark.parametrize("case", ["traversal", "oversized", "pickle", "empty", "not a zip"])
def test_import_run_refuses_malicious_zips_without_writing(store, case, tmp_path):
    cfg = json.dumps({"id": "x", "spec": []}).encode()
    data = {
        "traversal": _zip({"r/config.json": cfg, "../../evil.txt": b"pwned"}),
        "oversized": _zip({"r/config.json": cfg, "r/metrics.jsonl": b"\n" * 3_000_000}),
        "pickle": _zip({"r/config.json": cfg, "r/last.pt": _evil_pickle()}),
        "empty": b"",
        "not a zip": b"PK\x03\x04 nope",
    }[case]
    before = _listing(tmp_path)
    with pytest.raises(ImportRefused, match="import refused"):
        C.import_run(store, data, max_total=1_000_000)
    assert _listing(tmp_path) == before  # nothing inside or beside the store
    assert not Path("/tmp/cnnlab-pwned").exists()
    assert not (tmp_path.parent / "evil.txt").exists()


def test_export_then_import_round_trip(store):
    rid = store.ids["alpha"]
    new = C.import_run(store, store.export_zip(rid))
    assert new != rid and store.get(new).config["imported_from"] == rid
    assert C.checkpoint_bytes(store, new, "best") == C.checkpoint_bytes(store, rid, "best")
    assert "kind,epoch,step" in store.metrics_csv(new)
    assert math.isfinite(next(i for i in store.list_runs() if i.id == new).test_acc)


def _with_config(data: bytes, change) -> bytes:
    """A run zip with its config.json changed by `change(cfg)`."""
    import zipfile

    src = zipfile.ZipFile(io.BytesIO(data))
    members = {}
    for name in src.namelist():
        raw = src.read(name)
        if name.endswith("config.json"):
            cfg = json.loads(raw)
            change(cfg)
            raw = json.dumps(cfg).encode()
        members[name] = raw
    return _zip(members)


@pytest.mark.parametrize("change, says", [
    (lambda c: c["recipe"].update(data=[1, 2]), "data: must be a dict"),
    (lambda c: c["recipe"].update(lr=-1.0), "lr"),
    (lambda c: c.update(recipe="fast"), "recipe: must be a dict"),
    (lambda c: c.update(spec={"type": "conv"}), "spec must be a list"),
    (lambda c: c.update(spec=[{"type": "warp"}]), "warp"),
])
def test_import_refuses_a_recipe_or_spec_that_a_launch_would_refuse(store, tmp_path, change, says):
    data = _with_config(store.export_zip(store.ids["alpha"]), change)
    before = _listing(tmp_path)
    with pytest.raises(ImportRefused, match="import refused: config.json") as err:
        C.import_run(store, data)
    assert says in str(err.value)
    assert _listing(tmp_path) == before  # nothing written
