"""The one cnnlab module that imports Streamlit: process-wide resources and shared widgets."""

from __future__ import annotations

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


@st.cache_resource(show_spinner=False)
def get_lr_finder():
    """The process-wide LR finder: range tests in background threads, using the cores training leaves free."""
    from .jobs import threads_per_job
    from .lrfind import LRFinder

    manager = get_manager()
    return LRFinder(threads=lambda: threads_per_job(1 + sum(j.status == "running" for j in manager.jobs())))


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
