"""Loading models for the Draw page: saved best/last checkpoints, live job weights, the LRU cache,
and clear messages for corrupt or foreign weights."""

from __future__ import annotations

import os
import time
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from cnnlab.data import DataConfig
from cnnlab.engine import Trainer
from cnnlab.errors import CheckpointError, LabError
from cnnlab.inference import probes, robustness
from cnnlab.models import build_model
from cnnlab.modelsource import ModelRef, ModelSource
from cnnlab.plan import plan_run
from cnnlab.presets import get_preset
from cnnlab.recipe import TrainConfig
from cnnlab.recorder import RunRecorder, create_run, run_config
from cnnlab.runs import RunStore
from cnnlab.settings import limit_threads


def make_run(store: RunStore, preset: str = "seed002", which=("best", "last"), seed: int = 0,
             run_id: str | None = None, state: dict | None = None) -> str:
    """A run folder with untrained (seeded) weights in best.pt / last.pt, as the recorder writes them."""
    p = get_preset(preset)
    cfg = TrainConfig.from_dict({**p.recipe, "epochs": 1})
    run = store.create(run_config(preset, plan_run(p.spec, cfg)), name=f"{preset} test", run_id=run_id)
    torch.manual_seed(seed)
    sd = state if state is not None else build_model(p.spec).state_dict()
    for w in which:
        run.save_checkpoint({"model": sd, "epoch": 1, "val_acc": 0.5}, w)
    run.write_status(status="done")
    return run.id


@pytest.fixture
def store(tmp_path) -> RunStore:
    return RunStore(tmp_path / "store")


@pytest.fixture(scope="module")
def trained(tmp_path_factory, mnist):
    """One really trained run (seed002, 600 images, 1 epoch), written by the real recorder."""
    store = RunStore(tmp_path_factory.mktemp("trained"))
    p = get_preset("seed002")
    cfg = TrainConfig.from_dict({**p.recipe, "epochs": 1, "batch_size": 20,
                                 "data": DataConfig(subset=600, val_size=500).to_dict()})
    run = create_run(store, p.name, plan_run(p.spec, cfg), name="tiny seed002")
    Trainer(plan_run(p.spec, cfg), mnist, callbacks=[RunRecorder(run)]).run()
    return store, run.id


def test_loads_best_and_last_of_a_trained_run(trained, mnist):
    store, rid = trained
    src = ModelSource(store)
    keys = [r.key for r in src.choices()]
    assert keys == [f"{rid}:best", f"{rid}:last"]
    for which in ("best", "last"):
        loaded = src.load(ModelRef(rid, which))
        assert not loaded.model.training
        assert not any(p.requires_grad for p in loaded.model.parameters())
        assert loaded.epoch == 1
        probs = probes.predict_probs(loaded.model, robustness.test_image(mnist.test_x, 0))
        assert probs.shape == (1, 10) and abs(probs.sum() - 1) < 1e-5
    assert src.load(ModelRef(rid, "best")).val_acc is not None
    # 30 steps on 600 images already beat chance (0.1) by far
    acc = (probes.predict_probs(src.load(ModelRef(rid, "best")).model, mnist.test_x[:500].numpy() / 255.0)
           .argmax(1) == mnist.test_y[:500].numpy()).mean()
    assert acc > 0.3


def test_cache_hit_then_reload_when_the_file_changes(store):
    rid = make_run(store)
    src = ModelSource(store)
    ref = ModelRef(rid, "last")
    a = src.load(ref)
    b = src.load(ref)
    assert a is b and src.hits == 1 and src.misses == 1
    path = store.get(rid).path / "last.pt"
    torch.manual_seed(7)
    store.get(rid).save_checkpoint({"model": build_model(get_preset("seed002").spec).state_dict(), "epoch": 2})
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))  # coarse clocks: force a new mtime
    c = src.load(ref)
    assert c is not a and c.epoch == 2
    assert not torch.equal(next(c.model.parameters()), next(a.model.parameters()))


def test_best_and_last_are_cached_separately_and_lru_evicts(store):
    r1, r2 = make_run(store, seed=1), make_run(store, seed=2)
    src = ModelSource(store, capacity=2)
    best1 = src.load(ModelRef(r1, "best"))
    last1 = src.load(ModelRef(r1, "last"))
    assert src.load(ModelRef(r1, "best")) is best1 and src.load(ModelRef(r1, "last")) is last1  # both cached
    best2 = src.load(ModelRef(r2, "best"))  # evicts r1:best, the least recently used
    assert src.load(ModelRef(r1, "last")) is last1 and src.load(ModelRef(r2, "best")) is best2
    assert src.load(ModelRef(r1, "best")) is not best1


def test_corrupt_checkpoint_gives_a_clear_message(store):
    rid = make_run(store)
    (store.get(rid).path / "best.pt").write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match=r"best\.pt"):
        ModelSource(store).load(ModelRef(rid, "best"))
    path = store.get(rid).path / "last.pt"
    path.write_bytes(path.read_bytes()[:200])  # truncated mid-write
    with pytest.raises(CheckpointError, match=r"cannot load .*last\.pt"):
        ModelSource(store).load(ModelRef(rid, "last"))


def test_checkpoint_of_another_architecture_is_refused_by_name(store):
    foreign = build_model(get_preset("seed004").spec).state_dict()
    rid = make_run(store, "seed002", state=foreign)
    with pytest.raises(CheckpointError, match="another architecture") as err:
        ModelSource(store).load(ModelRef(rid, "best"))
    assert "0_conv.weight" in str(err.value) and "\n" not in str(err.value)


def test_checkpoint_without_weights_and_missing_file(store):
    rid = make_run(store, which=("last",))
    store.get(rid).save_checkpoint({"epoch": 3}, "last")
    with pytest.raises(CheckpointError, match="no model weights"):
        ModelSource(store).load(ModelRef(rid, "last"))
    with pytest.raises(CheckpointError, match="no best.pt"):
        ModelSource(store).load(ModelRef(rid, "best"))
    with pytest.raises(LabError, match="no run"):
        ModelSource(store).load(ModelRef("nope", "best"))


class Pickled:
    """Not a tensor: weights_only loading must refuse it instead of running pickle code."""


def test_pickled_objects_are_refused(store):
    rid = make_run(store)
    torch.save({"model": {"w": Pickled()}}, store.get(rid).path / "best.pt")
    with pytest.raises(CheckpointError, match="best.pt"):
        ModelSource(store).load(ModelRef(rid, "best"))


class FakeManager:
    """The slice of JobManager the model source uses."""

    def __init__(self, store: RunStore, rid: str):
        self.store, self.rid, self.calls = store, rid, 0
        torch.manual_seed(3)
        self.model = build_model(get_preset("seed002").spec)
        self.status = "running"

    def jobs(self):
        return [SimpleNamespace(id=self.rid, name="live one", preset="seed002", status=self.status,
                                epoch=2, step=99)]

    def weights_copy(self, run_id):
        if run_id != self.rid or self.status not in ("running", "paused"):
            return None
        self.calls += 1
        return {k: v.detach().clone() for k, v in self.model.state_dict().items()}


def test_live_weights_are_copied_cached_and_refreshed(store):
    rid = make_run(store, which=())
    store.get(rid).write_status(status="running")
    mgr = FakeManager(store, rid)
    src = ModelSource(store, mgr)
    refs = src.choices()
    assert [r.key for r in refs] == [f"{rid}:live"] and "live weights" in refs[0].label
    a = src.load(refs[0])
    assert mgr.calls == 1 and a.epoch == 2 and not a.model.training
    assert src.load(refs[0]) is a and mgr.calls == 1  # cached until refreshed
    with torch.no_grad():
        for p in mgr.model.parameters():  # training moves on
            p.add_(1.0)
    b = src.load(refs[0], refresh=True)
    assert mgr.calls == 2 and b is not a
    w_job, w_b = next(mgr.model.parameters()), next(b.model.parameters())
    assert torch.equal(w_job, w_b)
    with torch.no_grad():
        w_job.add_(1.0)
    assert not torch.equal(w_job, w_b)  # a copy: the page never sees (or touches) the job's tensors


def test_live_weights_expire_after_max_age_and_finished_jobs_say_so(store):
    rid = make_run(store, which=())
    mgr = FakeManager(store, rid)
    src = ModelSource(store, mgr, live_max_age_s=0.0)
    ref = ModelRef(rid, "live")
    src.load(ref)
    time.sleep(0.01)
    src.load(ref)
    assert mgr.calls == 2
    mgr.status = "done"
    assert src.choices() == [] or all(r.which != "live" for r in src.choices())
    with pytest.raises(LabError, match="no weights to show"):
        src.load(ref, refresh=True)


def test_no_runs_means_no_choices_and_damaged_runs_are_skipped(store):
    assert ModelSource(store).choices() == []
    rid = make_run(store)
    (store.get(rid).path / "config.json").write_text("{broken")
    assert ModelSource(store).choices() == []


def test_limit_threads_restores_the_thread_count():
    before = torch.get_num_threads()
    with limit_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


def test_analyze_image_skips_cropping(mnist):
    torch.manual_seed(0)
    model = build_model(get_preset("fast").spec)
    img = robustness.test_image(mnist.test_x, 3)
    a = probes.analyze_image(model, img)
    assert np.array_equal(a.pre.image, img)
    assert a.prediction is not None and len(a.layers) == 3
    assert probes.analyze_image(model, np.zeros((28, 28))).prediction is None
