"""Train page: choose a preset or a custom architecture, set hyperparameters, launch a background run,
watch its curves live, pause / resume / stop it and tweak it while it trains.

Thin: widgets → cnnlab.trainform / the lab (cnnlab.lab) → render. Three fragments follow the shown run:
its status, progress and buttons every second; the run list and the panel of curves, layer health and live
tweaks every few seconds. Curves read only new records (a per-session curve cache).
"""

import streamlit as st

from cnnlab import data, datacheck, health
from cnnlab import trainform as tf
from cnnlab import ui
from cnnlab.errors import ConfigError, DataMissingError, LabError, SpecError
from cnnlab.fields import OPTIMIZERS, SCHEDULERS
from cnnlab.jobs import MAX_CONCURRENT
from cnnlab.plots import why
from cnnlab.plots.curves import augmentation_preview
from cnnlab.textsafe import md_text

from cnnlab.plots.lrfind import lr_find_figure

K = "train_"  # widget-key namespace of this page
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


# ----------------------------------------------------------------------------- watch
def _select_run() -> None:
    st.session_state[K + "run"] = st.session_state[K + "show"]


def _rename(rid: str) -> None:
    new = st.session_state[K + f"rename_{rid}"]
    if not (new or "").strip():  # never let an empty box (e.g. a widget's default) wipe a name
        st.session_state[K + "flash"] = "A run needs a name: its name was kept."
        return
    try:
        lab.rename(rid, new)  # the job's view and the store both take it: every page and tab shows it
    except LabError as exc:
        st.session_state[K + "flash"] = str(exc)


def _set_max_jobs() -> None:
    try:
        lab.set_max_concurrent(int(st.session_state[K + "max_jobs"]))
    except LabError as exc:
        st.session_state[K + "flash"] = str(exc)


def _controls(v) -> None:
    """Pause / Resume / Stop (now, or after the epoch in progress) for the shown run."""
    b1, b2, b3 = st.columns(3)  # a third each: [1, 1, 1, 3] cut "Resume" short at 1024 px
    active = tf.is_active(v.status)
    try:
        if b1.button("Pause", key=K + "pause", disabled=v.status not in ("running", "queued")):
            lab.pause(v.id)
        if b2.button("Resume", key=K + "resume", disabled=v.status != "paused"):
            lab.unpause(v.id)
        if b3.button("Stop", key=K + "stop", disabled=not active,
                     help="Stop at the next step; the epoch in progress is lost (a resume trains it again)."):
            lab.stop(v.id)
        if st.button("Stop after this epoch", key=K + "stop_epoch", disabled=not active,
                     help="Finish, validate and save the epoch in progress, then stop: a resume loses nothing."):
            lab.stop(v.id, after_epoch=True)
    except LabError as exc:
        ui.show_error(exc)


def _live_panel(v) -> None:
    """Live-tweak form: each applied change is a `set` event, marked on the curves.

    The fields start at the job's current values (passed as the widgets' values: a value put into
    session state came back as 0 when the browser redrew the form), and a field's key carries the
    value it was drawn with, so a change applied here or in another tab redraws it with the new one.
    Apply sends only the fields the user changed.
    """
    live = v.live_values() or {}
    labels = {"lr": "Live learning rate", "momentum": "Live momentum", "weight_decay": "Live weight decay",
              "aug_strength": "Live augmentation strength", "epochs": "Live epochs"}
    keys = {f: K + f"live_{v.id}_{f}_{live.get(f)!r}" for f in labels if live.get(f) is not None}
    with st.form(K + "live_form", border=True):
        st.markdown("**Live tweak** — applies to the running job at its next step")
        cols = st.columns(max(1, len(keys)))
        for col, (f, key) in zip(cols, keys.items()):
            if f == "epochs":  # more extend the run, fewer end it after the epoch in progress
                col.number_input(labels[f], value=int(live[f]), key=key, min_value=1, step=1,
                                 help=tf.LIVE_EPOCHS_HELP)
                continue
            col.number_input(labels[f], value=float(live[f]), key=key, format="%g",
                             step=0.001 if f == "lr" else 0.01)
        applied = st.form_submit_button("Apply", disabled=not tf.is_active(v.status))
    err_key = K + f"live_error_{v.id}"
    wanted = {f: st.session_state.get(key) for f, key in keys.items()}
    try:  # form values reach session state only on Apply: invalid ones stay until a valid Apply
        changes = tf.live_changes(live, wanted)  # only what differs from what the form showed
        tf.check_live(changes)
    except ConfigError as exc:
        st.session_state[err_key] = tf.field_message(exc)
    else:
        st.session_state.pop(err_key, None)
        if applied and changes:
            try:
                lab.set_live(v.id, **changes)
                st.toast("Applied: " + ", ".join(f"{k}={x:g}" for k, x in changes.items()))
            except LabError as exc:
                ui.show_error(exc)
    if err_key in st.session_state:  # stays until the value is corrected, not just for one poll
        st.error(st.session_state[err_key])


def _current() -> tuple[list, dict, str | None]:
    """(jobs, views by id, the run this session shows): a job of this process or a stored run, else None."""
    jobs = lab.jobs()
    rid = tf.choose_run([st.session_state.get(K + "run"), st.query_params.get("run")], jobs,
                        lab.is_stored_run)
    by_id = {j.id: j for j in jobs}
    if rid is not None and rid not in by_id:  # a run only the store knows: its curves from disk
        stored = _stored(rid)
        if stored is None:
            rid = tf.pick_run([], jobs)
        else:
            by_id[rid] = stored
    return jobs, by_id, rid


# Following a run is split by cost: the status, progress line and buttons poll every second; the run list
# and the panel of curves, layer health and live tweaks every few seconds (a redraw of those cost the
# browser a visible share of the CPU the run trains on: benchmarks/bench_page_open.py). A new run shown
# reruns the whole page so that every part follows it at once.
@st.fragment(run_every=tf.REDRAW_EVERY_S)
def run_list() -> None:
    """The runs of this process: which one to show, how many train at once, the shown run's name."""
    st.subheader("Runs")
    jobs, by_id, rid = _current()
    if rid is None:
        st.info("No runs yet — choose a preset, then press **Launch**. Runs keep training while you "
                "switch pages, and a reload finds them again.")
        return
    st.session_state[K + "run"] = rid
    if st.query_params.get("run") != rid:
        st.query_params["run"] = rid
    names = {i: v.name for i, v in by_id.items()}
    st.session_state[K + "show"] = rid
    st.selectbox("Show run", list(by_id), key=K + "show", on_change=_select_run,
                 format_func=lambda i: f"{names[i]} · {by_id[i].preset}")  # stable label: status is below
    if len(jobs) > 1:
        st.dataframe(tf.job_rows(jobs, names), hide_index=True, height=min(38 * (len(jobs) + 1), 220),
                     column_config=ui.run_table_columns([j.id for j in jobs]))
        st.session_state[K + "max_jobs"] = lab.max_concurrent  # process-wide: another tab may change it
        st.number_input("Jobs at once", min_value=1, max_value=MAX_CONCURRENT, step=1, key=K + "max_jobs",
                        on_change=_set_max_jobs, help="More jobs wait in a queue. A paused job keeps its slot; "
                                                      "raise this to start a queued job now.")
    if st.session_state.get(K + f"rename_drawn_{rid}") != names[rid]:  # renamed here, on another page or tab
        st.session_state.pop(K + f"rename_{rid}", None)  # so the box is drawn anew with the new name
        st.session_state[K + f"rename_drawn_{rid}"] = names[rid]
    st.text_input("Run name", value=names[rid], key=K + f"rename_{rid}", on_change=_rename, args=(rid,))
    shown, st.session_state[K + "shown"] = st.session_state.get(K + "shown"), rid
    if shown is not None and shown != rid and not st.session_state.get(K + "full_run"):
        st.rerun()  # another run chosen here (or the shown one gone): the status and panel follow it now


@st.fragment(run_every=1.0)
def run_status() -> None:
    """The shown run's status line, progress line and controls: every second."""
    _, by_id, rid = _current()
    if rid is None:
        return
    v = by_id[rid]
    seen, st.session_state[K + "seen_status"] = st.session_state.get(K + "seen_status"), (rid, v.status)
    if seen is not None and seen != (rid, v.status) and not st.session_state.get(K + "full_run"):
        st.rerun()  # paused, resumed, ended...: the curves and the live panel show it at once, not in 5 s
    if K + "flash" in st.session_state:
        st.warning(md_text(st.session_state.pop(K + "flash")))
    level, line = tf.status_line(v)
    getattr(st, level)(md_text(line))
    if v.status == "failed" and v.traceback:
        with st.expander("Traceback"):
            st.code(v.traceback)
    frac, ptext = tf.progress(v)
    st.progress(frac, text=ptext)
    _controls(v)


@st.fragment(run_every=tf.REDRAW_EVERY_S)
def run_panel() -> None:
    """The shown run's curves, layer health and live tweaks: every few seconds, and after each Apply."""
    jobs, by_id, rid = _current()
    if rid is None:
        return
    v = by_id[rid]
    # a stored run's curve cache lives until its files are rewritten (its records are read incrementally)
    source = "job" if rid in {j.id for j in jobs} else ("stored", v.generation)
    cache = st.session_state.get(K + "curves")
    if cache is None or cache.run_id != rid or st.session_state.get(K + "curves_src") != source:
        cache = st.session_state[K + "curves"] = tf.CurveCache.for_view(rid, v)
        st.session_state[K + "curves_src"] = source
    cache.update(v)
    st.plotly_chart(cache.figure(), key=K + "chart", config={"displaylogo": False})
    st.caption(f"{cache.n_points:,} steps recorded · at most {cache.max_points} points drawn per curve · "
               f"curves redrawn every {cache.redraw.every:g} s while it trains (status and progress: every second)")
    _health_panel(v, rid, source)
    if source == "job":
        _live_panel(v)
    else:
        st.caption("Saved run: use **Saved runs** below to resume or fork it.")


def _health_panel(v, rid: str, source: str) -> None:
    """Layer health of the shown run (cnnlab.health): problems in words, a layer x time heatmap."""
    cache = st.session_state.get(K + "health")
    if cache is None or cache.run_id != rid or st.session_state.get(K + "health_src") != source:
        cache = st.session_state[K + "health"] = health.HealthCache(rid)
        st.session_state[K + "health_src"] = source
    cache.update(v)
    for flag in health.flags(cache.recs):
        getattr(st, flag.level)(f"Layer health: {flag.text}")
    with st.expander("Layer health", expanded=bool(cache.recs)):
        if not cache.recs:
            st.caption("No layer statistics yet (sampled every 10–50 steps; runs from before this "
                       "feature have none).")
            return
        qs = list(health.QUANTITIES)
        q = st.selectbox("Quantity", qs, key=K + "health_q", format_func=lambda k: health.QUANTITIES[k][0])
        redraw = st.session_state.setdefault(K + "health_redraw", tf.Redraw())
        if redraw.due(len(cache.recs), (rid, q)) or K + "health_fig" not in st.session_state:
            ser = health.series(cache.recs, q)
            st.session_state[K + "health_fig"] = why.health_heatmap(ser.names, ser.steps, ser.values, ser.label, ser.log)
        st.plotly_chart(st.session_state[K + "health_fig"], key=K + "health_chart", config={"displaylogo": False})
        last = cache.recs[-1]
        st.caption(f"{len(cache.recs)} samples, one every {last.get('every', '?')} steps (last at step "
                   f"{last.get('step')}). Healthy: update/weight ratio ≈ 1e-3, few dead ReLUs, gradient "
                   "norms that neither explode nor vanish.")


def _stored(rid: str):
    """The session's cached StoredRunView of `rid`, re-read when its files change; None if unreadable."""
    try:
        key = lab.stored_key(rid)
    except LabError:
        return None
    cached = st.session_state.get(K + "stored")
    if cached is None or cached[0] != key:
        view = lab.stored_view(rid)
        if view is None:
            return None
        cached = st.session_state[K + "stored"] = (key, view)
    return cached[1]


def _show_saved(rid: str) -> None:
    st.session_state[K + "run"] = rid
    st.query_params["run"] = rid


def _resume_saved(rid: str) -> None:
    try:
        lab.resume(rid)
    except LabError as exc:
        st.session_state[K + "saved_flash"] = str(exc)
    else:
        _show_saved(rid)
        st.session_state[K + "saved_toast"] = f"Resumed {rid}"


def _fork_saved(rid: str) -> None:
    g = lambda f: st.session_state.get(K + f"fork_{rid}_{f}")  # noqa: E731
    try:
        new = lab.fork(rid, g("epoch"), g("lr"), g("epochs"), g("optimizer"), name=g("name"))
    except ConfigError as exc:  # shown inside the fork form, which stays open
        st.session_state[K + "fork_error"] = (rid, tf.field_message(exc))
    except LabError as exc:
        st.session_state[K + "fork_error"] = (rid, str(exc))
    else:
        st.session_state.pop(K + "fork_error", None)
        _show_saved(new)
        st.session_state[K + "saved_toast"] = f"Forked {rid} → {new}"


def saved_panel() -> None:
    """Runs in the store that this process is not training: resume, fork, or show their curves."""
    st.subheader("Saved runs")
    try:
        infos = lab.saved_runs()
    except (LabError, OSError) as exc:
        st.error(f"Cannot list the run store: {md_text(exc)}")
        return
    if K + "saved_flash" in st.session_state:
        st.error(md_text(st.session_state.pop(K + "saved_flash")))
    if K + "saved_toast" in st.session_state:
        st.toast(md_text(st.session_state.pop(K + "saved_toast")))
    if not infos:
        st.caption("No saved runs yet. Every run is saved as it trains and survives a restart of the app.")
        return
    shown = infos[: tf.SAVED_SHOWN]
    st.dataframe(tf.saved_rows(shown), hide_index=True, height=min(38 * (len(shown) + 1), 260),
                 column_config=ui.run_table_columns([r.id for r in shown]))
    if len(infos) > len(shown):
        st.caption(f"{len(infos) - len(shown)} older runs not shown here; the Compare page lists them all.")
    by_id = {r.id: r for r in shown}
    rid = ui.pick_one("Saved run", list(by_id), K + "saved", lambda i: tf.saved_label(by_id[i]),
                      default=shown[tf.default_saved(shown)].id)  # labels change with status and renames
    info = by_id[rid]
    level, line = tf.saved_status_line(info)
    getattr(st, level)(md_text(line))
    if info.status == "error":
        return  # a damaged folder: its error, nothing to press
    b1, b2 = st.columns([3, 2])  # [2, 1, 2] cut "Show curves" short at 1024 px
    b1.button("Resume from last epoch", key=K + "saved_resume", on_click=_resume_saved, args=(rid,),
              disabled=not tf.can_resume(info), type="primary",
              help="Continue in the same run folder from its last saved epoch (interrupted, stopped, "
                   "failed or diverged runs).")
    b2.button("Show curves", key=K + "saved_show", on_click=_show_saved, args=(rid,))
    try:
        fd = lab.fork_defaults(rid)
    except LabError as exc:
        st.caption(f"Cannot fork: {md_text(exc)}")
        return
    if not fd.epochs_available:
        st.caption("No saved epoch to fork from.")
        return
    err = st.session_state.get(K + "fork_error")
    err = err[1] if err and err[0] == rid else None
    with st.expander("Fork from a saved epoch", expanded=bool(err)):  # open while its input is refused
        if err:
            st.error(err)
        with st.form(K + "fork_form", border=False):
            f = lambda n: K + f"fork_{rid}_{n}"  # noqa: E731
            st.session_state.setdefault(f("epoch"), fd.epochs_available[-1])
            st.session_state.setdefault(f("lr"), fd.lr)
            st.session_state.setdefault(f("epochs"), fd.epochs)
            st.session_state.setdefault(f("optimizer"), fd.optimizer)
            c1, c2, c3, c4 = st.columns(4)
            c1.selectbox("From epoch", fd.epochs_available, key=f("epoch"))
            c2.number_input("Fork learning rate", key=f("lr"), format="%g", step=1e-4)
            c3.number_input("Fork epochs (last epoch)", key=f("epochs"), step=1,
                            help="Counted like the parent's: must be more than the fork epoch.")
            c4.selectbox("Fork optimizer", OPTIMIZERS, key=f("optimizer"))
            st.text_input("Fork name (optional)", key=f("name"))
            st.form_submit_button("Fork", on_click=_fork_saved, args=(rid,))


with watch_col:
    st.session_state[K + "full_run"] = True  # fragments tell a whole-page run from their own reruns
    run_list()
    run_status()
    run_panel()
    st.session_state[K + "full_run"] = False
    saved_panel()
