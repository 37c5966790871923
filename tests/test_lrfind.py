"""LR range test: suggestions against the presets' known-good recipes, the background finder, CLI, plot."""

from __future__ import annotations

import json

import pytest

from cnnlab import cli
from cnnlab.data import DataConfig
from cnnlab.engine import Trainer
from cnnlab.plan import plan_run
from cnnlab.recipe import TrainConfig
from cnnlab.errors import ConfigError, SpecError
from cnnlab.lrfind import END_LR, START_LR, STEPS, LRFinder, lr_at, lr_range_test, preset_config, suggest
from cnnlab.plots.lrfind import lr_find_figure
from cnnlab.runs import RunStore
from test_jobs import TINY, cfg, wait_for


@pytest.fixture(scope="module")
def found(mnist):
    """preset -> LRFindResult with the defaults (200 steps, 1e-6 to 10), computed once per module."""
    cache: dict = {}

    def get(name: str):
        if name not in cache:
            cache[name] = lr_range_test(preset_config(name), mnist)
        return cache[name]
    return get


@pytest.mark.parametrize("preset", ["seed004", "fast"])
def test_suggestion_is_within_3x_of_the_recipe_lr(found, preset) -> None:
    res = found(preset)
    recipe_lr = preset_config(preset).cfg.lr
    assert res.recipe_lr == recipe_lr
    assert recipe_lr / 3 <= res.suggestion <= recipe_lr * 3, (preset, res.suggestion, res.min_lr)
    assert res.suggestion == pytest.approx(res.min_lr / 10) and res.rule == "min/10"
    assert res.lrs[0] == pytest.approx(START_LR) and res.lrs == sorted(res.lrs)
    assert len(res.lrs) == len(res.losses) == len(res.smoothed) <= STEPS
    assert res.stop_reason in ("exploded", "end")
    assert RunStore().list_runs() == []  # nothing written to the store


def test_the_suggested_lr_trains_a_subset_run(found, mnist) -> None:
    res = found("seed004")
    plan = preset_config("seed004", lr=float(f"{res.suggestion:.2g}"), epochs=1, device="cpu",
                         data={"subset": 4000, "val_size": 1000})
    result = Trainer(plan, mnist).run()
    assert result.status == "done", result.message
    assert result.test_acc >= 0.9, result.test_acc


def test_sweep_and_suggestion_rule() -> None:
    assert lr_at(0, 200) == pytest.approx(START_LR) and lr_at(199, 200) == pytest.approx(END_LR)
    assert lr_at(100, 201) == pytest.approx(1e-6 * 1e7 ** 0.5)
    lrs = [lr_at(i, 100) for i in range(100)]
    # a loss that falls until lr ~1e-2, then rises: the minimum there, the suggestion a decade lower
    loss = [2.0 - min(i, 70) * 0.02 + max(0, i - 70) * 0.3 for i in range(100)]
    s, m, steep = suggest(lrs, loss)
    assert m == pytest.approx(lrs[70]) and s == pytest.approx(lrs[70] / 10) and steep is not None
    assert suggest(lrs[:5], loss[:5]) == (None, None, None)


def test_finder_job_reports_progress_and_can_be_cancelled(mnist) -> None:
    finder = LRFinder(mnist_loader=lambda: mnist)
    c = cfg(data=DataConfig(subset=4096, val_size=500))
    long = finder.start(plan_run(TINY, c), label="tiny", steps=2000)
    job = finder.get(long)
    wait_for(lambda: job.step >= 5 or job.done, what="finder steps")
    assert job.status == "running" and 0 < job.progress < 1 and job.last["lr"] > 0
    finder.cancel(long)
    job = finder.wait(long, timeout=120)
    assert job.status == "cancelled" and job.result.stop_reason == "cancelled"
    assert 5 <= len(job.result.lrs) < 2000
    short = finder.wait(finder.start(plan_run(TINY, c), steps=60), timeout=300)
    assert short.status == "done" and short.result.lrs and short.progress == pytest.approx(
        len(short.result.lrs) / 60)
    with pytest.raises(ConfigError):
        finder.start(plan_run(TINY, c), steps=5)
    with pytest.raises(SpecError):
        finder.start(plan_run([{"type": "linear", "out": 10}], c))
    with pytest.raises(ConfigError):
        finder.start(plan_run(TINY, TrainConfig(batch_size=0)))


def test_cli_lr_find_prints_the_suggestion(capsys) -> None:
    code = cli.main(["lr-find", "--preset", "seed002_1conv", "--subset", "4000", "--steps", "60", "--json",
                     "--quiet"])
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == 0 and out["preset"] == "seed002_1conv" and out["rule"] == "min/10"
    assert out["suggested_lr"] == pytest.approx(out["min_loss_lr"] / 10)
    assert len(out["lrs"]) == len(out["smoothed_loss"]) == out["steps"] <= 60
    assert RunStore().list_runs() == []
    assert cli.main(["lr-find", "--preset", "nope"]) == 2
    assert "unknown preset 'nope'" in capsys.readouterr().err


def test_figure_marks_the_suggestion() -> None:
    lrs = [lr_at(i, 50) for i in range(50)]
    loss = [2.0 - i * 0.03 for i in range(50)]
    fig = lr_find_figure(lrs, loss, loss, suggestion=1e-3, min_lr=1e-2, recipe_lr=2e-3)
    assert fig.layout.xaxis.type == "log"
    assert [s.x0 for s in fig.layout.shapes] == [1e-3, 1e-2, 2e-3]
    assert "suggested 0.001" in fig.layout.annotations[0].text
    assert len(fig.data) == 2
    assert lr_find_figure([], [], []).layout.annotations[0].text == "no points yet"
