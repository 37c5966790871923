"""The one cnnlab module that imports Streamlit: process-wide resources and shared widgets."""

from __future__ import annotations

from typing import Any

import streamlit as st

from .jobs import JobManager
from .runs import RunStore


def keep_training_fast() -> None:
    """Turn off Streamlit's forced full `gc.collect(2)` after every script run, fragments included.

    With torch, plotly and pandas loaded a full collection holds the GIL for tens to hundreds of ms;
    a page polling a run once a second then starved the training thread (measured on the 2-core box:
    seed002 at 3–11 steps/s with the Train page open vs 34–56 with it closed; 59 vs 69 without the
    forced GC). Python's own generational GC still runs as usual.
    """
    from streamlit import config

    if config.get_option("runner.postScriptGC"):
        config.set_option("runner.postScriptGC", False, where_defined="cnnlab.ui.keep_training_fast")


@st.cache_resource(show_spinner=False)
def get_manager() -> JobManager:
    """The process-wide job manager (shared by all sessions and tabs; survives page reloads)."""
    keep_training_fast()
    return JobManager(RunStore()).stop_on_exit()


def show_error(exc: BaseException) -> None:
    """A user-facing error as a message: LabError text as is, anything else with an expandable traceback."""
    import traceback

    from .errors import LabError

    if isinstance(exc, LabError):
        st.error(str(exc))
        return
    st.error(f"{type(exc).__name__}: {exc}")
    with st.expander("Traceback"):
        st.code("".join(traceback.format_exception(exc)))


def data_panel() -> bool:
    """On every page: one panel while MNIST is missing or downloading; True when the data is there.

    While not ready it polls every 2 s (a fragment) and reruns the whole page once the files are in
    place, so the panel goes away and Launch is enabled without a reload.
    """
    from . import datacheck

    if datacheck.check().ready:
        return True
    _data_wait()
    return False


@st.fragment(run_every=2.0)
def _data_wait() -> None:
    from . import datacheck

    state = datacheck.check()
    if state.ready:
        st.rerun(scope="app")
    if state.state == datacheck.DOWNLOADING:
        st.info(datacheck.panel_text(state), icon=":material/downloading:")
        st.progress(state.files_present / 4)
        return
    st.error(datacheck.panel_text(state), icon=":material/database_off:")
    if state.state == datacheck.FAILED and st.button("Retry the download", key="data_retry"):
        datacheck.check(retry=True)


def _remember_pick(key: str) -> None:
    st.session_state[key + "__id"] = st.session_state[key]


def pick_one(label: str, options: list, key: str, format_func: Any = str, default: Any = None,
             **kwargs: Any) -> Any:
    """A selectbox over ids whose labels change (a rename, a growing accuracy): the choice sticks to the id.

    Streamlit keeps a selectbox's value as its *label*: once the label of the chosen option changes,
    the old label matches nothing and the box falls back to another option (a rename then made
    Compare's "Manage a run" act on the wrong run). The chosen id is kept apart and written back
    into the widget before each draw, so the box always shows, and returns, the run the user chose.
    `default` (an option) is used until the user picks.
    """
    chosen = st.session_state.get(key + "__id")
    if chosen not in options:
        chosen = default if default in options else options[0]
    st.session_state[key + "__id"] = chosen
    st.session_state[key] = chosen
    return st.selectbox(label, options, key=key, format_func=format_func, on_change=_remember_pick,
                        args=(key,), **kwargs)
