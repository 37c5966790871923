"""The Train page's right column: following the shown run (its status, progress, buttons, curves, layer health
and live tweaks) and the list of this process's runs. Imported by app_pages/train.py; not a page of its own.

Watching a run must not slow it down (issue 15): every look at the run is a Streamlit script run, and each one
cost the browser tens of ms of CPU for the whole page, taken from the cores the run trains on. So the page looks
by need, with fragments whose cadences live in cnnlab.trainform (`STATUS_EVERY_S`, `REDRAW_EVERY_S`,
`LIST_EVERY_S`, `IDLE_EVERY_S`):

- the status line and progress bar, every 3 s while the run is active (10 s when not); when the run's
  status, its live values or whether it has steps yet change, the whole page reruns, so buttons, curves
  and the live form follow at once;
- the curves and layer-health warnings, every 10 s while the run is active (at once after a rerun of the page);
  the layer-health heatmap only while its box is open (it opens by itself on a new problem);
- the run list, every 15 s (also while nothing trains: runs launched in another tab appear);
- the buttons and the live form poll nothing: they are redrawn when the page reruns, which the status line asks
  for whenever what they show changes.
"""

from __future__ import annotations

import streamlit as st

from cnnlab import health
from cnnlab import trainform as tf
from cnnlab import ui
from cnnlab.errors import ConfigError, LabError
from cnnlab.jobs import MAX_CONCURRENT
from cnnlab.plots import why
from cnnlab.textsafe import md_text

K = "train_"  # widget-key namespace of the Train page


def _lab():
    return ui.get_lab()  # per call: the tests replace the process-wide lab between them


def _select_run() -> None:
    st.session_state[K + "run"] = st.session_state[K + "show"]


def _rename(rid: str) -> None:
    new = st.session_state[K + f"rename_{rid}"]
    if not (new or "").strip():  # never let an empty box (e.g. a widget's default) wipe a name
        st.session_state[K + "flash"] = "A run needs a name: its name was kept."
        return
    try:
        _lab().rename(rid, new)  # the job's view and the store both take it: every page and tab shows it
    except LabError as exc:
        st.session_state[K + "flash"] = str(exc)


def _set_max_jobs() -> None:
    try:
        _lab().set_max_concurrent(int(st.session_state[K + "max_jobs"]))
    except LabError as exc:
        st.session_state[K + "flash"] = str(exc)


def stored(rid: str):
    """The session's cached StoredRunView of `rid`, re-read when its files change; None if unreadable."""
    lab = _lab()
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


def _current() -> tuple[list, dict, str | None]:
    """(jobs, views by id, the run this session shows): a job of this process or a stored run, else None."""
    lab = _lab()
    jobs = lab.jobs()
    rid = tf.choose_run([st.session_state.get(K + "run"), st.query_params.get("run")], jobs,
                        lab.is_stored_run)
    by_id = {j.id: j for j in jobs}
    if rid is not None and rid not in by_id:  # a run only the store knows: its curves from disk
        view = stored(rid)
        if view is None:
            rid = tf.pick_run([], jobs)
        else:
            by_id[rid] = view
    return jobs, by_id, rid


def _state(v, rid: str) -> tuple:
    """What, when it changes, the whole page must show at once: the run, its status, live values, first steps."""
    live = v.live_values() if hasattr(v, "live_values") else None
    return rid, v.status, tuple(sorted((live or {}).items())), bool(getattr(v, "step", 0))


def _run_list() -> None:
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
        st.session_state[K + "max_jobs"] = _lab().max_concurrent  # process-wide: another tab may change it
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


def _run_status() -> None:
    """The shown run's status line and progress bar."""
    _, by_id, rid = _current()
    if rid is None:
        return
    v = by_id[rid]
    seen, st.session_state[K + "seen_state"] = st.session_state.get(K + "seen_state"), _state(v, rid)
    if seen is not None and seen != st.session_state[K + "seen_state"] and not st.session_state.get(K + "full_run"):
        st.rerun()  # paused, resumed, ended, a live change, the first steps: every part of the page shows it now
    if K + "flash" in st.session_state:
        st.warning(md_text(st.session_state.pop(K + "flash")))
    level, line = tf.status_line(v)
    getattr(st, level)(md_text(line))
    if v.status == "failed" and v.traceback:
        with st.expander("Traceback"):
            st.code(v.traceback)
    frac, ptext = tf.progress(v)
    st.progress(frac, text=ptext)


def _controls(v) -> None:
    """Pause / Resume / Stop (now, or after the epoch in progress) for the shown run; a press reruns the page."""
    b1, b2, b3 = st.columns(3)  # a third each: [1, 1, 1, 3] cut "Resume" short at 1024 px
    active = tf.is_active(v.status)
    lab = _lab()
    pressed = [b1.button("Pause", key=K + "pause", disabled=v.status not in ("running", "queued")),
               b2.button("Resume", key=K + "resume", disabled=v.status != "paused"),
               b3.button("Stop", key=K + "stop", disabled=not active,
                         help="Stop at the next step; the epoch in progress is lost (a resume trains it again)."),
               st.button("Stop after this epoch", key=K + "stop_epoch", disabled=not active,
                         help="Finish, validate and save the epoch in progress, then stop: a resume loses nothing.")]
    if not any(pressed):
        return
    try:
        [lambda: lab.pause(v.id), lambda: lab.unpause(v.id), lambda: lab.stop(v.id),
         lambda: lab.stop(v.id, after_epoch=True)][pressed.index(True)]()
    except LabError as exc:
        ui.show_error(exc)
        return
    st.rerun()  # the status line, buttons and live form show what the press did, at once


def _run_panel() -> None:
    """The shown run's curves and layer health."""
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
               f"while it trains: curves redrawn every {cache.redraw.every:g} s, status and progress every "
               f"{tf.STATUS_EVERY_S:g} s")
    _health_panel(v, rid, source)


def _health_panel(v, rid: str, source: str) -> None:
    """Layer health of the shown run (cnnlab.health): problems in words, a layer x time heatmap."""
    cache = st.session_state.get(K + "health")
    if cache is None or cache.run_id != rid or st.session_state.get(K + "health_src") != source:
        cache = st.session_state[K + "health"] = health.HealthCache(rid)
        st.session_state[K + "health_src"] = source
    cache.update(v)
    flags = health.flags(cache.recs)
    for flag in flags:
        getattr(st, flag.level)(f"Layer health: {flag.text}")
    # The heatmap is drawn only while its box is open (a lazy expander): a healthy run keeps it closed, so
    # following a run does not redraw a second chart every few seconds; a new problem opens it.
    problems = (rid, tuple((f.level, f.layer) for f in flags))  # not the texts: their numbers move
    if flags and st.session_state.get(K + "health_problems") != problems:
        st.session_state[K + "health_open"] = True
    st.session_state[K + "health_problems"] = problems
    box = st.expander("Layer health", key=K + "health_open", on_change="rerun")
    with box:
        if not box.open:
            st.session_state.pop(K + "health_fig", None)  # drawn afresh when opened
            return
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


def _live_panel(v) -> None:
    """Live-tweak form: each applied change is a `set` event, marked on the curves.

    The fields start at the job's current values (passed as the widgets' values: a value put into
    session state came back as 0 when the browser redrew the form), and a field's key carries the
    value it was drawn with, so a change applied here or in another tab redraws it with the new one
    (the status line reruns the page when the live values change). Apply sends only the fields the
    user changed.
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
                _lab().set_live(v.id, **changes)
                st.toast("Applied: " + ", ".join(f"{k}={x:g}" for k, x in changes.items()))
            except LabError as exc:
                ui.show_error(exc)
    if err_key in st.session_state:  # stays until the value is corrected, not just for one poll
        st.error(st.session_state[err_key])


def follow() -> None:
    """The run list, then the shown run: status and progress, buttons, curves and health, live tweaks."""
    st.session_state[K + "full_run"] = True  # fragments tell a whole-page run from their own reruns
    try:
        jobs, by_id, rid = _current()
        st.fragment(_run_list, run_every=tf.LIST_EVERY_S)()  # runs launched or renamed in other tabs
        if rid is None:
            return
        v = by_id[rid]
        active = tf.is_active(v.status)
        st.fragment(_run_status, run_every=tf.STATUS_EVERY_S if active else tf.IDLE_EVERY_S)()
        _controls(v)
        st.fragment(_run_panel, run_every=tf.REDRAW_EVERY_S if active else None)()
        if rid in {j.id for j in jobs}:
            st.fragment(_live_panel)(v)  # Apply reruns the form alone; a live change reruns the page
        else:
            st.caption("Saved run: use **Saved runs** below to resume or fork it.")
    finally:
        st.session_state[K + "full_run"] = False
