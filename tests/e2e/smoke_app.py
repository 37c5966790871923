"""Throwaway Streamlit app that exercises what the e2e harness must drive: a button,
a polling fragment fed by a background thread, and a drawable canvas."""

import threading
import time

import numpy as np
import streamlit as st
from streamlit_drawable_canvas import st_canvas


class Ticker:
    """Counter advanced by a daemon thread; the page only reads it (never st.* from the thread)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._value = 0
        threading.Thread(target=self._run, daemon=True, name="smoke-ticker").start()

    def _run(self) -> None:
        while True:
            time.sleep(0.2)
            with self._lock:
                self._value += 1

    @property
    def value(self) -> int:
        with self._lock:
            return self._value


@st.cache_resource
def get_ticker() -> Ticker:
    return Ticker()


def main_page() -> None:
    """The page the smoke test drives: button, polling fragment, canvas, inputs."""
    st.title("Harness smoke app")

    st.session_state.setdefault("smoke_clicks", 0)
    if st.button("Increment", key="smoke_increment"):
        st.session_state.smoke_clicks += 1
    st.markdown(f"clicks: {st.session_state.smoke_clicks}")

    st.session_state.setdefault("smoke_full_runs", 0)
    st.session_state.smoke_full_runs += 1
    st.markdown(f"full runs: {st.session_state.smoke_full_runs}")

    ticker_panel()

    result = st_canvas(
        drawing_mode="freedraw",  # 0.13 knows "freedraw", not "freehand"
        stroke_width=20,
        stroke_color="#FFFFFF",
        background_color="#000000",
        width=280,
        height=280,
        return_image_data=True,
        key="smoke_canvas",
    )
    ink = 0
    if result.image_data is not None:
        # ink = bright pixels on the black background (RGB channels of RGBA)
        ink = int((np.asarray(result.image_data)[:, :, :3].max(axis=2) > 127).sum())
    st.markdown(f"ink pixels: {ink}")

    st.text_input("Name", key="smoke_name")
    st.markdown(f"name: {st.session_state.get('smoke_name', '')}")
    st.number_input("Amount", min_value=0, max_value=100, value=3, key="smoke_amount")
    st.markdown(f"amount: {st.session_state.get('smoke_amount')}")
    st.selectbox("Colour", ["red", "green", "blue"], key="smoke_colour")
    st.markdown(f"colour: {st.session_state.get('smoke_colour')}")


@st.fragment(run_every=0.5)
def ticker_panel() -> None:
    """Polls the background counter; only this fragment reruns every 0.5 s."""
    st.markdown(f"ticker: {get_ticker().value}")


def other_page() -> None:
    """Second page, so the harness's navigate() has somewhere to go."""
    st.title("Other smoke page")
    st.markdown("this is the other page")


st.navigation(
    [
        st.Page(main_page, title="Smoke main", default=True),
        st.Page(other_page, title="Other page", url_path="other"),
    ]
).run()
