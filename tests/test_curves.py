"""Figure builders of the Train page (cnnlab/plots/curves.py) and its form logic (cnnlab/trainform/)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cnnlab import trainform as tf
from cnnlab.errors import ConfigError
from cnnlab.plots.curves import augmentation_preview, series_figure
from cnnlab.plots.series import Ema, downsample
from cnnlab.presets import get_preset, preset_names


def _loss_curve(n: int, spike_at: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = np.arange(1, n + 1, dtype=float)
    y = 2.3 * np.exp(-x / (n / 5)) + 0.05 + rng.normal(0, 0.02, n)
    if spike_at is not None:
        y[spike_at] = 57.0  # a divergence-like spike of one step
    return x, y


def training_figure(step_recs, epoch_recs, events=(), smoothing=0.9, max_points=500):
    """The Train page's figure of a list of step records: series_figure over their columns."""
    col = {k: np.array([r[k] for r in step_recs], dtype=float) for k in ("step", "loss", "acc")}
    smooth = {k: Ema(smoothing).extend(v) if len(v) else None for k, v in col.items()}
    return series_figure(col["step"], col["loss"], smooth["loss"], epoch_recs, events, max_points,
                         acc_smooth=smooth["acc"])


# ----------------------------------------------------------------------------- downsample

@pytest.mark.parametrize("n,max_points", [(10_000, 500), (50_001, 500), (1_234, 100), (501, 500)])
def test_downsample_bounds_points_and_keeps_extremes(n, max_points):
    x, y = _loss_curve(n, spike_at=n // 3 + 7)
    dx, dy = downsample(x, y, max_points)
    assert len(dx) == len(dy) <= max_points
    assert dy.max() == y.max() == 57.0  # the spike survives
    assert dx[np.argmax(dy)] == x[n // 3 + 7]  # at its own step
    assert dy.min() == y.min()
    assert dx[0] == x[0] and dx[-1] == x[-1]
    assert np.all(np.diff(dx) > 0)  # still a curve in x order


def test_downsample_short_input_unchanged_and_non_finite_dropped():
    dx, dy = downsample([1, 2, 3], [0.5, float("nan"), 0.25], 500)
    assert dx.tolist() == [1, 3] and dy.tolist() == [0.5, 0.25]
    dx, dy = downsample([], [], 500)
    assert len(dx) == 0
    dx, dy = downsample([], [], 500, gaps=True)
    assert len(dx) == 0


def test_downsample_with_gaps_keeps_one_break_per_run_of_non_finite():
    x, y = _loss_curve(5000, spike_at=2000)
    y[10:20] = np.nan  # one run of gaps: one break point
    y[-1] = np.inf
    dx, dy = downsample(x, list(y[:-2]) + [None, y[-1]], 500, gaps=True)
    assert dy[np.isfinite(dy)].max() == 57.0 and len(dx) <= 500 + 3
    breaks = dx[~np.isfinite(dy)].tolist()
    assert breaks == [x[10], x[-2]]  # the None and the inf that follow each other: one break
    assert np.all(np.diff(dx) > 0)


def test_ema_matches_debiased_formula():
    v = [1.0, 2.0, 3.0]
    out = Ema(0.5).extend(v)
    # debiased: s1 = 1; s2 = (0.25*1 + 0.5*2)/(0.75); s3 = (0.125 + 0.25*2 + 0.5*3)/0.875
    assert out[0] == pytest.approx(1.0)
    assert out[1] == pytest.approx((0.25 + 1.0) / 0.75)
    assert out[2] == pytest.approx((0.125 + 0.5 + 1.5) / 0.875)
    assert Ema(0.0).extend(v) == v
    assert Ema(0.5).extend([float("nan"), 1.0, float("nan")])[1:] == [1.0, 1.0]  # a gap keeps the average
    with pytest.raises(ValueError):
        Ema(1.0)


# ----------------------------------------------------------------------------- training figure

def _recs(n_steps: int, spe: int = 50):
    x, y = _loss_curve(n_steps)
    steps = [{"kind": "step", "step": int(s), "epoch": int((s - 1) // spe) + 1, "loss": float(l),
              "acc": 0.9, "lr": 0.1, "ips": 1000.0, "t": float(s)} for s, l in zip(x, y)]
    epochs = [{"kind": "epoch", "epoch": e, "step": e * spe, "train_loss": 0.3 / e, "train_acc": 0.9 + e / 100,
               "val_loss": 0.35 / e, "val_acc": 0.89 + e / 100, "lr": 0.1, "t": float(e)}
              for e in range(1, n_steps // spe + 1)]
    return steps, epochs


def test_figure_builds_with_empty_data():
    fig = training_figure([], [], [])
    assert len(fig.data) == 0
    assert fig.layout.annotations[0].text == "no points yet"


def test_figure_traces_downsampled_and_markers_for_events():
    steps, epochs = _recs(20_000, spe=1000)
    events = [
        {"kind": "event", "event": "set", "step": 5000, "epoch": 6, "field": "lr", "old": 0.1, "new": 0.05, "t": 1},
        {"kind": "event", "event": "pause", "step": 7000, "epoch": 8, "t": 2},
        {"kind": "event", "event": "resume", "step": 7000, "epoch": 8, "t": 3},
    ]
    fig = training_figure(steps, epochs, events, smoothing=0.9, max_points=500)
    names = [t.name for t in fig.data]
    assert {"loss (step)", "loss (smoothed)", "train loss (epoch)", "val loss (epoch)",
            "train acc (epoch)", "val acc (epoch)"} <= set(names)
    for t in fig.data:
        assert len(t.x) <= 500
    val_acc = next(t for t in fig.data if t.name == "val acc (epoch)")
    assert list(val_acc.x) == [e["step"] for e in epochs]
    xs = [s.x0 for s in fig.layout.shapes]
    assert xs == [5000, 7000, 7000]
    texts = [a.text for a in fig.layout.annotations]
    assert "lr 0.1→0.05" in texts and "⏸" in texts and "▶" in texts


def test_smoothed_curve_is_smoother_than_raw():
    steps, _ = _recs(2000)
    fig = training_figure(steps, [], smoothing=0.9, max_points=5000)
    raw = np.array(next(t for t in fig.data if t.name == "loss (step)").y)
    sm = np.array(next(t for t in fig.data if t.name == "loss (smoothed)").y)
    assert np.abs(np.diff(sm)).mean() < np.abs(np.diff(raw)).mean() / 3


def test_augmentation_preview_grid():
    imgs = np.random.default_rng(0).random((16, 28, 28))
    fig = augmentation_preview(imgs, cols=8)
    z = np.array(fig.data[0].z, dtype=float)
    assert z.shape == (2 * 28 + 2, 8 * 28 + 7 * 2)
    assert np.nanmax(z) <= 1.0
    augmentation_preview(np.zeros((0, 28, 28)))  # empty grid still builds


# ----------------------------------------------------------------------------- trainform

@pytest.mark.parametrize("name", preset_names())
def test_every_preset_gives_a_valid_form(name):
    vals = tf.form_defaults(name)
    assert set(vals) == set(tf.FORM_FIELDS)
    cfg = tf.build_config(vals)
    assert cfg.to_dict()["lr"] == get_preset(name).recipe["lr"]
    assert tf.preset_caption(name).count("Reported") == 1


def test_form_subset_zero_means_all_and_floats_for_ints_accepted():
    vals = tf.form_defaults("seed002")
    assert vals["subset"] == 0 and vals["val_source"] == "test"
    vals.update(subset=0, epochs=2.0, batch_size=32)
    cfg = tf.build_config(vals)
    assert cfg.data.subset is None and cfg.epochs == 2 and cfg.data.val_source == "test"
    assert tf.build_config(tf.form_defaults("seed001")).data.aug_kind == "cropzoom"  # the form keeps the kind


@pytest.mark.parametrize("field,value", [("lr", 0.0), ("lr", -1.0), ("momentum", 1.5), ("epochs", 0),
                                         ("batch_size", 2.5), ("subset", 70000), ("val_size", 10),
                                         ("aug_strength", 9.0), ("label_smoothing", 0.9)])
def test_invalid_form_value_names_its_field(field, value):
    vals = tf.form_defaults("fast")
    vals[field] = value
    cfg, err = tf.try_build_config(vals)
    assert cfg is None and isinstance(err, ConfigError)
    assert err.field == field
    assert field in tf.field_message(err)


def test_spec_text_checked_inline():
    good = tf.check_spec_text(tf.preset_spec_text("seed004"))
    assert good.error is None and good.total_params == get_preset("seed004").params()
    assert good.table[-1]["output"] == "10"
    bad = tf.check_spec_text("conv out=8 k=3\nmaxpool k=2\nmaxpool k=2\nmaxpool k=2\nmaxpool k=2\nconv out=8 k=5\n"
                             "flatten\nlinear out=10")
    assert bad.spec is None and "does not fit" in bad.error
    assert tf.check_spec_text("").error


class _View:
    def __init__(self, id, status, **kw):
        self.id, self.status, self.name, self.preset = id, status, id, "fast"
        self.epoch, self.epochs, self.step, self.total_steps, self.steps_per_epoch = 0, 2, 0, 20, 10
        self.ips, self.eta_s, self.best_val_acc, self.test_acc, self.message, self.traceback = (
            0.0, None, None, None, "", None)
        self.__dict__.update(kw)
        self.recs: list[dict] = []

    def records_since(self, k):
        return self.recs[k:], len(self.recs)


def test_pick_run_prefers_state_then_url_then_newest_active():
    jobs = [_View("c", "done"), _View("b", "running"), _View("a", "queued")]
    assert tf.pick_run(["a", "c"], jobs) == "a"
    assert tf.pick_run([None, "c"], jobs) == "c"
    assert tf.pick_run(["gone", None], jobs) == "b"
    assert tf.pick_run([], [_View("x", "done"), _View("y", "failed")]) == "x"
    assert tf.pick_run([], []) is None


def test_progress_and_status_lines():
    v = _View("r", "running", epoch=1, step=15, eta_s=75.0, ips=1234.0)
    frac, text = tf.progress(v)
    assert frac == 0.75 and text == "epoch 2/2 · step 15/20 · ETA 1m 15s · 1,234 img/s"
    assert tf.status_line(_View("r", "diverged", message="training diverged: the loss became nan at step 7"))[1] \
        .endswith("at step 7")
    level, line = tf.status_line(_View("r", "failed", message="RuntimeError: boom\nmore"))
    assert level == "error" and line == "Failed: RuntimeError: boom"
    missing = "MNIST is not available in /x (files not found).\nPut the four MNIST files here:\n  - /x/MNIST/raw/a"
    assert "/x/MNIST/raw/a" in tf.status_line(_View("r", "failed", message=missing))[1]


def test_live_changes_only_differences_and_type_checked():
    cur = {"lr": 0.1, "momentum": 0.9, "weight_decay": 5e-4, "aug_strength": 1.0}
    assert tf.live_changes(cur, {"lr": 0.05, "momentum": 0.9, "weight_decay": 5e-4, "aug_strength": 1.0}) == {"lr": 0.05}
    with pytest.raises(ConfigError):
        tf.live_changes(cur, {"lr": "fast"})


def test_curve_cache_reads_only_new_records_and_caches_figure():
    v = _View("r", "running")
    v.recs = [{"kind": "step", "step": i, "loss": 2.0 / i, "acc": 0.5} for i in range(1, 101)]
    cache = tf.CurveCache("r")
    assert cache.update(v) and cache.k == 100 and cache.n_points == 100
    fig1 = cache.figure()
    assert not cache.update(v)
    assert cache.figure() is fig1  # nothing new: not rebuilt
    v.recs.append({"kind": "event", "event": "set", "step": 100, "field": "lr", "old": 0.1, "new": 0.01})
    v.recs.append({"kind": "step", "step": 101, "loss": float("nan"), "acc": 0.5})  # dropped
    v.recs.append({"kind": "epoch", "epoch": 1, "step": 101, "train_loss": 0.1, "train_acc": 0.9,
                   "val_loss": 0.2, "val_acc": 0.8})
    assert cache.update(v)
    assert cache.n_points == 100 and len(cache.events) == 1 and len(cache.epochs) == 1
    fig2 = cache.figure()
    assert fig2 is not fig1 and [s.x0 for s in fig2.layout.shapes] == [100]
    # the cache smooths exactly the points it keeps
    assert cache.loss_ema[-1] == pytest.approx(Ema(0.9).extend(cache.loss)[-1])
    assert all(math.isfinite(x) for x in cache.loss_ema)


def test_live_curves_redraw_for_new_steps_at_most_every_few_seconds_but_at_once_for_marks():
    cache = tf.CurveCache("r")
    every = cache.redraw.every
    assert every > tf.STATUS_EVERY_S  # slower than the status line's looks, which keep the progress moving
    step = lambda i: {"kind": "step", "step": i, "loss": 1.0 / i, "acc": 0.5}  # noqa: E731
    empty = cache.figure(now=100.0)
    cache.add([step(1)])
    first = cache.figure(now=100.1)
    assert first is not empty and len(first.data[0].x) == 1  # the first point is drawn at once
    cache.add([step(i) for i in range(2, 50)])
    assert cache.n_points == 49  # counted now (the page's caption) ...
    assert cache.figure(now=100.1 + every / 2) is first  # ... drawn later
    later = cache.figure(now=100.1 + every)
    assert later is not first and len(later.data[0].x) == 49
    cache.add([step(50), {"kind": "event", "event": "pause", "step": 50}])
    paused = cache.figure(now=100.2 + every)  # an event redraws at once (its marker)
    assert paused is not later and [s.x0 for s in paused.layout.shapes] == [50]
    assert cache.figure(now=100.3 + every) is paused  # nothing new: not rebuilt


def test_charts_stay_readable():
    """Issue 12: distinct percent ticks, readable counts on dark cells, the legend clear of the x title."""
    import numpy as np

    from cnnlab.plots import evaluation as P

    cm = np.diag([980] * 10).astype(float)
    cm[4, 9], cm[7, 2] = 40, 3
    fig = P.confusion_heatmap(cm)
    (labels,) = [t for t in fig.data if t.type == "scatter" and t.mode == "text"]
    color = dict(zip(zip(labels.y, labels.x), labels.textfont.color))
    assert color[(4, 9)] == "white" and color[(7, 2)] == "black" and color[(0, 0)] == "black"
    assert all(t.texttemplate is None for t in fig.data if t.type == "heatmap")  # no grey auto-colored text
    assert P.per_class_bars(np.full(10, 0.99)).layout.yaxis.tickformat == ".2~%"  # 98.5%, 99%, not 99%, 99%
    train = tf.CurveCache("r")
    train.add([{"kind": "step", "step": 1, "epoch": 1, "loss": 1.0, "acc": 0.5},
               {"kind": "epoch", "epoch": 1, "step": 1, "train_loss": 1, "train_acc": 0.98, "val_loss": 1,
                "val_acc": 0.985}])
    lay = train.figure().layout
    assert lay.yaxis2.tickformat == ".2~%"
    assert lay.legend.yanchor == "bottom" and lay.legend.y >= 1  # above the plots, away from the "step" title


def test_status_says_what_happens_between_launch_and_the_first_step():
    from types import SimpleNamespace as NS

    starting = NS(status="running", message="", step=0)
    level, line = tf.status_line(starting)
    assert level == "info" and line.startswith("Starting…") and "loading MNIST" in line
    assert tf.status_line(NS(status="running", message="", step=5))[1].startswith("Training…")
