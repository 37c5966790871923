"""Draw page: draw a digit (or pick a test image), see the 28x28 input, the prediction and why."""

from __future__ import annotations

import random
import time

import numpy as np
import streamlit as st

from cnnlab.data import load_mnist
from cnnlab.errors import LabError
from cnnlab.inference import attribution, probes, robustness
from cnnlab.modelsource import NO_RUNS_HINT, LoadedModel, ModelRef, ModelSource, RunChoice, default_choice
from cnnlab.plots import probe, why
from cnnlab.settings import limit_threads
from cnnlab.textsafe import md_text
from cnnlab.ui import get_lab, pick_one

K = "draw_"  # widget-key namespace of this page
VIEWS = ["Inside the model", "Compare two models", "Robustness", "Across epochs", "Test-set map"]
SALIENCY = {"Saliency": "saliency", "Grad-CAM": "gradcam", "Integrated gradients": "integrated_gradients"}
SWEEP_LABELS = {"rotate_deg": "Rotation", "shift_x": "Shift right", "shift_y": "Shift down",
                "thickness": "Stroke thickness"}
MAX_MAPS = 32  # feature maps drawn per layer (probe.feature_map_mosaic's default)
CANVAS_BOX_W = 300  # px: the 280 px canvas plus its border
EMPTY_PROMPT = "Draw a digit in the black box (white ink, like MNIST) to see what the model predicts."


WEIGHTS = {"best": "best epoch", "last": "last epoch", "live": "live (training now)"}


def _pick(runs: list[RunChoice], label: str, key: str, default: RunChoice) -> ModelRef:
    """A run picker (name · preset · accuracy) and, beside it, which of its weights: best / last / live."""
    by_id = {c.run_id: c for c in runs}
    c1, c2 = st.columns([3, 2])
    with c1:  # labels carry accuracies that grow while a run trains: the choice follows the id
        rid = pick_one(label, list(by_id), key, lambda i: by_id[i].label, default=default.run_id)
    run = by_id[rid]
    which = list(run.refs)
    which.sort(key=lambda w: ("best", "live", "last").index(w))
    with c2:
        w = pick_one("Weights", which, key + "_weights", WEIGHTS.__getitem__, default=which[0])
    return run.refs[w]


def _load(src: ModelSource, ref: ModelRef, refresh: bool = False) -> LoadedModel | None:
    try:
        return src.load(ref, refresh=refresh)
    except LabError as exc:
        st.error(f"Cannot load {md_text(ref.label or ref.key)}: {md_text(exc)}")
        return None


def _set_index(idx: int) -> None:
    st.session_state[K + "test_idx"] = int(idx)


def _random_index(n: int) -> None:
    _set_index(random.randrange(n))


def _random_wrong(src: ModelSource, loaded: LoadedModel) -> None:
    mnist = load_mnist()
    wrong = src.misclassified(loaded, mnist.test_x, mnist.test_y)
    if len(wrong):
        _set_index(int(random.choice(list(wrong))))
    else:
        st.session_state[K + "no_wrong"] = True


def _clear_canvas() -> None:
    # The canvas has no Python-side clear: a new key mounts a fresh, empty one.
    st.session_state[K + "canvas_n"] = st.session_state.get(K + "canvas_n", 0) + 1


def _canvas_input(loaded: LoadedModel) -> probes.Analysis:
    from streamlit_drawable_canvas import st_canvas

    st.session_state.setdefault(K + "canvas_n", 0)
    brush = st.slider("Brush width", 8, 40, 20, key=K + "brush")
    result = st_canvas(
        drawing_mode="freedraw", stroke_width=brush, stroke_color="#FFFFFF", background_color="#000000",
        width=280, height=280, update_streamlit=True, return_image_data=True,
        key=f"{K}canvas_{st.session_state[K + 'canvas_n']}",
    )  # fmt: skip
    strokes = len((result.json_data or {}).get("objects") or [])
    st.caption(f"{strokes} stroke{'' if strokes == 1 else 's'} · undo/reset in the canvas toolbar")
    st.button("Clear", key=K + "clear", on_click=_clear_canvas,
              help="Start over (the canvas's own toolbar has undo and reset too)")
    data = result.image_data
    if data is None:
        return probes.analyze(loaded.model, np.zeros((280, 280), np.float32))
    return probes.analyze(loaded.model, data)


def _test_input(src: ModelSource, loaded: LoadedModel) -> probes.Analysis | None:
    try:
        mnist = load_mnist()
    except LabError as exc:
        st.error(md_text(exc))
        return None
    n = len(mnist.test_x)
    st.session_state.setdefault(K + "test_idx", 0)
    idx = st.number_input("Test image index", 0, n - 1, step=1, key=K + "test_idx")
    # one under the other: side by side in the 300 px box cut "Random misclassified" short
    st.button("Random", key=K + "random", on_click=_random_index, args=(n,))
    st.button("Random misclassified", key=K + "random_wrong", on_click=_random_wrong, args=(src, loaded),
              help="A test image this model gets wrong")
    if st.session_state.pop(K + "no_wrong", False):
        st.success("This model gets every test image right.")
    st.caption(f"Test image #{int(idx)} — true label **{int(mnist.test_y[int(idx)])}**")
    return probes.analyze_image(loaded.model, robustness.test_image(mnist.test_x, int(idx)))


def _layer_maps(a: probes.Analysis, key: str) -> None:
    """Layer selector + the selected conv layer's feature maps."""
    if not a.layers:
        st.info("This model has no convolution layer.")
        return
    names = [f"{i + 1}. {lm.name} — {lm.maps.shape[0]}×{lm.maps.shape[1]}×{lm.maps.shape[2]}"
             for i, lm in enumerate(a.layers)]
    i = pick_one("Conv layer", list(range(len(names))), key, names.__getitem__)  # labels follow the model
    lm = a.layers[i]
    st.plotly_chart(probe.feature_map_mosaic(lm.maps, f"{lm.name} ({lm.stage})"), key=key + "_fig")
    if lm.maps.shape[0] > MAX_MAPS:
        st.caption(f"Showing {MAX_MAPS} of {lm.maps.shape[0]} maps (the first {MAX_MAPS} channels).")


def _inside(loaded: LoadedModel, a: probes.Analysis) -> None:
    st.markdown("**Feature maps** of each conv layer for this input (one color scale per layer)")
    _layer_maps(a, K + "layer")
    c1, c2 = st.columns(2)
    with c1:
        try:
            # The weights are fixed: build it once per model (one tiled heatmap, as Streamlit
            # re-serializes it on every rerun).
            if "filters_fig" not in loaded.memo:
                loaded.memo["filters_fig"] = probe.filters_mosaic(probes.first_layer_filters(loaded.model))
            st.plotly_chart(loaded.memo["filters_fig"], key=K + "filters")
        except LabError as exc:
            st.info(md_text(exc))
    with c2:
        method = st.radio("Attribution", list(SALIENCY), horizontal=True, key=K + "attr")
        target = st.selectbox("Explain class", ["predicted", *range(10)], key=K + "target")
        t = a.prediction.top if target == "predicted" else int(target)
        try:
            fn = SALIENCY[method]
            attr = (attribution.gradcam(loaded.model, a.pre.tensor, t) if fn == "gradcam"
                    else attribution.saliency(loaded.model, a.pre.tensor, t, method=fn))
            st.plotly_chart(probe.saliency_overlay(a.pre.image, attr, title=f"{method} for class {t}"),
                            key=K + "saliency")
        except LabError as exc:
            st.info(md_text(exc))


def _compare(src: ModelSource, runs: list[RunChoice], loaded: LoadedModel, a: probes.Analysis) -> None:
    default = next((c for c in runs if c.run_id != loaded.ref.run_id), runs[0])
    other = _load(src, _pick(runs, "Second model", K + "model_b", default))
    if other is None:
        return
    b = probes.analyze_image(other.model, a.pre.image)
    st.plotly_chart(probe.compare_bars(a.prediction.probs, b.prediction.probs, "A: " + loaded.ref.label,
                                       "B: " + other.ref.label), key=K + "cmp_bars")
    for col, tag, an in zip(st.columns(2), ("A", "B"), (a, b)):
        with col:
            st.markdown(f"**Model {tag}** predicts **{an.prediction.top}** ({an.prediction.confidence:.0%})")
            _layer_maps(an, f"{K}cmp_layer_{tag}")


def _robustness(loaded: LoadedModel, a: probes.Analysis) -> None:
    c = st.columns(4)
    rot = c[0].slider("Rotate (°, counter-clockwise)", -60, 60, 0, 5, key=K + "rot")
    dx = c[1].slider("Shift right (px)", -8, 8, 0, key=K + "dx")
    dy = c[2].slider("Shift down (px)", -8, 8, 0, key=K + "dy")
    thick = c[3].slider("Thicken (+) / thin (−)", -2.0, 2.0, 0.0, 0.25, key=K + "thick")
    fixed = {"rotate_deg": rot, "shift_x": dx, "shift_y": dy, "thickness": thick}
    img = robustness.perturb(a.pre.image, **fixed)
    p = probes.predict(loaded.model, img)
    c1, c2 = st.columns([1, 2])
    c1.plotly_chart(probe.image_heatmap(img, "perturbed input"), key=K + "pert_img")
    c2.plotly_chart(probe.prob_bars(p.probs, p.top, f"now: {p.top} ({p.confidence:.0%}), "
                                    f"was {a.prediction.top} ({a.prediction.confidence:.0%})"),
                    key=K + "pert_bars")
    param = st.radio("Sweep", list(robustness.SWEEP_DEFAULTS), horizontal=True, key=K + "sweep",
                     format_func=lambda p: SWEEP_LABELS.get(p, p),
                     help="Vary one transformation, keeping the others at the slider values")
    sw = robustness.sweep(loaded.model, a.pre.image, param, **{k: v for k, v in fixed.items() if k != param})
    st.plotly_chart(probe.sweep_chart(sw.values, sw.probs, param), key=K + "sweep_fig")


def _across_epochs(src: ModelSource, loaded: LoadedModel, a: probes.Analysis) -> None:
    """This input under the weights saved after every epoch of the model's run (cnnlab.epochs)."""
    run_id = loaded.ref.run_id
    eps = get_lab().saved_epochs(run_id)
    if not eps:
        st.info("This run has no per-epoch weights yet (they are saved at the end of each epoch).")
        return
    with st.spinner(f"Loading the weights of {len(eps)} epochs (once)…"):
        ep = get_lab().epoch_probs(run_id, a.pre.tensor)
    top = ep.top
    st.markdown("**Top class after each epoch:** " + ", ".join(f"{e}: **{t}**" for e, t in zip(ep.epochs, top)))
    stable = ep.first_stable()
    said = (f"Reads it as **{top[-1]}** from epoch {stable} on" if stable != ep.epochs[0]
            else f"Reads it as **{top[-1]}** at every saved epoch")
    changes = ep.changes()
    st.caption(said + (f"; changed its mind {changes} time{'s' * (changes != 1)}." if changes else "."))
    st.plotly_chart(why.epoch_heatmap(ep.epochs, ep.probs), key=K + "epochs_fig")


def _test_set_map(loaded: LoadedModel, a: probes.Analysis) -> None:
    """The test set as a map from this model's penultimate features, the input as a star (cnnlab.testmap)."""
    from cnnlab.ui import test_map_view

    p = a.prediction
    test_map_view(K + "map", (loaded.ref.key, loaded.stamp), loaded.model, star_input=a.pre.image,
                  star_label=f"{p.top} ({p.confidence:.0%})")


@st.fragment
def workbench() -> None:
    """The whole page body: a stroke or a widget change reruns only this."""
    src = get_lab().models  # one model cache per lab (so per run store)
    try:
        runs = src.run_choices()
    except LabError as exc:
        st.error(md_text(exc))
        return
    if not runs:
        st.info(NO_RUNS_HINT)
        return
    top = st.columns([3, 1])
    with top[0]:  # a ?run= link picks its run; else the best finished run
        ref = _pick(runs, "Model", K + "model", default_choice(runs, st.query_params.get("run")))
    refresh = False
    if ref.which == "live":
        refresh = top[1].button("Refresh weights", key=K + "refresh", help="Copy the job's current weights")
    loaded = _load(src, ref, refresh)
    if loaded is None:
        return
    if ref.which == "live":
        top[1].caption(f"weights copied {loaded.age_s:.0f} s ago")
    with limit_threads(1):  # one image: more threads only contend with training jobs
        body(src, runs, loaded)


def body(src: ModelSource, runs: list[RunChoice], loaded: LoadedModel) -> None:
    t0 = time.perf_counter()
    source = st.radio("Input", ["Draw", "Test-set image"], horizontal=True, key=K + "source")
    # A wrapping row of fixed-width boxes, not st.columns: the 280 px canvas and its toolbar stay whole
    # at any width (a third of a 1024 px page's main area is ~170 px); narrow pages stack the boxes.
    row = st.container(horizontal=True, gap="medium")
    with row.container(width=CANVAS_BOX_W):
        a = _canvas_input(loaded) if source == "Draw" else _test_input(src, loaded)
    if a is None:
        return
    with row.container(width=240):
        st.plotly_chart(probe.image_heatmap(a.pre.image, "what the model sees (28×28)"), key=K + "input28")
    with row.container(width=320):
        if a.prediction is None:
            st.info(EMPTY_PROMPT)
            return
        p = a.prediction
        st.metric("Prediction", str(p.top), f"{p.confidence:.1%} confident", delta_color="off")
        st.plotly_chart(probe.prob_bars(p.probs, p.top, "class probabilities"), key=K + "probs")
        if a.pre.saturated:
            st.warning("Most of the canvas is ink: this is not a digit the model was trained on.")
    view = st.radio("View", VIEWS, horizontal=True, key=K + "view", label_visibility="collapsed")
    try:
        if view == VIEWS[0]:
            _inside(loaded, a)
        elif view == VIEWS[1]:
            _compare(src, runs, loaded, a)
        elif view == VIEWS[2]:
            _robustness(loaded, a)
        elif view == VIEWS[3]:
            _across_epochs(src, loaded, a)
        else:
            _test_set_map(loaded, a)
    except LabError as exc:
        st.error(md_text(exc))
    st.caption(f"server time for this update: {(time.perf_counter() - t0) * 1e3:.0f} ms "
               f"(forward pass with feature maps {a.timing_ms['forward']:.1f} ms)")


st.title("Draw")
st.caption("Draw a digit and watch what a trained network sees, predicts, and why.")
workbench()
