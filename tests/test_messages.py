"""Bad input named, never a raw exception (issue 11, items 10-12): the custom-layers box, recipes and
specs handed to the engine, and the command line's --json contract."""

from __future__ import annotations

import json

import pytest

from cnnlab import trainform as tf
from cnnlab.cli import main
from cnnlab.errors import ConfigError, SpecError
from cnnlab.jobs import JobManager
from cnnlab.plan import plan_run
from cnnlab.recipe import TrainConfig
from cnnlab.runs import RunStore

from test_jobs import TINY, cfg


@pytest.mark.parametrize("text,needle", [
    ("[" * 50_000, "nested too deeply"), ("{" * 50_000, "list of layer objects"),
    ('[[[[{"type": "conv"}]]]]', "must be a dict"), ('{"type": "conv", "out": 8}', "got one JSON object"),
])
def test_json_in_the_custom_layers_box_says_what_is_expected(text, needle):
    res = tf.check_spec_text(text)
    assert res.spec is None and needle in res.error, res.error
    with pytest.raises(SpecError, match=needle):
        tf.spec_for_launch("fast", True, text)


@pytest.mark.parametrize("recipe,field", [
    ({"data": "x"}, "data"), ({"data": 3}, "data"), ({"data": ["subset"]}, "data"), ("notadict", "recipe"),
    ([("lr", 1)], "recipe"), ({"data": {"subsett": 5}}, "data.subsett"), ({"lrr": 1}, "lrr"),
])
def test_recipes_of_the_wrong_shape_name_the_field(recipe, field):
    with pytest.raises(ConfigError) as err:
        TrainConfig.from_dict(recipe)
    assert err.value.field == field
    assert "must be" in str(err.value) or "unknown" in str(err.value)


@pytest.mark.parametrize("spec,needle", [("notalist", "must be a list of layer dicts"), ([], "empty"),
                                         ({"type": "conv"}, "must be a list"), (None, "must be a list")])
def test_a_spec_that_is_not_a_list_says_so(tmp_path, mnist, spec, needle):
    mgr = JobManager(RunStore(tmp_path / "runs"), mnist_loader=lambda: mnist)
    try:
        with pytest.raises(SpecError, match=needle):
            mgr.submit("tiny", plan_run(spec, cfg()))
        assert mgr.submit("tiny", plan_run(TINY, cfg(epochs=1)))  # the manager goes on
    finally:
        mgr.shutdown()


@pytest.mark.parametrize("argv,field", [
    (["train", "--lr", "abc", "--json"], "lr"), (["train", "--json", "--epochs", "2.5", "--preset", "fast"], "epochs"),
    (["train", "--json"], None), (["bogus", "--json"], None), (["fork", "r1", "--epoch", "x", "--json"], "epoch"),
    (["resume", "--json"], None), (["train", "--preset", "nope", "--json"], None),
    (["resume", "../../etc", "--json"], None),
])
def test_with_json_every_failure_ends_with_one_json_error_line(capsys, argv, field):
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 2
    lines = out.strip().splitlines()
    assert len(lines) == 1, out
    rec = json.loads(lines[0])
    assert rec["status"] == "error" and rec["message"] and rec["field"] == field
    assert rec["message"].split(": ")[-1] in err  # the same words on stderr for a person


def test_argument_errors_without_json_print_no_json(capsys):
    assert main(["train", "--lr", "abc"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and "invalid float value: 'abc'" in err and "usage:" in err
