"""Presets: every registered preset is tested by being registered; the seeds match their sources."""

import pytest
import torch
import torchinfo

from cnnlab.errors import SpecError
from cnnlab.models import build_model
from cnnlab.presets import get_preset, preset_names
from cnnlab.spec import summarize


@pytest.mark.parametrize("name", preset_names())
def test_every_preset_builds_trains_a_step_and_matches_its_summary(name):
    p = get_preset(name)
    torch.manual_seed(0)
    model = build_model(p.spec)
    x = torch.randn(4, 1, 28, 28)
    out = model(x)
    assert out.shape == (4, 10)
    assert torch.isfinite(out).all()
    loss = torch.nn.functional.cross_entropy(out, torch.tensor([0, 1, 2, 3]))
    loss.backward()
    grads = [q.grad for q in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    summary = summarize(p.spec)
    assert summary.total_params == sum(q.numel() for q in model.parameters())
    info = torchinfo.summary(build_model(p.spec), input_size=(1, 1, 28, 28), verbose=0)
    assert info.total_params == summary.total_params
    assert p.recipe["epochs"] >= 1 and p.description and p.reported


# Parameter counts of the seeds' original code (each counted from the model class in its `source`).
SOURCE_PARAMS = {"seed000": 39_870_410, "seed001": 19_865, "seed002": 30_840, "seed003": 592_660}


@pytest.mark.parametrize("name", sorted(SOURCE_PARAMS))
def test_seed_parameter_counts_match_their_source(name):
    p = get_preset(name)
    assert p.params() == SOURCE_PARAMS[name]
    assert "github.com/" in p.source and p.notes


def test_seed_recipes_follow_their_code():
    r0, r1, r2, r3, r4 = (get_preset(f"seed00{i}").recipe for i in range(5))
    assert (r0["optimizer"], r0["lr"], r0["epochs"], r0["batch_size"]) == ("adam", 1e-5, 20, 60)
    assert (r0["data"]["val_size"], r0["data"]["aug_kind"]) == (10000, "brightness")
    assert (r1["optimizer"], r1["lr"], r1["momentum"], r1["scheduler"], r1["step_size"], r1["gamma"],
            r1["epochs"], r1["batch_size"]) == ("sgd", 0.01, 0.9, "step", 15, 0.1, 20, 256)
    assert r1["data"]["augment"] is True and r1["data"]["aug_kind"] == "cropzoom"
    assert (r2["optimizer"], r2["batch_size"], r2["epochs"]) == ("adam", 32, 10)
    assert "subset" not in r2["data"]
    assert (r3["optimizer"], r3["lr"], r3["momentum"], r3["batch_size"], r3["step_size"], r3["epochs"]) == (
        "sgd", 0.01, 0.9, 512, 15, 20)
    for r in (r1, r2, r3):  # the seeds trained on all 60k and validated on the test set
        assert r["data"]["val_source"] == "test"
    assert (r4["optimizer"], r4["batch_size"], r4["epochs"]) == ("adam", 64, 5)


def test_seed001_summary_matches_its_layer_table():
    rows = summarize(get_preset("seed001").spec).rows
    convs = [r for r in rows if r.type in ("conv", "maxpool")]
    # spatial sizes of the README's table: 26 24 12 12 12 10 5 5 3 1
    assert [r.out_shape[1] for r in convs] == [26, 24, 12, 12, 12, 10, 5, 5, 3, 1]
    assert [r.out_shape[0] for r in rows if r.type == "conv"] == [16, 24, 16, 20, 25, 19, 29, 10]
    # receptive fields by the standard recurrence (the README's column is this minus one)
    assert [r.rf for r in convs] == [3, 5, 6, 6, 10, 14, 16, 16, 24, 32]
    assert rows[-1].type == "logsoftmax"


def test_seed000_is_the_original_net_and_its_cpu_variant_is_named_as_such():
    rows = summarize(get_preset("seed000").spec).rows
    assert [r.type for r in rows][:2] == ["pixels", "resize"] and rows[1].out_shape == (1, 224, 224)
    assert next(r for r in rows if r.type == "flatten").out_shape == (32768,)
    tied = [r for r in rows if "same weights as layer" in r.detail]
    assert [r.type for r in tied] == ["bn", "conv", "bn"] and all(r.params == 0 for r in tied)
    cpu = get_preset("seed000_cpu")
    assert "variant" in cpu.title.lower() and cpu.params() < 200_000


def test_unknown_preset_lists_the_known_ones():
    with pytest.raises(SpecError, match="known: seed000"):
        get_preset("lenet")


def test_best_recipe_validates_and_trains_a_few_steps_with_its_test_time_augmentation(mnist):
    from cnnlab import engine as E
    from cnnlab.evaluation import evaluate
    from cnnlab.plan import plan_run
    from cnnlab.recipe import TrainConfig

    p = get_preset("best")
    cfg = TrainConfig.from_dict(p.recipe).validate()
    assert cfg.tta_shift > 0 and cfg.data.augment and cfg.scheduler == "onecycle"
    small = {**p.recipe, "epochs": 1, "data": {**p.recipe["data"], "subset": 512, "val_size": 200}}
    trainer = E.Trainer(plan_run(p.spec, TrainConfig.from_dict(small)), mnist)
    result = trainer.run()
    assert result.status == "done" and result.step == 4
    assert result.test_acc == evaluate(trainer.model, mnist.test_x, mnist.test_y, trainer.device,
                                       channels_last=True, tta_shift=cfg.tta_shift)[1]
