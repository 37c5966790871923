"""Live-editable epochs: the engine's schedule rule, running jobs extended and shortened, resume and fork."""

from __future__ import annotations

import math

import pytest

from cnnlab.callbacks import Callback
from cnnlab.data import DataConfig
from cnnlab.control import Control
from cnnlab.engine import Trainer
from cnnlab.optim import schedule_factor, stretched_step
from cnnlab.plan import plan_run
from cnnlab.recipe import TrainConfig
from cnnlab.errors import ConfigError
from cnnlab.jobs import FINAL
from test_jobs import TINY, cfg, events, mgr, steps, store, wait_for  # noqa: F401 - fixtures


BIG = DataConfig(subset=4096, val_size=500)  # 128 steps an epoch: room to pause inside epoch 1


class _SetAt(Callback):
    """Trainer callback: asks for `epochs` once the loop has taken `step` steps; keeps every record."""

    def __init__(self, control: Control, step: int, epochs: int):
        self.control, self.at, self.epochs, self.recs = control, step, epochs, []

    def on_step(self, trainer: Trainer, rec: dict) -> None:
        self.recs.append(rec)
        if rec["step"] == self.at:
            self.control.live.set(epochs=self.epochs)

    def on_event(self, trainer: Trainer, rec: dict) -> None:
        self.recs.append(rec)

    def on_epoch(self, trainer: Trainer, rec: dict) -> None:
        self.recs.append(rec)


def _train(mnist, c: TrainConfig, at: int, epochs: int) -> tuple[Trainer, list[dict]]:
    control = Control()
    sink = _SetAt(control, at, epochs)
    trainer = Trainer(plan_run(TINY, c), mnist, control=control, callbacks=[sink])
    result = trainer.run()
    assert result.status == "done", result.message
    return trainer, sink.recs


def test_stretched_step_keeps_the_progress_and_ends_at_the_new_total() -> None:
    assert stretched_step(7, (0, 0.0), 100) == 7  # never changed: the step itself
    # changed at step 50 of 100 (progress 0.5) to 200 steps: half-way there, the end at 200
    assert stretched_step(50, (50, 0.5), 200) == pytest.approx(100)
    assert stretched_step(125, (50, 0.5), 200) == pytest.approx(150)
    assert stretched_step(200, (50, 0.5), 200) == pytest.approx(200)


@pytest.mark.parametrize("scheduler", ["cosine", "onecycle"])
def test_extending_restretches_the_schedule_without_a_jump(mnist, scheduler) -> None:
    c = cfg(scheduler=scheduler, epochs=2, momentum=0.0)
    spe = c.steps_per_epoch()
    trainer, recs = _train(mnist, c, at=spe // 2, epochs=3)
    lrs = [r["lr"] for r in steps(recs)]
    assert len(lrs) == 3 * spe and trainer.epochs == 3 and trainer.total_steps == 3 * spe
    k = spe // 2  # the change applies before step k+1 (index k)
    old_next = c.lr * schedule_factor(c, k, 0, 2 * spe)
    assert lrs[k] == pytest.approx(old_next, rel=0.05)  # continuous: no jump at the change
    assert lrs[k + 1] < lrs[k] or scheduler == "onecycle"  # cosine keeps decaying
    # the decay now ends at the new last step (cosine near 0, one-cycle near its final LR), not at the old one
    assert lrs[-1] < c.lr * 0.01
    assert lrs[2 * spe - 1] > 10 * lrs[-1] and lrs[2 * spe - 1] > c.lr * 0.05
    peak = lrs.index(max(lrs))
    assert all(b <= a * (1 + 1e-9) for a, b in zip(lrs[peak:], lrs[peak + 1:]))  # one smooth decay
    ev = events(recs, "set")
    assert [(e["field"], e["old"], e["new"], e["step"]) for e in ev] == [("epochs", 2, 3, k)]


def test_steplr_keeps_its_steps_when_extended(mnist) -> None:
    c = cfg(scheduler="step", step_size=1, gamma=0.5, epochs=2, momentum=0.0)
    spe = c.steps_per_epoch()
    _, recs = _train(mnist, c, at=3, epochs=3)
    per_epoch = {r["epoch"]: r["lr"] for r in steps(recs)}
    assert per_epoch == {1: pytest.approx(0.05), 2: pytest.approx(0.025), 3: pytest.approx(0.0125)}
    assert len(steps(recs)) == 3 * spe


def test_fewer_epochs_than_in_progress_ends_after_the_current_epoch(mnist) -> None:
    c = cfg(epochs=3)
    spe = c.steps_per_epoch()
    trainer, recs = _train(mnist, c, at=spe + 2, epochs=1)  # asked for 1 while in epoch 2
    assert trainer.epoch == 2 and len(steps(recs)) == 2 * spe
    (ev,) = events(recs, "set")
    assert (ev["old"], ev["new"], ev["requested"]) == (3, 2, 1)


def test_live_epochs_are_validated() -> None:
    control = Control()
    from cnnlab.control import LiveParams

    control.live = LiveParams(0.1, 0.9, 0.0, 0.0, 2)
    for bad in (0, 1001, 2.5, "3", True):
        with pytest.raises(ConfigError) as exc:
            control.live.set(epochs=bad)
        assert exc.value.field == "epochs"
    control.live.set(epochs=4.0)  # a number input's whole float is fine
    assert control.live.snapshot()["epochs"] == 4


def _pause_mid_epoch_one(mgr, rid: str) -> None:
    """Pause a job at its next step boundary and check that it paused (it has not finished)."""
    mgr.pause(rid)
    wait_for(lambda: mgr.get(rid).status in ("paused", *FINAL), what="pause")
    assert mgr.get(rid).status == "paused"


def test_running_jobs_extend_2_to_3_and_shorten_3_to_2(mgr, store) -> None:
    longer = mgr.submit("tiny", plan_run(TINY, cfg(epochs=2, data=BIG)), name="extend")
    shorter = mgr.submit("tiny", plan_run(TINY, cfg(epochs=3, data=BIG)), name="shorten")
    for rid in (longer, shorter):
        wait_for(lambda rid=rid: mgr.get(rid).step >= 3, what="first steps")
        _pause_mid_epoch_one(mgr, rid)
        assert mgr.get(rid).epochs_done == 0  # still in epoch 1: the change is made on a running job
    mgr.set_live(longer, epochs=3)
    mgr.set_live(shorter, epochs=2)
    with pytest.raises(ConfigError):
        mgr.set_live(shorter, epochs=0)
    for rid in (longer, shorter):
        mgr.unpause(rid)
    for rid, old, new in ((longer, 2, 3), (shorter, 3, 2)):
        v = mgr.wait(rid, timeout=300)
        assert v.status == "done", v.message
        assert v.epochs_done == new and v.epochs == new
        assert v.step == v.total_steps == new * v.steps_per_epoch
        recs, _ = v.records_since(0)
        assert [r["epoch"] for r in recs if r.get("kind") == "epoch"] == list(range(1, new + 1))
        (ev,) = [e for e in events(recs, "set") if e["field"] == "epochs"]
        assert (ev["old"], ev["new"], ev["epoch"]) == (old, new, 1)
        handle = store.get(rid)
        stored = [e for e in handle.read_events() if e.get("field") == "epochs"]
        assert [(e["old"], e["new"]) for e in stored] == [(old, new)]
        assert handle.status["epochs_planned"] == new and handle.planned_epochs() == new
        assert handle.config["recipe"]["epochs"] == old  # the launch recipe stays as it was
        info = {i.id: i for i in mgr.list_runs()}[rid]
        assert (info.epochs, info.epochs_planned) == (new, new)


def test_resume_keeps_a_live_epochs_change(mgr, store) -> None:
    # a: extended, then stopped after its first epoch (last.pt holds the new count)
    a = mgr.submit("tiny", plan_run(TINY, cfg(epochs=2, data=BIG)), name="a")
    wait_for(lambda: mgr.get(a).step >= 2, what="first steps")
    _pause_mid_epoch_one(mgr, a)
    mgr.set_live(a, epochs=3)
    mgr.stop(a, after_epoch=True)
    mgr.unpause(a)
    assert mgr.wait(a, timeout=300).status == "stopped"
    assert mgr.get(a).epochs_done == 1
    # b: extended in its second epoch, then stopped at once (the change is newer than last.pt)
    b = mgr.submit("tiny", plan_run(TINY, cfg(epochs=2, data=BIG)), name="b")
    wait_for(lambda: mgr.get(b).epochs_done >= 1, what="epoch 1")
    mgr.pause(b)
    wait_for(lambda: mgr.get(b).status in ("paused", *FINAL), what="pause")
    assert mgr.get(b).status == "paused" and mgr.get(b).epochs_done == 1
    mgr.set_live(b, epochs=3)
    mgr.unpause(b)
    wait_for(lambda: any(e.get("field") == "epochs" for e in store.get(b).read_events()), what="set event")
    mgr.stop(b)
    assert mgr.wait(b, timeout=300).status == "stopped"
    assert mgr.get(b).epochs_done == 1
    for rid in (a, b):
        assert store.get(rid).planned_epochs() == 3
        mgr.resume(rid)
        v = mgr.wait(rid, timeout=300)
        assert v.status == "done", v.message
        assert v.epochs_done == 3 and v.epochs == 3
        assert store.get(rid).status["epochs_planned"] == 3
        sets = [e for e in store.get(rid).read_events() if e.get("field") == "epochs"]
        assert sets and sets[-1]["new"] == 3
    # a fork keeps the parent's count unless told otherwise
    f = mgr.fork(a, 1)
    assert mgr.get(f).epochs == 3
    assert mgr.wait(f, timeout=300).epochs_done == 3


def test_planned_epochs_falls_back_to_the_recipe(store) -> None:
    from cnnlab.recorder import create_run

    h = create_run(store, "tiny", plan_run(TINY, cfg(epochs=4)))
    assert h.planned_epochs() == 4
    h.write_status(epochs_planned=6)
    assert h.planned_epochs() == 6
    assert math.isfinite(h.planned_epochs())
