"""Search spaces: parsing, validation against the recipe's own rules, width scaling (no Ray needed)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from cnnlab.errors import ConfigError
from cnnlab.presets import get_preset
from cnnlab.spec import summarize
from cnnlab.sweeps.space import Param, SweepDef, apply_sample, make_def, parse_param, scale_width
from tests.conftest import ROOT


def _def(params: list[str], preset: str = "seed002", **kw) -> SweepDef:
    p = get_preset(preset)
    recipe = {**p.recipe, "epochs": 1, "data": {**p.recipe.get("data", {}), "subset": 2000}}
    kw.setdefault("trials", 4)
    return make_def(p.name, p.spec, recipe, params, **kw)


def test_parse_each_kind():
    assert parse_param("lr=loguniform:0.0003:0.01") == Param("lr", "loguniform", 0.0003, 0.01)
    assert parse_param("momentum = uniform:0.8:0.99") == Param("momentum", "uniform", 0.8, 0.99)
    assert parse_param("batch_size=int:16:128") == Param("batch_size", "int", 16, 128)
    assert parse_param("optimizer=choice:sgd,adam") == Param("optimizer", "choice", choices=("sgd", "adam"))
    assert parse_param("batch_size=choice:32,64").choices == (32, 64)
    assert parse_param("width=choice:0.5,1,2").choices == (0.5, 1.0, 2.0)


@pytest.mark.parametrize("text, field, words", [
    ("foo=uniform:0:1", "foo", "unknown field"),
    ("lr=loguniform:0.01:0.001", "lr", "greater than HI"),
    ("lr=loguniform:0:0.1", "lr", "positive bounds"),
    ("weight_decay=loguniform:-1:0.1", "weight_decay", "positive bounds"),
    ("optimizer=choice:", "optimizer", "empty"),
    ("optimizer=uniform:0:1", "optimizer", "choice:A,B"),
    ("batch_size=uniform:16:64", "batch_size", "whole number"),
    ("batch_size=int:16.5:64", "batch_size", "not an integer"),
    ("lr=normal:0:1", "lr", "unknown kind"),
    ("lr=uniform:0.1", "lr", "two bounds"),
    ("lr=uniform:a:0.1", "lr", "not a number"),
    ("lr", "param", "FIELD=SPEC"),
    ("lr=choice:0.1,0.1", "lr", "repeats"),
])
def test_malformed_params_name_their_field(text, field, words):
    with pytest.raises(ConfigError) as exc:
        parse_param(text)
    assert exc.value.field == field and words in str(exc.value)


@pytest.mark.parametrize("params, kw, field, words", [
    (["lr=loguniform:0.001:50"], {}, "lr", "at most 10"),
    (["width=uniform:0.01:2"], {}, "width", "0 channels wide"),
    (["optimizer=choice:sgd,lion"], {}, "optimizer", "unknown optimizer"),
    (["batch_size=int:16:4096"], {}, "batch_size", "larger than the 2000 training images"),
    (["subset=int:0:1000"], {}, "subset", "subset"),
    (["lr=uniform:0.001:0.01"], {"trials": 0}, "trials", "from 1"),
    (["lr=uniform:0.001:0.01"], {"concurrent": 5}, "concurrent", "more than the 4 trials"),
    (["lr=uniform:0.001:0.01"], {"search": "grid"}, "lr", "grid search needs"),
    (["optimizer=choice:sgd,adam", "batch_size=choice:32,64,128"], {"search": "grid"}, "trials", "6 combinations"),
    (["lr=uniform:0.001:0.01", "lr=uniform:0.002:0.01"], {}, "lr", "twice"),
    ([], {}, "param", "empty"),
    (["lr=uniform:0.001:0.01"], {"early_stop": True}, "early_stop", "epochs of 2"),
])
def test_bad_definitions_are_refused_before_anything_starts(params, kw, field, words):
    with pytest.raises(ConfigError) as exc:
        _def(params, **kw)
    assert exc.value.field == field, exc.value
    assert words in str(exc.value)


def test_concurrency_beyond_the_cpus_is_refused():
    d = _def(["lr=uniform:0.001:0.01"], concurrent=4)
    with pytest.raises(ConfigError, match="more than the 2 CPUs") as exc:
        d.validate(max_concurrent=2)
    assert exc.value.field == "concurrent"


def test_grid_of_choices_matching_trials_is_accepted():
    d = _def(["optimizer=choice:sgd,adam", "batch_size=choice:32,64"], search="grid", trials=4)
    assert d.grid_size() == 4


def test_apply_sample_sets_recipe_data_and_width():
    p = get_preset("seed002")
    spec, cfg = apply_sample(p.spec, p.recipe, {"lr": 0.005, "subset": 1500, "aug_strength": 0.5,
                                                "optimizer": "sgd", "width": 2.0})
    assert cfg.lr == 0.005 and cfg.optimizer == "sgd" and cfg.data.subset == 1500
    assert cfg.data.augment and cfg.data.aug_strength == 0.5
    convs = [L["out"] for L in spec if L["type"] == "conv"]
    assert convs == [20, 40]  # 10 and 20 doubled
    assert summarize(spec).total_params > summarize(p.spec).total_params


def test_width_never_scales_the_output_layer():
    spec = get_preset("seed001").spec  # ends in conv out=10 -> flatten -> logsoftmax
    scaled = scale_width(spec, 0.5)
    convs = [L for L in scaled if L["type"] == "conv"]
    assert convs[-1]["out"] == 10
    assert all(a["out"] == max(1, round(b["out"] * 0.5)) for a, b in zip(convs[:-1], [L for L in spec if L["type"] == "conv"]))


def test_definition_round_trips_as_json():
    d = _def(["lr=loguniform:0.0003:0.01", "optimizer=choice:sgd,adam"], early_stop=False)
    back = SweepDef.from_dict(json.loads(json.dumps(d.to_dict()))).validate()
    assert back.params == d.params and back.spec == d.spec and back.to_dict()["space"] == [
        "lr=loguniform:0.0003:0.01", "optimizer=choice:sgd,adam"]


@pytest.mark.parametrize("args, field", [
    (["--param", "lr=loguniform:0.01:0.001"], "lr"),
    (["--param", "width=choice:0.01"], "width"),
    (["--trials", "0", "--param", "lr=uniform:0.001:0.01"], "trials"),
])
def test_cli_refuses_a_bad_space_with_json_and_writes_nothing(tmp_path, args, field):
    base = ["--preset", "seed002", "--trials", "4"]
    env = {"CNNLAB_CHECKPOINT_DIR": str(tmp_path / "ck"), "PATH": "/usr/bin:/bin"}
    import os

    env = {**os.environ, **env}
    out = subprocess.run([sys.executable, "-m", "cnnlab", "sweep", *base, *args, "--json"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2, out.stderr
    last = json.loads(out.stdout.strip().splitlines()[-1])
    assert last["status"] == "error" and last["field"] == field
    assert not (tmp_path / "ck" / "_sweeps").exists()
    assert [p.name for p in (tmp_path / "ck").iterdir()] == [] if (tmp_path / "ck").exists() else True
