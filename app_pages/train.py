"""Train page: choose a preset or a custom architecture, set hyperparameters, launch a background run,
watch its curves live, pause / resume / stop it and tweak it while it trains.

Thin: widgets → cnnlab.trainform / the lab (cnnlab.lab) → render. This file holds the left column (the
form, the LR range test, Launch); the right column follows the shown run (app_pages/train_follow.py: status,
progress, buttons, curves, layer health, live tweaks, each looked at only as often as a person needs) above
the saved runs (app_pages/train_saved.py).
"""

import streamlit as st

from app_pages import train_follow, train_saved
from app_pages.train_follow import K  # the page's widget-key namespace
from cnnlab import data, datacheck
from cnnlab import trainform as tf
from cnnlab import ui
from cnnlab.errors import ConfigError, DataMissingError, LabError, SpecError
from cnnlab.fields import OPTIMIZERS, SCHEDULERS
from cnnlab.plots.curves import augmentation_preview
from cnnlab.plots.lrfind import lr_find_figure
from cnnlab.textsafe import md_text

lab = ui.get_lab()


def _apply_preset() -> None:
    """Preset changed: reset the form and the layer text to the preset's recipe and layers."""
    preset = st.session_state[K + "preset"]
    for f, v in tf.form_defaults(preset).items():
        st.session_state[K + f] = v
    st.session_state[K + "spec_text"] = tf.preset_spec_text(preset)


# Widget keys vanish when their widget is not drawn (other page, hidden option): refill from the preset.
st.session_state.setdefault(K + "preset", "fast")
_defaults = tf.form_defaults(st.session_state[K + "preset"])
for _f, _v in _defaults.items():
    st.session_state.setdefault(K + _f, _v)
st.session_state.setdefault(K + "spec_text", tf.preset_spec_text(st.session_state[K + "preset"]))

st.title("Train")
setup, watch_col = st.columns([2, 3], gap="large")

# ----------------------------------------------------------------------------- LR finder
def _use_lr(lr: float) -> None:
    st.session_state[K + "lr"] = lr
    st.session_state[K + "lrf_rerun"] = True  # the fragment then reruns the page so the form shows it


def _start_finder(preset: str, custom: bool, text: str, values: dict) -> None:
    try:
        label, plan = tf.plan_for_launch(preset, custom, text, values)
        steps = int(st.session_state.get(K + "lrf_steps", 200))
        st.session_state[K + "lrf_job"] = ui.get_lr_finder().start(plan, label=label, steps=steps)
        st.session_state[K + "lrf_rerun"] = True  # the page reruns so the section starts polling
    except ConfigError as exc:
        st.session_state[K + "lrf_flash"] = tf.field_message(exc)
    except LabError as exc:
        st.session_state[K + "lrf_flash"] = str(exc)


def lr_finder_section(preset: str, custom: bool, text: str, values: dict, invalid: bool) -> None:
    """LR range test on a copy of the form's architecture and recipe; "Use this LR" fills the form."""
    finder = ui.get_lr_finder()
    job = finder.get(st.session_state.get(K + "lrf_job"))
    polling = job is not None and not job.done  # poll only while a test runs

    def body() -> None:
        if st.session_state.pop(K + "lrf_rerun", False) or (
                polling and job.done and st.session_state.get(K + "lrf_seen") != job.id):
            st.session_state[K + "lrf_seen"] = job.id if job is not None else None
            st.rerun(scope="app")  # show the new LR in the form / stop polling
        with st.expander("Find a learning rate (LR range test)", expanded=job is not None):
            st.caption(tf.LR_FINDER_HELP)
            b0, b1, b2 = st.columns(3)
            b0.number_input("Steps", key=K + "lrf_steps", min_value=20, max_value=2000, value=200, step=20,
                            help="Fewer steps for a heavy net (e.g. seed000 at 224x224: seconds per step on a CPU).")
            b1.button("Run LR range test", key=K + "lrf_start", disabled=invalid or polling,
                      on_click=_start_finder, args=(preset, custom, text, values))
            if polling:
                b2.button("Cancel", key=K + "lrf_cancel", on_click=finder.cancel, args=(job.id,))
            if K + "lrf_flash" in st.session_state:
                st.error(st.session_state.pop(K + "lrf_flash"))
            if job is None:
                return
            frac, line = tf.finder_progress(job)
            st.progress(frac, text=line)
            res = job.result
            if job.status == "failed":
                st.error(f"The range test failed: {job.message}")
            if res is None or not res.lrs:
                return
            st.plotly_chart(lr_find_figure(res.lrs, res.losses, res.smoothed, res.suggestion, res.min_lr,
                                           res.recipe_lr), key=K + "lrf_chart", config={"displaylogo": False})
            if res.suggestion is None:
                st.warning("No suggestion: too few points before the loss exploded.")
                return
            st.success(tf.finder_summary(res))
            use = tf.round_lr(res.suggestion)
            st.button(f"Use this LR ({use:g})", key=K + "lrf_use", type="primary", on_click=_use_lr, args=(use,))

    st.fragment(body, run_every=1.0 if polling else None)()


# ----------------------------------------------------------------------------- setup
with setup:
    st.subheader("1 · Architecture")
    preset = st.selectbox("Preset", tf.preset_choices(), key=K + "preset", on_change=_apply_preset,
                          help="Defaults of every hyperparameter below come from the chosen preset.")
    st.markdown(tf.preset_caption(preset))
    custom = st.toggle("Custom layers (edit the architecture)", key=K + "custom")
    if custom:
        text = st.text_area("Layers", key=K + "spec_text", height=260,
                            help="One layer per line, e.g. `conv out=16 k=3 pad=1`, or a JSON list.")
        st.caption("The summary updates on Ctrl+Enter or a click outside the box; errors name the box's line. "
                   + tf.limits_caption())
        checked = tf.check_spec_text(text)
        if checked.error:
            st.error(f"Architecture does not fit: {md_text(checked.error)}")
        else:
            st.caption(f"{checked.total_params:,} parameters")
            st.dataframe(checked.table, hide_index=True, height=240)
    else:
        text = ""
        _, table, total = tf.preset_spec(preset)
        with st.expander(f"Layer summary · {total:,} parameters"):
            st.dataframe(table, hide_index=True)

    st.subheader("2 · Hyperparameters")
    # two columns, not three: in a 1024 px window a third of this column cut "onecycle" and "channels_last"
    c1, c2 = st.columns(2)
    c1.selectbox("Optimizer", OPTIMIZERS, key=K + "optimizer")
    c2.number_input("Learning rate", key=K + "lr", format="%g", step=1e-4)
    c1.number_input("Momentum", key=K + "momentum", format="%g", step=0.01,
                    help="SGD momentum; beta1 for Adam/AdamW.")
    c2.number_input("Weight decay", key=K + "weight_decay", format="%g", step=1e-4)
    c1.selectbox("Scheduler", SCHEDULERS, key=K + "scheduler")
    sched = st.session_state[K + "scheduler"]
    if sched == "step":
        c2.number_input("Step size (epochs)", key=K + "step_size", step=1)
        c1.number_input("Gamma", key=K + "gamma", format="%g", step=0.05)
    elif sched == "onecycle":
        c2.number_input("Warm-up fraction", key=K + "pct_start", format="%g", step=0.05)
    b1, b2 = st.columns(2)  # a fresh row: the scheduler's own fields vary in number
    b1.number_input("Batch size", key=K + "batch_size", step=1)
    b2.number_input("Epochs", key=K + "epochs", step=1)
    b1.number_input("Label smoothing", key=K + "label_smoothing", format="%g", step=0.05)
    b2.number_input("Seed", key=K + "seed", step=1)
    b1.selectbox("Device", list(tf.DEVICES), key=K + "device")
    b1.number_input("Test-time shift (px)", key=K + "tta_shift", step=1,
                    help="0 = plain test evaluation. N: each test image is predicted by the mean softmax over "
                         "it and its copies shifted N px up, down, left and right (5 passes; validation stays plain).")
    b2.checkbox("Nesterov", key=K + "nesterov")
    b2.checkbox("channels_last", key=K + "channels_last", help="Roughly doubles CPU speed of small conv nets.")

    st.subheader("3 · Data")
    d1, d2 = st.columns(2)
    d1.number_input("Training subset (0 = all)", key=K + "subset", step=500)
    d2.number_input("Validation images", key=K + "val_size", step=500)
    st.selectbox("Validate on", list(tf.VAL_SOURCE_LABELS), key=K + "val_source",
                 format_func=tf.VAL_SOURCE_LABELS.get,
                 help="The seeds trained on all 60k images and reported the test set as validation; the lab "
                      "holds validation images out of the training set by default.")
    d1, d2 = st.columns(2)
    d1.checkbox("Augmentation", key=K + "augment")
    d2.number_input("Augmentation strength", key=K + "aug_strength", format="%g", step=0.1,
                    help="0 = none, 1 = the kind's full strength (seed 001: ±15°, 1 in 10 zoomed 28/22).")
    kind = st.selectbox("Augmentation kind", list(data.AUG_LABELS), key=K + "aug_kind")  # short codes fit
    st.caption(data.AUG_LABELS[kind])
    if st.session_state[K + "augment"]:
        with st.expander("Augmentation preview", expanded=False):
            try:
                imgs = tf.augmented_examples(data.load_mnist(), st.session_state[K + "aug_strength"] or 0,
                                             kind=st.session_state[K + "aug_kind"])
                st.plotly_chart(augmentation_preview(imgs, cols=8, title="top: original · bottom: augmented"),
                                config={"displayModeBar": False})
            except DataMissingError as exc:
                st.warning(str(exc))
            except (ValueError, TypeError):
                st.caption("Set a valid strength to see the preview.")

    values = {f: st.session_state.get(K + f, _defaults[f]) for f in tf.FORM_FIELDS}
    cfg, cfg_err = tf.try_build_config(values)
    if cfg_err:
        st.error(tf.field_message(cfg_err))

    lr_finder_section(preset, custom, text, values, cfg_err is not None or (custom and checked.error is not None))

    st.subheader("4 · Launch")
    launched = st.session_state.pop(K + "launched", None)
    if launched:
        st.session_state[K + "name"] = ""  # a launched run took the name; the next one needs its own
        st.toast(f"Launched {launched}")
    name = st.text_input("Run name (optional)", key=K + "name", placeholder="e.g. fast, lr 0.1")
    data_ok = datacheck.check().ready
    if st.button("Launch", key=K + "launch", type="primary", disabled=not data_ok,
                 help=None if data_ok else "MNIST is not there yet: see the panel at the top of the page."):
        if cfg_err or (custom and checked.error):
            st.error("Not launched: fix the value marked above first.")
        else:
            try:
                rid = lab.launch(preset, custom, text, values, name=name)
            except ConfigError as exc:
                st.error(tf.field_message(exc))
            except (SpecError, LabError) as exc:
                ui.show_error(exc)
            else:
                st.session_state[K + "run"] = rid
                st.session_state[K + "launched"] = rid
                st.query_params["run"] = rid
                st.rerun()  # clears the name box (it cannot change after it was drawn in this run)


with watch_col:
    train_follow.follow()
    train_saved.saved_panel()
