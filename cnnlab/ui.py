"""The one cnnlab module that imports Streamlit: process-wide resources and shared widgets."""

from __future__ import annotations

import threading
import weakref
from typing import TYPE_CHECKING, Any

import streamlit as st

from .jobs import JobManager
from .lab import Lab
from .runs import RunStore
from .textsafe import md_text

if TYPE_CHECKING:
    from .sweeps.launcher import SweepLauncher


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
    """The process-wide job manager (shared by all sessions and tabs; survives page reloads).

    MNIST is loaded in the background as soon as the files are there (never downloaded from here): the
    first Launch then trains within a second instead of waiting for the data.
    """
    from . import data, datacheck, settings

    keep_training_fast()
    manager = JobManager(RunStore(), workers=settings.job_workers()).stop_on_exit()
    if datacheck.files_present(settings.data_dir()) == len(data.RAW_FILES):  # no download started from here
        manager.preload_data()
    _made.append(manager)
    return manager


_made: list[JobManager] = []  # the managers get_manager made (one, unless its cache was cleared)


def release_managers(wait: float = 10.0) -> None:
    """Shut down every job manager get_manager made (their jobs stop, their spare training processes end)
    and clear its cache: the next call makes a fresh one. For tests, which start each from a clean slate."""
    while _made:
        _made.pop().shutdown(wait)
    get_manager.clear()


_labs: "weakref.WeakKeyDictionary[JobManager, Lab]" = weakref.WeakKeyDictionary()
_labs_lock = threading.Lock()


def get_lab() -> Lab:
    """The pages' one door to runs and jobs: the lab over the process-wide job manager (one per manager)."""
    manager = get_manager()
    with _labs_lock:
        lab = _labs.get(manager)
        if lab is None:
            lab = _labs[manager] = Lab(manager)
        return lab


@st.cache_resource(show_spinner=False)
def get_lr_finder():
    """The process-wide LR finder: range tests in background threads, using the cores training leaves free."""
    from .jobs import threads_per_job
    from .lrfind import LRFinder

    manager = get_manager()
    return LRFinder(threads=lambda: threads_per_job(1 + sum(j.status == "running" for j in manager.jobs())))


@st.cache_resource(show_spinner=False)
def get_sweep_launcher() -> "SweepLauncher":
    """The process-wide sweep launcher (sweeps run as processes of this server; stopped at exit)."""
    from .sweeps.launcher import SweepLauncher

    return SweepLauncher(RunStore()).stop_on_exit()


def run_table_columns(ids: list[str]) -> dict[str, Any]:
    """column_config for a table of runs (whose id column comes right after the name): the id column as wide
    as the longest id shown, so ids are whole at 1024 px."""
    longest = max((len(i) for i in ids), default=28)
    return {"id": st.column_config.TextColumn(width=16 + 8 * longest)}  # ~8 px a character at the table's font


def show_error(exc: BaseException) -> None:
    """A user-facing error as a message: LabError text as is, anything else with an expandable traceback."""
    import traceback

    from .errors import LabError

    if isinstance(exc, LabError):
        st.error(md_text(exc))
        return
    st.error(md_text(f"{type(exc).__name__}: {exc}"))
    with st.expander("Traceback"):
        st.code("".join(traceback.format_exception(exc)))


def test_map_view(key: str, cache_key: object, model: object, star_input: object = None,
                  star_label: str = "") -> None:
    """The test set as a map (cnnlab.testmap) for `model`: built once per `cache_key` behind a progress
    bar; hover shows the digit, a click shows it large with its prediction; `star_input` (a 28x28 image)
    is placed on the map as a star."""
    import numpy as np

    from . import testmap as TM
    from .data import load_mnist
    from .plots import probe, why

    mnist = load_mnist()
    if TM.is_cached(cache_key):
        tmap = TM.cached_map(cache_key, model, mnist.test_x, mnist.test_y)
    else:
        text = f"Computing the map: features of {TM.MAP_POINTS:,} test images, then PCA…"
        bar = st.progress(0.0, text=text)
        tmap = TM.cached_map(cache_key, model, mnist.test_x, mnist.test_y,
                             progress=lambda f: bar.progress(min(1.0, f), text=text))
        bar.empty()
    if tmap.art is None:  # hover pictures, once per map
        tmap.art = TM.ascii_digits(mnist.test_x[tmap.indices].numpy() / 255.0)
    star = TM.place(tmap, model, star_input) if star_input is not None else None
    sel_key = key + "_selected"
    selected = st.session_state.get(sel_key)
    left, right = st.columns([3, 1])
    with left:
        fig = why.test_map(tmap.xy, tmap.labels, tmap.preds, tmap.confidence, tmap.indices, tmap.art,
                           star=star, star_label=star_label, selected=selected, explained=tmap.explained)
        event = st.plotly_chart(fig, key=key + "_chart", on_select="rerun", selection_mode="points",
                                config={"displaylogo": False})
    clicked = TM.point_from_selection(event)
    if clicked is not None and clicked != selected:
        st.session_state[sel_key] = selected = clicked
    with right:
        n_wrong = len(tmap.mistakes)
        st.caption(f"{len(tmap.indices):,} test images on the two main axes (PCA) of what `{tmap.layer}` "
                   f"receives; ✕ = {n_wrong} mistakes. Hover a point to see the digit, click it to enlarge."
                   + (" ★ = your input, placed by the same projection." if star is not None else ""))
        if selected is not None and 0 <= int(selected) < len(mnist.test_x):
            i = int(selected)
            pos = np.nonzero(tmap.indices == i)[0]
            true = int(mnist.test_y[i])
            st.plotly_chart(probe.image_heatmap(mnist.test_x[i].numpy() / 255.0, f"test image #{i}", height=220),
                            key=key + "_big")
            if len(pos):
                p, c = int(tmap.preds[pos[0]]), float(tmap.confidence[pos[0]])
                mark = "✓" if p == true else "✗"
                st.markdown(f"true **{true}** · predicted **{p}** ({c:.0%}) {mark}")


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
