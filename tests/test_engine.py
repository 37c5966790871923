"""Training loop: validation of hyperparameters, schedules, determinism, divergence, control, live changes."""

import dataclasses
import math
import threading
import time

import pytest
import torch

from cnnlab import engine as E
from cnnlab.callbacks import Callback
from cnnlab.control import Control
from cnnlab.errors import ConfigError, SpecError
from cnnlab.evaluation import evaluate
from cnnlab.optim import schedule_factor
from cnnlab.plan import plan_run
from cnnlab.presets import get_preset
from cnnlab.recipe import TrainConfig
from cnnlab.spec import summarize

SMALL = get_preset("seed002").spec


class Collect(Callback):
    def __init__(self):
        self.steps, self.epochs, self.events, self.end = [], [], [], None

    def on_step(self, trainer, rec):
        self.steps.append(rec)

    def on_epoch(self, trainer, rec):
        self.epochs.append(rec)

    def on_event(self, trainer, rec):
        self.events.append(rec)

    def on_end(self, trainer, result):
        self.end = result


def cfg(**kw):
    data = kw.pop("data", {})
    return TrainConfig.from_dict({"optimizer": "adam", "lr": 1e-3, "batch_size": 64, "epochs": 1,
                                    "data": {"subset": 640, "val_size": 500, **data}, **kw})


@pytest.mark.parametrize("field,value", [
    ("lr", 0), ("lr", -0.1), ("lr", float("nan")), ("lr", "fast"), ("lr", 100),
    ("batch_size", 0), ("batch_size", -1), ("batch_size", 2.5), ("epochs", 0), ("epochs", True),
    ("optimizer", "rmsprop"), ("scheduler", "linear"), ("momentum", 1.5), ("weight_decay", -1),
    ("label_smoothing", 0.9), ("gamma", 0), ("step_size", 0), ("seed", -1), ("device", "tpu"),
    ("tta_shift", -1), ("tta_shift", 5), ("tta_shift", 1.5), ("tta_shift", True),
])
def test_wrong_hyperparameters_fail_before_training_naming_the_field(field, value):
    with pytest.raises(ConfigError) as err:
        cfg(**{field: value}).validate()
    assert err.value.field == field
    assert field in str(err.value)


def test_unknown_option_and_batch_larger_than_data_are_refused():
    with pytest.raises(ConfigError) as err:
        TrainConfig.from_dict({"learning_rate": 0.1})
    assert err.value.field == "learning_rate"
    with pytest.raises(ConfigError, match="larger than the 640 training images"):
        cfg(batch_size=1000).validate()
    with pytest.raises(ConfigError, match="data.flip"):
        TrainConfig.from_dict({"data": {"flip": True}})


def test_a_plan_is_checked_where_it_enters_and_cannot_change_afterwards():
    plan = plan_run(SMALL, cfg())
    assert plan.params == summarize(SMALL).total_params and plan.spec is SMALL
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.cfg.lr = 100.0  # a trusted recipe stays the one that was checked
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.cfg.data.subset = 10**9
    with pytest.raises(ConfigError) as err:
        plan_run(SMALL, cfg(lr=-1.0))  # the recipe first, naming its field
    assert err.value.field == "lr"
    with pytest.raises(SpecError, match="layer 0"):
        plan_run([{"type": "linear", "out": 10}], cfg())


@pytest.mark.parametrize("name", ["step", "onecycle", "cosine"])
def test_schedules_match_torch_schedulers(name):
    c = cfg(scheduler=name, epochs=4, step_size=2, gamma=0.5, lr=0.1)
    spe, total = 10, 40
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=0.1, momentum=0.9)
    if name == "step":
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    elif name == "onecycle":
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=total, pct_start=c.pct_start,
                                                    cycle_momentum=False)
    else:
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total)
    for step in range(total):
        epoch = step // spe
        ours = 0.1 * schedule_factor(c, step, epoch, total)
        assert math.isclose(ours, opt.param_groups[0]["lr"], rel_tol=1e-6, abs_tol=1e-12), (step, ours)
        opt.step()
        if name == "step":
            if (step + 1) % spe == 0:
                sched.step()
        else:
            sched.step()


def test_same_seed_same_curves_and_a_real_model_learns(mnist):
    a, b = Collect(), Collect()
    ra = E.Trainer(plan_run(SMALL, cfg(seed=7)), mnist, callbacks=[a]).run()
    E.Trainer(plan_run(SMALL, cfg(seed=7)), mnist, callbacks=[b]).run()
    assert [s["loss"] for s in a.steps] == [s["loss"] for s in b.steps]
    assert ra.status == "done" and ra.test_acc > 0.25  # 640 images, 10 steps: well above chance (0.1)
    losses = [s["loss"] for s in a.steps]
    assert sum(losses[-3:]) < sum(losses[:3])
    assert len(a.steps) == 10 and a.epochs[0]["val_acc"] > 0.25
    assert sum(map(sum, ra.confusion)) == 10000 and len(ra.per_class_acc) == 10
    c = Collect()
    E.Trainer(plan_run(SMALL, cfg(seed=8)), mnist, callbacks=[c]).run()
    assert [s["loss"] for s in c.steps] != [s["loss"] for s in a.steps]


def test_step_records_carry_loss_accuracy_lr_and_throughput(mnist):
    col = Collect()
    E.Trainer(plan_run(SMALL, cfg(scheduler="onecycle", lr=0.01)), mnist, callbacks=[col]).run()
    rec = col.steps[3]
    assert {"loss", "acc", "lr", "ips", "step", "epoch", "t"} <= set(rec)
    assert rec["ips"] > 0 and 0 <= rec["acc"] <= 1
    lrs = [s["lr"] for s in col.steps]
    assert max(lrs) <= 0.01 + 1e-9 and lrs[0] < lrs[3]  # one-cycle warms up


def test_huge_lr_diverges_with_a_message(mnist):
    col = Collect()
    spec = get_preset("seed004").spec  # (seed002 at this LR dies quietly: all ReLUs off, loss flat)
    r = E.Trainer(plan_run(spec, cfg(optimizer="sgd", lr=10.0, momentum=0.9, epochs=2)), mnist, callbacks=[col]).run()
    assert r.status == "diverged"
    assert "lower the learning rate" in r.message and "step" in r.message
    assert col.events[-1]["event"] == "diverged"


def test_log_softmax_net_and_label_smoothing_train(mnist):
    spec = get_preset("seed001").spec
    r = E.Trainer(plan_run(spec, cfg(optimizer="sgd", lr=0.05, label_smoothing=0.1, data={"augment": True})), mnist).run()
    assert r.status == "done" and math.isfinite(r.test_loss)


def _wait(pred, what, timeout=60.0):
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def test_stop_pause_and_live_lr_between_steps(mnist):
    col = Collect()
    control = Control()
    trainer = E.Trainer(plan_run(SMALL, cfg(epochs=50, data={"subset": 2000})), mnist, control=control, callbacks=[col])
    th = threading.Thread(target=trainer.run, daemon=True)
    th.start()
    _wait(lambda: len(col.steps) >= 3, "first steps")
    control.pause_event.set()
    _wait(lambda: any(e["event"] == "pause" for e in col.events), "the pause event")
    frozen = trainer.step
    time.sleep(0.4)  # nothing to wait for: the loop must not step while paused
    assert trainer.step == frozen
    trainer.live.set(lr=0.005)
    control.pause_event.clear()
    _wait(lambda: trainer.step >= frozen + 2, "steps after the pause")
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(0.005)
    sets = [e for e in col.events if e["event"] == "set"]
    assert sets and sets[0]["field"] == "lr" and sets[0]["old"] == pytest.approx(1e-3) and sets[0]["new"] == 0.005
    assert sets[0]["step"] == frozen
    at = trainer.step
    control.stop_event.set()
    th.join(60)
    assert not th.is_alive() and col.end.status == "stopped"
    assert col.end.step <= at + 1  # at the next step boundary: at most the step in progress finished
    assert [e["event"] for e in col.events][:2] == ["pause", "resume"]


def test_live_lr_rescales_the_schedule(mnist):
    trainer = E.Trainer(plan_run(SMALL, cfg(scheduler="step", step_size=1, gamma=0.5, epochs=2, lr=0.01)), mnist)
    trainer.live.set(lr=0.02)
    trainer._apply_live()
    assert trainer.current_lr() == pytest.approx(0.02)
    trainer.epoch = 1  # a later StepLR drop still applies, relative to the user's value
    assert trainer.current_lr() == pytest.approx(0.01)
    with pytest.raises(ConfigError):
        trainer.live.set(lr=-1)
    with pytest.raises(ConfigError):
        trainer.live.set(batch_size=3)


def test_evaluate_restores_training_mode(mnist):
    from cnnlab.models import build_model

    model = build_model(SMALL).train()
    loss, acc, preds = evaluate(model, mnist.test_x[:200], mnist.test_y[:200], torch.device("cpu"))
    assert model.training and preds.shape == (200,) and 0 <= acc <= 1


def test_device_defaults_to_cpu_here():
    from cnnlab.settings import pick_device

    assert pick_device("auto").type in ("cuda", "mps", "cpu")
    assert pick_device("cpu").type == "cpu"


class Hooks(Callback):
    """Notes each hook it gets, tagged with its name; publishes a health record at step 3 when asked."""

    def __init__(self, tag, log, publish=False):
        self.tag, self.log, self.publish = tag, log, publish

    def on_start(self, trainer):
        self.log.append((self.tag, "start", trainer.step))

    def on_batch_start(self, trainer):
        self.log.append((self.tag, "batch_start", trainer.step))

    def on_batch_end(self, trainer):
        self.log.append((self.tag, "batch_end", trainer.step))
        if self.publish and trainer.step == 3:
            trainer.publish_health({"kind": "health", "step": trainer.step})

    def on_step(self, trainer, rec):
        self.log.append((self.tag, "step", rec["step"]))

    def on_epoch(self, trainer, rec):
        self.log.append((self.tag, "epoch", rec["step"]))

    def on_event(self, trainer, rec):
        self.log.append((self.tag, rec["event"], rec["step"]))

    def on_health(self, trainer, rec):
        self.log.append((self.tag, "health", rec["step"]))

    def on_end(self, trainer, result):
        self.log.append((self.tag, "end:" + result.status, trainer.step))


def test_every_callback_gets_every_hook_in_list_order(mnist):
    log = []
    trainer = E.Trainer(plan_run(SMALL, cfg(epochs=2)), mnist, callbacks=[Hooks("a", log), Hooks("b", log, publish=True)])
    assert trainer.run().status == "done"
    a = [(hook, step) for tag, hook, step in log if tag == "a"]
    assert [(t, h, s) for t, h, s in log if t == "b"] == [("b", h, s) for h, s in a]  # b saw what a saw
    assert a[0] == ("start", 0) and a[-1] == ("end:done", 20)
    assert a[1:4] == [("batch_start", 0), ("batch_end", 1), ("step", 1)]
    assert [s for h, s in a if h == "epoch"] == [10, 20] and [s for h, s in a if h == "step"] == list(range(1, 21))
    assert [s for h, s in a if h == "health"] == [3]  # published by b, seen by a too
    for i, (tag, hook, step) in enumerate(log[:-1]):  # a before b for each hook
        if tag == "a":
            assert log[i + 1] == ("b", hook, step)


def test_stop_after_this_epoch_ends_at_the_epoch_boundary(mnist):
    control = Control()
    log = []

    class StopAt3(Hooks):
        def on_step(self, trainer, rec):
            super().on_step(trainer, rec)
            if rec["step"] == 3:
                control.stop_after_epoch.set()

    result = E.Trainer(plan_run(SMALL, cfg(epochs=3)), mnist, control=control, callbacks=[StopAt3("a", log)]).run()
    assert result.status == "stopped" and "after epoch 1" in result.message
    assert result.epochs_done == 1 and result.step == 10  # the epoch in progress was finished, not cut
    hooks = [(h, s) for _, h, s in log]
    assert hooks[-3:] == [("epoch", 10), ("stop", 10), ("end:stopped", 10)]


DROPPY = [{"type": "conv", "out": 8, "k": 3, "stride": 2}, {"type": "relu"}, {"type": "dropout2d", "p": 0.3},
          {"type": "flatten"}, {"type": "linear", "out": 32}, {"type": "relu"}, {"type": "dropout", "p": 0.5},
          {"type": "linear", "out": 10}]


def _losses(mnist, c, callbacks=(), before_run=None, resume_state=None, status="done"):
    col = Collect()
    trainer = E.Trainer(plan_run(DROPPY, c), mnist, callbacks=[col, *callbacks], resume_state=resume_state)
    if before_run:
        before_run(trainer)
    assert trainer.run().status == status
    return [s["loss"] for s in col.steps], trainer


def test_starting_a_second_trainer_does_not_change_the_first_ones_curve(mnist):
    alone, _ = _losses(mnist, cfg(seed=3, epochs=2))

    class StartAnother(Callback):
        def on_step(self, trainer, rec):
            if rec["step"] == 3:  # another job starts (and trains) while this one is running
                assert E.Trainer(plan_run(DROPPY, cfg(seed=4)), mnist).run().status == "done"

    together, _ = _losses(mnist, cfg(seed=3, epochs=2), [StartAnother()])
    assert together == alone
    # the dropout masks matter: other masks (the same seed otherwise) give another curve
    other_masks, _ = _losses(mnist, cfg(seed=3, epochs=2), before_run=lambda t: t.dropout_gen.manual_seed(99))
    assert other_masks != alone


def test_resume_with_dropout_continues_the_same_curve(mnist):
    whole, _ = _losses(mnist, cfg(seed=5, epochs=2))
    first, trainer = _losses(mnist, cfg(seed=5, epochs=2), before_run=lambda t: t.control.stop_after_epoch.set(),
                             status="stopped")
    state = trainer.checkpoint_state()
    torch.manual_seed(1234)  # the process-wide RNG is not the run's: moving it changes nothing
    rest, _ = _losses(mnist, cfg(seed=5, epochs=2), resume_state=state)
    assert first + rest == whole
