"""Proves the e2e harness against tests/e2e/smoke_app.py: server lifecycle, widgets, fragment, canvas."""

from __future__ import annotations

import re
import time
import urllib.request
from pathlib import Path

import pytest

from .conftest import REPO_ROOT
from .harness import (
    StreamlitServer,
    click_button,
    digit_strokes,
    draw_strokes,
    expect_text,
    fill_number,
    fill_text,
    get_exception_blocks,
    goto,
    navigate,
    port_accepts,
    screenshot,
    select_option,
    wait_for_app,
)

SMOKE_APP = Path(__file__).with_name("smoke_app.py")


@pytest.fixture(scope="module")
def server():
    """One smoke-app server shared by this module's browser tests (startup costs seconds)."""
    with StreamlitServer(SMOKE_APP, cwd=REPO_ROOT) as srv:
        yield srv


def _number(page, prefix: str) -> int:
    """The integer shown in the markdown line `prefix: N`."""
    text = page.get_by_text(re.compile(rf"^{re.escape(prefix)}: \d+$")).first.inner_text()
    return int(text.split(":")[1])


def _assert_clean(page) -> None:
    assert get_exception_blocks(page) == []
    assert page.errors == []


def test_server_is_healthy_on_a_free_port(server):
    assert server.running and server.pid
    assert server.url == f"http://127.0.0.1:{server.port}"
    with urllib.request.urlopen(f"{server.url}/_stcore/health", timeout=5) as resp:
        assert resp.read().decode().strip() == "ok"


def test_renders_and_button_increments(server, page):
    goto(page, server.url)
    expect_text(page, "Harness smoke app")
    expect_text(page, "clicks: 0")
    click_button(page, "Increment")
    expect_text(page, "clicks: 1")
    click_button(page, "Increment")
    expect_text(page, "clicks: 2")
    _assert_clean(page)


def test_fragment_polls_without_full_rerun(server, page):
    goto(page, server.url)
    ticker0, runs0 = _number(page, "ticker"), _number(page, "full runs")
    time.sleep(2.0)
    # The ticker thread adds 5/s and the fragment shows it every 0.5 s; allow a slow, shared CPU.
    expect_text(page, re.compile(rf"^ticker: (?!{ticker0}$)\d+$"))
    assert _number(page, "ticker") >= ticker0 + 3
    assert _number(page, "full runs") == runs0
    _assert_clean(page)


def test_drawing_on_canvas_makes_ink(server, page, tmp_path):
    goto(page, server.url)
    expect_text(page, "ink pixels: 0")
    draw_strokes(page, digit_strokes(7))
    expect_text(page, re.compile(r"^ink pixels: [1-9]\d*$"))
    assert _number(page, "ink pixels") > 1000  # a 20 px brush over ~300 px of stroke
    screenshot(page, tmp_path / "drawn.png")
    assert (tmp_path / "drawn.png").stat().st_size > 0
    _assert_clean(page)


def test_text_number_and_select_inputs(server, page):
    goto(page, server.url)
    fill_text(page, "Name", "Ada")
    expect_text(page, "name: Ada")
    fill_number(page, "Amount", 42)
    expect_text(page, "amount: 42")
    select_option(page, "Colour", "blue")
    expect_text(page, "colour: blue")
    _assert_clean(page)


def test_navigate_by_title_and_url_path(server, page):
    goto(page, server.url)
    navigate(page, server, "Other page")
    expect_text(page, "this is the other page")
    assert page.url.endswith("/other")
    navigate(page, server, "Smoke main")
    expect_text(page, "clicks: 0")
    navigate(page, server, "/other")
    expect_text(page, "this is the other page")
    _assert_clean(page)


def test_reload_starts_a_working_session(server, page):
    goto(page, server.url)
    click_button(page, "Increment")
    expect_text(page, "clicks: 1")
    page.reload()
    wait_for_app(page)
    expect_text(page, "clicks: 0")  # a reload is a new session
    click_button(page, "Increment")
    expect_text(page, "clicks: 1")
    _assert_clean(page)


def test_two_servers_run_at_once_and_stop_cleanly(server):
    with StreamlitServer(SMOKE_APP, cwd=REPO_ROOT) as second:
        assert second.port != server.port
        for srv in (server, second):
            with urllib.request.urlopen(f"{srv.url}/_stcore/health", timeout=5) as resp:
                assert resp.read() == b"ok"
        port = second.port
    assert not second.running
    assert not port_accepts(port)
    assert port_accepts(server.port)  # the other one is untouched


def test_kill9_then_restart_on_same_port():
    srv = StreamlitServer(SMOKE_APP, cwd=REPO_ROOT)
    with srv:
        port = srv.port
        srv.kill9()
        assert not srv.running and not port_accepts(port)
        srv.restart()
        assert srv.running and srv.port == port
        with urllib.request.urlopen(f"{srv.url}/_stcore/health", timeout=5) as resp:
            assert resp.read() == b"ok"
    assert not port_accepts(port)


def test_failed_start_reports_output():
    with pytest.raises(RuntimeError, match="no-such-option"):
        StreamlitServer(SMOKE_APP, extra_args=("--no-such-option",), startup_timeout=20).start()
