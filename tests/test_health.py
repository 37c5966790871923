"""Layer health: statistics checked against known answers (plain SGD, all-dead ReLUs, a run that learns nothing)."""

from __future__ import annotations

import math

import pytest
import torch

from cnnlab import health as H
from cnnlab.callbacks import Callback
from cnnlab.engine import Trainer
from cnnlab.jobs import JobManager
from cnnlab.models import build_model
from cnnlab.plan import plan_run
from cnnlab.runs import RunStore
from cnnlab.trainform import StoredRunView

from test_jobs import TINY, cfg  # the tiny net and recipe of the job tests

NET = [{"type": "conv", "out": 8, "k": 3, "stride": 2}, {"type": "relu"}, {"type": "maxpool", "k": 2},
       {"type": "flatten"}, {"type": "linear", "out": 16}, {"type": "relu"}, {"type": "linear", "out": 10}]


class Collect(Callback):
    def __init__(self):
        self.health, self.steps = [], []

    def on_health(self, trainer, rec):
        self.health.append(rec)

    def on_step(self, trainer, rec):
        self.steps.append(rec)


def train(spec=NET, every=4, init=None, **over) -> tuple[Collect, Trainer]:
    sink = Collect()
    trainer = Trainer(plan_run(spec, cfg(epochs=1, **over)), _mnist(), callbacks=[H.LayerHealth(every), sink],
                      init_weights=init)
    assert trainer.run().status == "done"
    return sink, trainer


def _mnist():
    from cnnlab.data import load_mnist

    return load_mnist()


def test_records_every_n_steps_with_one_value_per_layer_and_no_hooks_left():
    sink, trainer = train(every=4)
    steps = [r["step"] for r in sink.health]
    assert steps == [1] + list(range(4, 17, 4))  # the first step, then every 4th (16 steps of 32 images)
    rec = sink.health[-1]
    assert rec["layers"] == ["0_conv", "4_linear", "6_linear"] and rec["acts"] == ["1_relu", "5_relu"]
    for q in ("weight_norm", "grad_norm", "update_ratio"):
        assert len(rec[q]) == 3 and all(v > 0 for v in rec[q])
    assert all(0 <= d <= 1 for d in rec["dead_frac"]) and all(s > 0 for s in rec["act_std"])
    w = trainer.model[6].weight.detach()
    assert rec["weight_norm"][2] == pytest.approx(w.norm().item(), rel=1e-4)  # the last sample is the last step
    assert all(not m._forward_hooks for m in trainer.model.modules())


def test_update_ratio_of_plain_sgd_is_lr_times_grad_over_weight():
    # no momentum, no weight decay: W_after - W_before = -lr * grad exactly
    sink, _ = train(every=3, optimizer="sgd", lr=0.05, momentum=0.0)
    for rec in sink.health:
        for wn, gn, ratio in zip(rec["weight_norm"], rec["grad_norm"], rec["update_ratio"]):
            assert ratio == pytest.approx(0.05 * gn / wn, rel=1e-3)


def test_all_dead_relus_are_measured_and_flagged():
    model = build_model(NET, seed=0)
    with torch.no_grad():
        model[0].bias.fill_(-100.0)  # every conv output negative: the first ReLU never fires
    sink, _ = train(init=model.state_dict())
    first = sink.health[0]
    assert first["dead_frac"][0] == 1.0 and first["act_mean"][0] == 0.0
    assert first["grad_norm"][0] == 0.0 and first["update_ratio"][0] == 0.0  # nothing flows back to the conv
    words = [f.text for f in H.flags(sink.health)]
    assert any("1_relu" in t and "all its ReLUs are dead" in t for t in words), words
    assert any("0_conv" in t and "gets no gradient" in t for t in words), words


def test_a_run_that_learns_nothing_is_flagged_and_a_healthy_one_is_not():
    frozen, _ = train(optimizer="sgd", lr=1e-7, momentum=0.0)
    frozen_flags = H.flags(frozen.health)
    assert {f.layer for f in frozen_flags if "barely learns" in f.text} == {"0_conv", "4_linear", "6_linear"}
    healthy, _ = train(optimizer="adam", lr=1e-3, momentum=0.9)
    assert not [f for f in H.flags(healthy.health) if f.level == "error"]


def test_exploding_and_vanishing_gradients_are_named():
    base = {"kind": "health", "step": 1, "layers": ["0_conv", "3_linear"], "weight_norm": [1.0, 1.0],
            "grad_norm": [0.5, 0.5], "update_ratio": [1e-3, 1e-3], "acts": [], "dead_frac": []}
    boom = dict(base, step=50, grad_norm=[80.0, "inf"])
    texts = [f.text for f in H.flags([base, boom])]
    assert any("0_conv" in t and "exploding" in t for t in texts) and any("3_linear" in t and "inf" in t for t in texts)
    annealed = [dict(base, lr=0.4), dict(base, step=50, lr=1e-6, update_ratio=[1e-7, 1e-7])]
    assert H.flags(annealed) == []  # one-cycle's tail: tiny steps by design, not flagged
    assert len(H.flags([annealed[0], dict(annealed[1], lr=0.3)])) == 2  # at a high LR: flagged
    flat = dict(base, step=50, grad_norm=[0.0, 1e-12])
    assert any("stopped learning" in f.text for f in H.flags([base, flat]))
    assert H.flags([base]) == []


def test_series_is_a_layer_by_time_matrix():
    recs = [{"kind": "health", "step": s, "layers": ["a", "b"], "grad_norm": [s, "nan"]} for s in (10, 20)]
    recs.append({"kind": "step", "step": 15})
    ser = H.series(H.health_records(recs), "grad_norm")
    assert ser.names == ["a", "b"] and ser.steps == [10, 20]
    assert ser.values[0].tolist() == [10, 20] and all(math.isnan(v) for v in ser.values[1])
    with pytest.raises(ValueError, match="known"):
        H.series(recs, "loss")


def test_default_period_gives_about_100_records_within_bounds():
    assert H.default_every(100) == 10 and H.default_every(3000) == 30 and H.default_every(10**6) == 50


def test_jobs_record_health_in_the_store_and_saved_runs_show_it(tmp_path, mnist):
    store = RunStore(tmp_path / "runs")
    mgr = JobManager(store, mnist_loader=lambda: mnist)
    try:
        rid = mgr.submit("tiny", plan_run(TINY, cfg(epochs=1)))
        view = mgr.wait(rid, timeout=120)
        assert view.status == "done"
        live = H.HealthCache(rid)
        assert live.update(view) and live.recs[0]["layers"] == ["0_conv", "4_linear"]
    finally:
        mgr.shutdown(wait=10)
    handle = store.get(rid)
    on_disk = H.health_records(handle.read_metrics())
    assert [r["step"] for r in on_disk] == [r["step"] for r in live.recs]
    saved = H.HealthCache(rid)
    assert saved.update(StoredRunView(handle, handle.info()))
    assert saved.recs == on_disk
    assert "health" not in store.metrics_csv(rid)
