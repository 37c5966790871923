"""The app as a user enters it: app.py routes with st.navigation, and every page is reached from there."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[1]


def _titles(at: AppTest) -> list[str]:
    return [t.value for t in at.title]


def test_no_pages_folder_beside_app_py():
    """A pages/ folder would flip a fresh server into Streamlit's legacy multipage mode (see app.py)."""
    assert (ROOT / "app.py").is_file() and (ROOT / "app_pages").is_dir()
    assert not (ROOT / "pages").exists()


def test_app_starts_on_train_and_switches_between_pages(manager):
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.run()
    assert not at.exception, at.exception
    assert at.selectbox(key="train_preset").value == "fast"  # Train is the default page

    at.switch_page("app_pages/draw.py").run()
    assert not at.exception, at.exception
    assert "Draw" in _titles(at)
    assert "train_preset" not in [s.key for s in at.selectbox]  # the Train page is not drawn any more

    at.switch_page("app_pages/compare.py").run()
    assert not at.exception, at.exception
    assert "Compare runs" in _titles(at) and "Draw" not in _titles(at)

    at.switch_page("app_pages/train.py").run()
    assert not at.exception, at.exception
    assert at.selectbox(key="train_preset").value == "fast" and "Compare runs" not in _titles(at)
