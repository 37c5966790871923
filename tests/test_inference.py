"""Canvas preprocessing, prediction, feature maps, attribution, robustness probe and probe plots."""

from __future__ import annotations

import os
from collections import OrderedDict
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.data import MEAN, STD
from cnnlab.errors import LabError
from cnnlab.inference import attribution, preprocessing, probes, robustness
from cnnlab.plots import probe

CANVAS = 280


# --- models ------------------------------------------------------------------------------------


def small_net() -> nn.Sequential:
    """conv(1->4) relu pool conv(4->8) bn relu dropout -> linear -> logsoftmax (train mode matters)."""
    torch.manual_seed(0)
    return nn.Sequential(
        OrderedDict(
            [
                ("0_conv", nn.Conv2d(1, 4, 3)),
                ("1_relu", nn.ReLU(inplace=True)),  # inplace: stored conv maps must be copies
                ("2_maxpool", nn.MaxPool2d(2)),
                ("3_conv", nn.Conv2d(4, 8, 3)),
                ("4_bn", nn.BatchNorm2d(8)),
                ("5_relu", nn.ReLU()),
                ("6_dropout", nn.Dropout(0.5)),
                ("7_flatten", nn.Flatten()),
                ("8_linear", nn.Linear(8 * 11 * 11, 10)),
                ("9_logsoftmax", nn.LogSoftmax(dim=1)),
            ]
        )
    )


class Branches(nn.Module):
    """Inception-like block: a 1x1 branch and a 1x1 -> relu -> 3x3 branch, concatenated."""

    def __init__(self, cin: int):
        super().__init__()
        self.b1 = nn.Conv2d(cin, 2, 1)
        self.b3 = nn.Sequential(nn.Conv2d(cin, 2, 1), nn.ReLU(), nn.Conv2d(2, 3, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(torch.cat([self.b1(x), self.b3(x)], dim=1))


def branchy_net() -> nn.Sequential:
    """Logits (no LogSoftmax) through a custom block with parallel branches."""
    torch.manual_seed(1)
    return nn.Sequential(
        OrderedDict(
            [
                ("0_conv", nn.Conv2d(1, 4, 3)),
                ("1_relu", nn.ReLU()),
                ("2_inception", Branches(4)),
                ("3_gap", nn.AdaptiveAvgPool2d(1)),
                ("4_flatten", nn.Flatten()),
                ("5_linear", nn.Linear(5, 10)),
            ]
        )
    )


class Explodes(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("boom")


# --- canvases ----------------------------------------------------------------------------------


def blank_canvas() -> np.ndarray:
    return np.zeros((CANVAS, CANVAS, 4), np.uint8)


def ink(canvas: np.ndarray, mask: np.ndarray, alpha: np.ndarray | None = None) -> np.ndarray:
    """White ink where mask; alpha carries the intensity like the canvas's antialiased edges."""
    canvas[mask, :3] = 255
    canvas[mask, 3] = 255 if alpha is None else alpha[mask]
    return canvas


def ellipse_canvas(cy=75, cx=60, ry=60, rx=28) -> np.ndarray:
    """A thick ring ('0'-like), tall and off-center in the top-left, with soft edges."""
    yy, xx = np.mgrid[:CANVAS, :CANVAS]
    d = np.abs(np.hypot((yy - cy) / ry, (xx - cx) / rx) - 1.0)
    alpha = np.clip((0.22 - d) / 0.05, 0, 1) * 255
    return ink(blank_canvas(), alpha > 0, alpha.astype(np.uint8))


def bbox_side(img: np.ndarray, thr: float = 0.05) -> tuple[int, int]:
    rows, cols = np.flatnonzero((img > thr).any(1)), np.flatnonzero((img > thr).any(0))
    return rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1


# --- preprocessing -----------------------------------------------------------------------------


def test_off_center_digit_is_cropped_scaled_and_centered():
    pre = preprocessing.preprocess(ellipse_canvas())
    assert not pre.empty and not pre.saturated
    assert pre.image.shape == (28, 28) and pre.image.dtype == np.float32
    assert 0.0 <= pre.image.min() and pre.image.max() <= 1.0
    h, w = bbox_side(pre.image)
    assert h == 20  # the tall side fills the 20 px box
    assert 8 <= w <= 12  # aspect ratio kept (28/60 * 20 ~ 9.3, plus stroke)
    cy, cx = preprocessing._center_of_mass(pre.image)
    assert abs(cy - 14) <= 1 and abs(cx - 14) <= 1
    assert pre.tensor.shape == (1, 1, 28, 28)
    expected = (torch.from_numpy(pre.image) - MEAN) / STD
    torch.testing.assert_close(pre.tensor[0, 0], expected)


def test_grayscale_and_rgb_canvases_match_rgba():
    rgba = ellipse_canvas()
    gray = (rgba[:, :, 3].astype(np.float32) / 255.0)  # float grayscale in [0, 1]
    rgb_black_bg = (rgba[:, :, :3].astype(np.float32) * gray[..., None]).astype(np.uint8)
    ref = preprocessing.preprocess(rgba).image
    np.testing.assert_allclose(preprocessing.preprocess(gray).image, ref, atol=1e-5)
    np.testing.assert_allclose(preprocessing.preprocess(rgb_black_bg).image, ref, atol=0.02)


def test_transparent_pixels_are_not_ink():
    canvas = blank_canvas()
    canvas[:, :, :3] = 255  # white RGB everywhere but fully transparent: nothing drawn
    assert preprocessing.preprocess(canvas).empty


@pytest.mark.parametrize(
    "what",
    ["empty", "dot", "stray"],
)
def test_empty_and_nearly_empty_canvases(what):
    canvas = blank_canvas()
    if what == "dot":  # a click with a 16 px brush
        yy, xx = np.mgrid[:CANVAS, :CANVAS]
        ink(canvas, np.hypot(yy - 140, xx - 140) <= 8)
    elif what == "stray":
        ink(canvas, np.zeros((CANVAS, CANVAS), bool))
        canvas[[10, 100, 200, 250], [30, 60, 90, 270]] = 255
    pre = preprocessing.preprocess(canvas)
    assert pre.empty
    assert pre.image.shape == (28, 28) and not pre.image.any()
    analysis = probes.analyze(small_net(), canvas)
    assert analysis.prediction is None and analysis.layers == []


def test_full_canvas_is_valid_but_flagged():
    canvas = ink(blank_canvas(), np.ones((CANVAS, CANVAS), bool))
    pre = preprocessing.preprocess(canvas)
    assert not pre.empty and pre.saturated
    assert np.isfinite(pre.image).all()
    assert bbox_side(pre.image) == (20, 20)
    analysis = probes.analyze(small_net(), canvas)
    assert analysis.prediction is not None
    assert abs(analysis.prediction.probs.sum() - 1) < 1e-5


def mnist_test_images():
    root = Path(os.environ.get("CNNLAB_DATA_DIR") or "/work/shared/data")
    try:
        import torchvision

        ds = torchvision.datasets.MNIST(str(root), train=False, download=False)
    except (RuntimeError, OSError) as exc:
        pytest.skip(f"MNIST test set not available under {root}: {exc}")
    return ds.data, ds.targets


def test_real_mnist_digit_survives_preprocessing():
    """MNIST digits are already 20x20-fitted and mass-centered, so the round trip is near identity.

    MNIST centered by whole pixels, so a digit whose center of mass sits exactly on a half pixel
    (13.5 or 14.5; ~2 % of them) may come back one pixel over: per-image we allow that shift.
    """
    x_u8, _ = mnist_test_images()
    corrs, aligned = [], []
    for idx in range(50):
        img = robustness.test_image(x_u8, idx)
        canvas = blank_canvas()
        canvas[:, :, :3] = 255
        canvas[:, :, 3] = np.kron(x_u8[idx].numpy(), np.ones((10, 10), np.uint8))  # 10x upscale
        out = preprocessing.preprocess(canvas).image

        def corr(a: np.ndarray) -> float:
            return float(np.corrcoef(a.ravel(), img.ravel())[0, 1])

        corrs.append(corr(out))
        aligned.append(max(corr(np.roll(out, (dy, dx), (0, 1))) for dy in (-1, 0, 1) for dx in (-1, 0, 1)))
        cy, cx = preprocessing._center_of_mass(out)
        assert abs(cy - 14) <= 0.5 + 1e-6 and abs(cx - 14) <= 0.5 + 1e-6
    assert np.mean(corrs) > 0.97, corrs
    assert min(aligned) > 0.95, aligned


# --- prediction and feature maps ---------------------------------------------------------------


def digit_input() -> torch.Tensor:
    return preprocessing.preprocess(ellipse_canvas()).tensor


def digit_maps(model: nn.Module) -> list[probes.LayerMaps]:
    """Every conv's feature maps for the test digit, as the Draw page records them."""
    return probes.analyze_image(model, preprocessing.preprocess(ellipse_canvas()).image).layers


def test_predict_uses_eval_mode_and_restores_train_mode():
    model = small_net().train()
    x = digit_input()
    a, b = probes.predict(model, x), probes.predict(model, x)
    assert model.training and all(m.training for m in model.modules())
    np.testing.assert_array_equal(a.probs, b.probs)
    with torch.no_grad():
        expected = torch.softmax(model.eval()(x), dim=1)[0].numpy()
    np.testing.assert_allclose(a.probs, expected, rtol=1e-5, atol=1e-7)
    assert a.probs.shape == (10,) and abs(a.probs.sum() - 1) < 1e-5
    assert a.top == int(np.argmax(a.probs)) and a.confidence == pytest.approx(a.probs.max())


def test_predict_accepts_display_images():
    model = small_net()
    pre = preprocessing.preprocess(ellipse_canvas())
    np.testing.assert_allclose(probes.predict(model, pre.image).probs, probes.predict(model, pre.tensor).probs)


def test_feature_maps_one_per_conv_with_post_activation_when_sequential():
    model = small_net().train()
    layers = digit_maps(model)
    assert [(l.name, l.maps.shape, l.stage) for l in layers] == [
        ("0_conv", (4, 26, 26), "relu"),
        ("3_conv", (8, 11, 11), "relu"),  # found past the BatchNorm
    ]
    assert all(l.maps.min() >= 0 for l in layers)
    assert model.training
    assert all(not m._forward_hooks for m in model.modules())


def test_feature_maps_inside_a_custom_block():
    model = branchy_net()
    layers = digit_maps(model)
    assert [(l.name, l.maps.shape, l.stage) for l in layers] == [
        ("0_conv", (4, 26, 26), "relu"),
        ("2_inception.b1", (2, 26, 26), "conv"),  # F.relu inside forward: raw conv output
        ("2_inception.b3.0", (2, 26, 26), "relu"),
        ("2_inception.b3.2", (3, 26, 26), "conv"),
    ]
    assert attribution.gradcam_layer(model)[0] == "2_inception"


def test_hooks_are_removed_when_forward_fails():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), Explodes())
    with pytest.raises(RuntimeError, match="boom"):
        digit_maps(model)
    assert all(not m._forward_hooks for m in model.modules())


def test_concurrent_probes_of_one_model_do_not_mix():
    """Streamlit sessions share a cached model: each call must see only its own forward pass."""
    import threading

    model = branchy_net()
    img = preprocessing.preprocess(ellipse_canvas()).image
    images = [robustness.perturb(img, rotate_deg=a) for a in range(0, 80, 10)]
    inputs = [preprocessing.normalize(x) for x in images]
    expected = [probes.analyze_image(model, x).layers[-1].maps for x in images]
    got: dict[int, list[np.ndarray]] = {i: [] for i in range(len(inputs))}

    def work(i: int) -> None:
        for _ in range(10):
            got[i].append(probes.analyze_image(model, images[i]).layers[-1].maps)
            attribution.gradcam(model, inputs[i])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(inputs))]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    for i, maps in got.items():
        for m in maps:
            np.testing.assert_array_equal(m, expected[i])
    assert all(not m._forward_hooks for m in model.modules())


def test_analyze_matches_separate_calls():
    model = small_net()
    analysis = probes.analyze(model, ellipse_canvas())
    pre = analysis.pre
    np.testing.assert_allclose(analysis.prediction.probs, probes.predict(model, pre.tensor).probs, rtol=1e-6)
    separate = probes.analyze_image(model, pre.image).layers
    for a, b in zip(analysis.layers, separate, strict=True):
        assert a.name == b.name
        np.testing.assert_allclose(a.maps, b.maps)
    assert set(analysis.timing_ms) == {"preprocess", "forward", "total"}
    assert analysis.timing_ms["total"] >= analysis.timing_ms["forward"] >= 0


def test_first_layer_filters():
    model = small_net()
    w = probes.first_layer_filters(model)
    assert w.shape == (4, 1, 3, 3)
    np.testing.assert_array_equal(w, model[0].weight.detach().numpy())
    with pytest.raises(LabError, match="no convolution"):
        probes.first_layer_filters(nn.Sequential(nn.Flatten(), nn.Linear(784, 10)))


# --- attribution -------------------------------------------------------------------------------


def grad_state(model: nn.Module) -> list:
    return [(p.requires_grad, None if p.grad is None else p.grad.clone()) for p in model.parameters()]


@pytest.mark.parametrize("make", [small_net, branchy_net])
@pytest.mark.parametrize(
    "explain",
    [
        lambda m, x: attribution.saliency(m, x),
        lambda m, x: attribution.saliency(m, x, target=3, method="integrated_gradients", n_steps=8),
        lambda m, x: attribution.gradcam(m, x),
        lambda m, x: attribution.gradcam(m, x, target=7, layer="0_conv"),
    ],
    ids=["saliency", "ig", "gradcam", "gradcam_layer"],
)
def test_attribution_is_unit_28x28_and_leaves_parameters_alone(make, explain):
    model = make().train()
    params = list(model.parameters())
    params[0].requires_grad_(False)  # a caller's frozen layer stays frozen
    params[1].grad = torch.ones_like(params[1])  # and an existing .grad stays as it was
    before = grad_state(model)
    attr = explain(model, digit_input())
    assert attr.shape == (28, 28)
    assert np.isfinite(attr).all() and attr.min() >= 0 and attr.max() <= 1
    assert attr.max() == pytest.approx(1.0)
    after = grad_state(model)
    for (rg0, g0), (rg1, g1) in zip(before, after, strict=True):
        assert rg0 == rg1
        assert (g0 is None and g1 is None) or torch.equal(g0, g1)
    assert model.training


def test_unknown_saliency_method_names_the_known_ones():
    with pytest.raises(LabError, match="integrated_gradients"):
        attribution.saliency(small_net(), digit_input(), method="magic")


# --- robustness probe --------------------------------------------------------------------------


def bar_image() -> np.ndarray:
    img = np.zeros((28, 28), np.float32)
    img[13:15, 6:22] = 1.0  # horizontal bar through the center
    return img


def test_perturb_identity_and_shapes():
    img = preprocessing.preprocess(ellipse_canvas()).image
    np.testing.assert_array_equal(robustness.perturb(img), img)
    for kw in [dict(rotate_deg=30), dict(shift_x=3, shift_y=-2), dict(thickness=1.5), dict(thickness=-0.5)]:
        out = robustness.perturb(img, **kw)
        assert out.shape == (28, 28) and out.min() >= 0 and out.max() <= 1


def test_perturb_directions():
    img = bar_image()
    cy, cx = preprocessing._center_of_mass(img)
    sy, sx = preprocessing._center_of_mass(robustness.perturb(img, shift_x=3, shift_y=2))
    assert sx - cx == pytest.approx(3, abs=0.05) and sy - cy == pytest.approx(2, abs=0.05)
    h, w = bbox_side(robustness.perturb(img, rotate_deg=90), thr=0.5)
    assert h >= 14 and w <= 3  # the bar stands up
    assert robustness.perturb(img, thickness=1).sum() > img.sum() > robustness.perturb(img, thickness=-0.5).sum()
    assert robustness.perturb(img, thickness=2).sum() > robustness.perturb(img, thickness=1).sum()


def test_sweep_returns_probabilities_along_the_parameter():
    model = small_net()
    img = preprocessing.preprocess(ellipse_canvas()).image
    sw = robustness.sweep(model, img, "rotate_deg")
    assert sw.values[0] == -45 and sw.values[-1] == 45
    assert sw.probs.shape == (len(sw.values), 10)
    np.testing.assert_allclose(sw.probs.sum(1), 1, atol=1e-5)
    mid = int(np.flatnonzero(sw.values == 0)[0])
    np.testing.assert_allclose(sw.probs[mid], probes.predict(model, img).probs, atol=1e-6)
    assert robustness.sweep(model, img, "thickness", [-1, 0, 1]).probs.shape == (3, 10)
    with pytest.raises(LabError, match="rotate_deg"):
        robustness.sweep(model, img, "zoom")


# --- test-set helpers --------------------------------------------------------------------------


def test_test_image_and_find_misclassified():
    g = torch.Generator().manual_seed(0)
    x_u8 = torch.randint(0, 256, (70, 28, 28), dtype=torch.uint8, generator=g)
    y = torch.randint(0, 10, (70,), generator=g)
    img = robustness.test_image(x_u8, 5)
    assert img.shape == (28, 28) and img.dtype == np.float32
    np.testing.assert_allclose(img, x_u8[5].numpy() / 255.0, atol=1e-7)
    model = small_net().train()
    preds = np.stack([probes.predict(model, robustness.test_image(x_u8, i)).top for i in range(70)])
    wrong = np.flatnonzero(preds != y.numpy())
    np.testing.assert_array_equal(robustness.find_misclassified(model, x_u8, y, limit=1000, batch=16), wrong)
    np.testing.assert_array_equal(robustness.find_misclassified(model, x_u8, y, limit=5, batch=16), wrong[:5])


# --- plots -------------------------------------------------------------------------------------


def test_probe_figures():
    model = branchy_net()
    analysis = probes.analyze(model, ellipse_canvas())
    probs, img = analysis.prediction.probs, analysis.pre.image

    fig = probe.prob_bars(probs)
    assert isinstance(fig, go.Figure) and len(fig.data) == 1
    colors = list(fig.data[0].marker.color)
    assert colors[analysis.prediction.top] == probe.ACCENT and colors.count(probe.ACCENT) == 1

    fig = probe.image_heatmap(img)
    assert len(fig.data) == 1 and fig.layout.yaxis.autorange == "reversed"
    assert fig.layout.yaxis.scaleanchor == "x"

    fig = probe.saliency_overlay(img, attribution.gradcam(model, analysis.pre.tensor))
    assert len(fig.data) == 2 and fig.data[1].opacity == pytest.approx(0.6)

    sw = robustness.sweep(model, img, "shift_x")
    fig = probe.sweep_chart(sw.values, sw.probs, sw.param)
    assert len(fig.data) == 10 and "shift" in fig.layout.xaxis.title.text

    fig = probe.compare_bars(probs, probs[::-1], "A", "B")
    assert len(fig.data) == 2 and [t.name for t in fig.data] == ["A", "B"]
    for f in (fig,):
        f.to_json()  # serializable as Streamlit will send it
