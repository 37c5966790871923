"""The one cnnlab module that imports Streamlit: process-wide resources and shared widgets."""

from __future__ import annotations

import streamlit as st

from .jobs import JobManager
from .runs import RunStore


@st.cache_resource(show_spinner=False)
def get_manager() -> JobManager:
    """The process-wide job manager (shared by all sessions and tabs; survives page reloads)."""
    return JobManager(RunStore())


def get_store() -> RunStore:
    """The run store the job manager writes to."""
    return get_manager().store


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
