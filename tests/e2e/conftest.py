"""Pytest fixtures for the real-browser tests: playwright, one chromium, a fresh page per test."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .harness import (
    VIEWPORT,
    StreamlitServer,
    attach_error_collectors,
    browser_unavailable_reason,
    launch_browser,
)

REPO_ROOT = Path(__file__).resolve().parents[2]


def _require_browser() -> None:
    reason = browser_unavailable_reason()
    if reason is None:
        return
    if os.environ.get("CNNLAB_REQUIRE_BROWSER"):
        pytest.fail(f"CNNLAB_REQUIRE_BROWSER is set but {reason}", pytrace=False)
    pytest.skip(f"real-browser test skipped: {reason}")


@pytest.fixture(scope="session")
def playwright_instance() -> Iterator[object]:
    """One playwright driver for the session."""
    _require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="session")
def browser(playwright_instance: object) -> Iterator[object]:
    """One headless chromium for the session."""
    b = launch_browser(playwright_instance)
    yield b
    b.close()


@pytest.fixture
def page(browser: object) -> Iterator[object]:
    """A fresh context and page; `page.errors` collects page errors and console errors."""
    context = browser.new_context(viewport=VIEWPORT)
    context.set_default_timeout(30_000)
    pg = context.new_page()
    attach_error_collectors(pg)
    yield pg
    context.close()


@pytest.fixture
def streamlit_server() -> Iterator[Callable[..., StreamlitServer]]:
    """Factory: `streamlit_server(app_path, env=...)` starts a server, stopped after the test."""
    started: list[StreamlitServer] = []

    def start(app_path: str | os.PathLike, env: dict | None = None, cwd=REPO_ROOT, **kw) -> StreamlitServer:
        server = StreamlitServer(app_path, env=env, cwd=cwd, **kw)
        server.start()
        started.append(server)
        return server

    yield start
    for server in reversed(started):
        server.stop()


@pytest.fixture(scope="session")
def runs_template(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """Real runs made once per session: a run, its fork, a diverged run, a damaged folder (tests/test_compare's
    make_runs) and an untrained `fast` run (96 maps in its last conv). Returns (store, {role: run id})."""
    import sys

    from cnnlab.data import load_mnist

    sys.path.insert(0, str(REPO_ROOT / "tests"))
    from test_compare import make_runs

    from .test_newcomer_e2e import _stored_run

    root = tmp_path_factory.mktemp("e2e-runs") / "checkpoints"
    ids = make_runs(root, load_mnist())
    ids["fast"] = _stored_run(root, "wide fast", preset="fast", val_acc=0.99)
    return root, ids


@pytest.fixture
def runs_store(runs_template, tmp_path) -> tuple[Path, dict[str, str]]:
    """A copy of `runs_template` for one test (pages may rename, tag, delete or import)."""
    import shutil

    src, ids = runs_template
    dst = tmp_path / "checkpoints"
    shutil.copytree(src, dst)
    return dst, dict(ids)
