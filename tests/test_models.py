"""Architectures: every registered preset is tested by being registered; misfit specs fail clearly."""

import pytest
import torch
import torchinfo

from cnnlab import models as M
from cnnlab.errors import SpecError


@pytest.mark.parametrize("name", M.preset_names())
def test_every_preset_builds_trains_a_step_and_matches_its_summary(name):
    p = M.get_preset(name)
    torch.manual_seed(0)
    model = M.build_model(p.spec)
    x = torch.randn(4, 1, 28, 28)
    out = model(x)
    assert out.shape == (4, 10)
    assert torch.isfinite(out).all()
    loss = torch.nn.functional.cross_entropy(out, torch.tensor([0, 1, 2, 3]))
    loss.backward()
    grads = [q.grad for q in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    summary = M.summarize(p.spec)
    assert summary.total_params == sum(q.numel() for q in model.parameters())
    info = torchinfo.summary(M.build_model(p.spec), input_size=(1, 1, 28, 28), verbose=0)
    assert info.total_params == summary.total_params
    assert p.recipe["epochs"] >= 1 and p.description and p.reported


# Parameter counts of the seeds' original code (each counted from the model class in its `source`).
SOURCE_PARAMS = {"seed000": 39_870_410, "seed001": 19_865, "seed002": 30_840, "seed003": 592_660}


@pytest.mark.parametrize("name", sorted(SOURCE_PARAMS))
def test_seed_parameter_counts_match_their_source(name):
    p = M.get_preset(name)
    assert p.params() == SOURCE_PARAMS[name]
    assert "github.com/" in p.source and p.notes


def test_seed_recipes_follow_their_code():
    r0, r1, r2, r3, r4 = (M.get_preset(f"seed00{i}").recipe for i in range(5))
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
    rows = M.summarize(M.get_preset("seed001").spec).rows
    convs = [r for r in rows if r.type in ("conv", "maxpool")]
    # spatial sizes of the README's table: 26 24 12 12 12 10 5 5 3 1
    assert [r.out_shape[1] for r in convs] == [26, 24, 12, 12, 12, 10, 5, 5, 3, 1]
    assert [r.out_shape[0] for r in rows if r.type == "conv"] == [16, 24, 16, 20, 25, 19, 29, 10]
    # receptive fields by the standard recurrence (the README's column is this minus one)
    assert [r.rf for r in convs] == [3, 5, 6, 6, 10, 14, 16, 16, 24, 32]
    assert rows[-1].type == "logsoftmax"


def test_seed000_is_the_original_net_and_its_cpu_variant_is_named_as_such():
    rows = M.summarize(M.get_preset("seed000").spec).rows
    assert [r.type for r in rows][:2] == ["pixels", "resize"] and rows[1].out_shape == (1, 224, 224)
    assert next(r for r in rows if r.type == "flatten").out_shape == (32768,)
    tied = [r for r in rows if "same weights as layer" in r.detail]
    assert [r.type for r in tied] == ["bn", "conv", "bn"] and all(r.params == 0 for r in tied)
    cpu = M.get_preset("seed000_cpu")
    assert "variant" in cpu.title.lower() and cpu.params() < 200_000


@pytest.mark.parametrize("spec,needle", [
    ([], "empty"),
    ([{"type": "conv", "out": 8}, {"type": "maxpool", "k": 2}] * 4 + [{"type": "flatten"}, {"type": "linear", "out": 10}],
     "layer 6 (conv): kernel 3x3 does not fit the 8x1x1 input"),
    ([{"type": "flatten"}, {"type": "linear", "in": 100, "out": 10}], "in=100 but the previous layer gives 784"),
    ([{"type": "linear", "out": 10}], "add a flatten"),
    ([{"type": "flatten"}, {"type": "conv", "out": 4}], "flat vector"),
    ([{"type": "conv", "out": 4, "k": 27}, {"type": "conv", "out": 4}], "layer 1 (conv): kernel 3x3 does not fit the 4x2x2"),
    ([{"type": "conv", "out": 4, "k": 31}], "'k' must be between 1 and 28"),
    ([{"type": "flatten"}, {"type": "linear", "out": 7}], "exactly 10"),
    ([{"type": "convolution", "out": 4}], "unknown type"),
    ([{"type": "conv", "out": 4, "kernel": 3}], "unknown option"),
    ([{"type": "conv", "out": -4}], "'out' must be between"),
    ([{"type": "conv", "out": "16"}], "must be an integer"),
    ([{"type": "dropout", "p": 1.5}], "'p' must be between"),
    ([{"type": "flatten"}, {"type": "linear", "out": 100_000}, {"type": "linear", "out": 1000}], "over the limit"),
    ([{"type": "resize", "size": 512}, {"type": "conv", "out": 64, "pad": 1}, {"type": "gap"}, {"type": "flatten"},
      {"type": "linear", "out": 10}], "MiB for a batch of 64"),
    ([{"type": "conv", "out": 8, "tie": 1}, {"type": "conv", "out": 8, "k": 5, "tie": 1}, {"type": "flatten"},
      {"type": "linear", "out": 10}], "tie=1 shares weights with layer 0, so it needs the same"),
    ([{"type": "conv", "out": 8, "tie": 1}, {"type": "conv", "out": 8, "tie": 1}, {"type": "flatten"},
      {"type": "linear", "out": 10}], "takes 1 channels, but this one gets 8"),
    ([{"type": "conv", "out": 8}, {"type": "pixels", "max": 255}], "must be the first layer"),
    ([{"type": "flatten"}, {"type": "dropout2d"}], "flat vector"),
    ("conv", "must be a list of layer dicts"),
])
def test_misfit_specs_raise_a_message_naming_layer_and_shapes(spec, needle):
    with pytest.raises(SpecError) as err:
        M.validate_spec(spec)
    assert needle in str(err.value)


def test_pool_past_one_pixel_names_the_shapes():
    spec = [{"type": "conv", "out": 4, "k": 3}] + [{"type": "maxpool", "k": 2}] * 5
    with pytest.raises(SpecError) as err:
        M.build_model(spec + [{"type": "flatten"}, {"type": "linear", "out": 10}])
    assert "4x1x1" in str(err.value) and "layer 5 (maxpool)" in str(err.value)


def test_text_format_round_trips_and_never_evaluates():
    spec = M.get_preset("seed000").spec
    assert M.parse_spec_text(M.spec_to_text(spec)) == spec
    assert M.parse_spec_text('[{"type": "flatten"}, {"type": "linear", "out": 10}]')[1]["out"] == 10
    with pytest.raises(SpecError, match="must be a number"):
        M.parse_spec_text("conv out=__import__('os').system('true')")
    with pytest.raises(SpecError, match="key=value"):
        M.parse_spec_text("conv 16")
    with pytest.raises(SpecError, match="not valid JSON"):
        M.parse_spec_text("[{'type': 'conv'}")


def test_unknown_preset_lists_the_known_ones():
    with pytest.raises(SpecError, match="known: seed000"):
        M.get_preset("lenet")


def test_gap_and_1x1_head_build():
    spec = [{"type": "conv", "out": 8, "pad": 1}, {"type": "bn"}, {"type": "relu"}, {"type": "avgpool", "k": 2},
            {"type": "conv1x1", "out": 10}, {"type": "gap"}, {"type": "flatten"}, {"type": "logsoftmax"}]
    s = M.summarize(spec)
    assert s.rows[4].params == 8 * 10 + 10 and s.rows[5].out_shape == (10, 1, 1)
    assert M.build_model(spec)(torch.randn(2, 1, 28, 28)).shape == (2, 10)


def test_seeded_init_ignores_the_global_rng_and_matches_torch_defaults():
    spec = M.get_preset("seed004").spec
    torch.manual_seed(1)
    a = M.build_model(spec, seed=5)
    torch.rand(1000)  # another thread drawing from the global RNG in between
    b = M.build_model(spec, seed=5)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    c = M.build_model(spec, seed=6)
    assert not torch.equal(a.state_dict()["0_conv.weight"], c.state_dict()["0_conv.weight"])
    torch.manual_seed(0)
    default = M.build_model(spec)  # same distribution as torch's own reset_parameters
    for (k, x), y in zip(a.state_dict().items(), default.state_dict().values()):
        if x.dim() > 0 and x.numel() > 100:
            assert abs(x.std().item() - y.std().item()) < 0.15 * y.std().item(), k
            assert x.abs().max() <= y.abs().max() * 1.05 + 1e-6, k


def test_best_recipe_validates_and_trains_a_few_steps_with_its_test_time_augmentation(mnist):
    from cnnlab import engine as E

    p = M.get_preset("best")
    cfg = E.TrainConfig.from_dict(p.recipe).validate()
    assert cfg.tta_shift > 0 and cfg.data.augment and cfg.scheduler == "onecycle"
    small = {**p.recipe, "epochs": 1, "data": {**p.recipe["data"], "subset": 512, "val_size": 200}}
    trainer = E.Trainer(p.spec, E.TrainConfig.from_dict(small), mnist)
    result = trainer.run()
    assert result.status == "done" and result.step == 4
    assert result.test_acc == E.evaluate(trainer.model, mnist.test_x, mnist.test_y, trainer.device,
                                         channels_last=True, tta_shift=cfg.tta_shift)[1]
