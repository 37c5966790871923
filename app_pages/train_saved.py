"""The Train page's saved runs: runs in the store that this process is not training. Resume one, fork it
from a saved epoch, or show its curves. Imported by app_pages/train.py; not a page of its own."""

from __future__ import annotations

import streamlit as st

from app_pages.train_follow import K
from cnnlab import trainform as tf
from cnnlab import ui
from cnnlab.errors import ConfigError, LabError
from cnnlab.fields import OPTIMIZERS
from cnnlab.textsafe import md_text


def _lab():
    return ui.get_lab()  # per call: the tests replace the process-wide lab between them


def _show_saved(rid: str) -> None:
    st.session_state[K + "run"] = rid
    st.query_params["run"] = rid


def _resume_saved(rid: str) -> None:
    try:
        _lab().resume(rid)
    except LabError as exc:
        st.session_state[K + "saved_flash"] = str(exc)
    else:
        _show_saved(rid)
        st.session_state[K + "saved_toast"] = f"Resumed {rid}"


def _fork_saved(rid: str) -> None:
    g = lambda f: st.session_state.get(K + f"fork_{rid}_{f}")  # noqa: E731
    try:
        new = _lab().fork(rid, g("epoch"), g("lr"), g("epochs"), g("optimizer"), name=g("name"))
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
        infos = _lab().saved_runs()
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
        fd = _lab().fork_defaults(rid)
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
