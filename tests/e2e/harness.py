"""Real-browser end-to-end harness for Streamlit pages: a server process, a browser, and helpers.

Selectors were read off the live DOM of Streamlit 1.67 and streamlit-drawable-canvas 0.13
(data-testid attributes, not emotion CSS classes, which change every release).

Knowing when a rerun finished: `[data-testid="stApp"]` carries `data-test-script-state`
("initial" | "running" | "notRunning" | ...). After a click it stays "notRunning" for a few hundred ms
(the round trip to the server), and `run_every` fragments flip it to "running" too, so "notRunning"
alone proves nothing. Action helpers here count finished runs (a MutationObserver on that attribute),
wait for a run that began after the action, then for a quiet spell. Tests should still assert the
outcome with `expect_text` (auto-retrying), which is the only race-free check.
"""

from __future__ import annotations

import math
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

CHROMIUM_PATH = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
VIEWPORT = {"width": 1400, "height": 1000}

APP = '[data-testid="stApp"]'
RUNNING_ICON = '[data-testid="stStatusWidgetRunningIcon"]'  # shown only after ~500 ms of running
EXCEPTION = '[data-testid="stException"]'
WIDGET_LABEL = '[data-testid="stWidgetLabel"]'
NAV_LINKS = '[data-testid="stSidebarNavLink"], [data-testid="stTopNavLink"]'
BUTTONS = (
    '[data-testid="stButton"], [data-testid="stFormSubmitButton"], '
    '[data-testid="stDownloadButton"], [data-testid="stPopover"]'
)
CANVAS_SURFACE = "canvas.upper-canvas"  # fabric's event layer, inside an open shadow root


# --------------------------------------------------------------------------- server


def free_port() -> int:
    """Ask the OS for a currently unused TCP port on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_accepts(port: int, host: str = "127.0.0.1") -> bool:
    """True if something is listening on host:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


class StreamlitServer:
    """`streamlit run APP` on a free localhost port, in its own process group; a context manager."""

    def __init__(
        self,
        app_path: str | os.PathLike,
        env: dict[str, str] | None = None,
        cwd: str | os.PathLike | None = None,
        port: int | None = None,
        startup_timeout: float = 60.0,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        self.app_path = Path(app_path).resolve()
        if not self.app_path.is_file():
            raise FileNotFoundError(f"streamlit app not found: {self.app_path}")
        self.env = dict(env or {})
        self.cwd = str(cwd) if cwd is not None else None
        self.startup_timeout = startup_timeout
        self.extra_args = tuple(extra_args)
        self._fixed_port = port
        self.port: int = port or 0
        self._proc: subprocess.Popen | None = None
        self._log_file: Any = None
        self.log_path: Path | None = None

    # -- lifecycle
    def __enter__(self) -> StreamlitServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def command(self) -> list[str]:
        """The exact command line used to start the server."""
        return [
            sys.executable, "-m", "streamlit", "run", str(self.app_path),
            "--server.headless", "true",
            "--server.address", "127.0.0.1",
            "--server.port", str(self.port),
            "--browser.gatherUsageStats", "false",
            "--server.fileWatcherType", "none",
            *self.extra_args,
        ]  # fmt: skip

    def start(self) -> None:
        """Start the process and block until /_stcore/health answers "ok"."""
        if self.running:
            raise RuntimeError(f"server already running on port {self.port}")
        attempts = 1 if self._fixed_port else 3  # a free port can be taken before we bind it
        for attempt in range(attempts):
            if not self._fixed_port and (attempt or not self.port):
                self.port = free_port()
            self._spawn()
            try:
                self._wait_healthy()
                return
            except RuntimeError:
                if attempt + 1 < attempts and "already in use" in self.output():
                    continue
                raise

    def _spawn(self) -> None:
        fd, name = tempfile.mkstemp(prefix=f"streamlit-e2e-{self.port}-", suffix=".log")
        self.log_path = Path(name)
        # A file, not a pipe: nobody reads a pipe while tests run, and a full pipe blocks the server.
        self._log_file = os.fdopen(fd, "wb", buffering=0)
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.env}
        self._proc = subprocess.Popen(
            self.command(),
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=self.cwd,
            env=env,
            start_new_session=True,  # own process group: stop() takes any children with it
        )

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        health = f"{self.url}/_stcore/health"
        while time.monotonic() < deadline:
            code = self._proc.poll()
            if code is not None:
                self._close_log()
                raise RuntimeError(
                    f"streamlit exited with code {code} before becoming healthy "
                    f"({self.app_path}, port {self.port}); output:\n{self.output()}"
                )
            try:
                with urllib.request.urlopen(health, timeout=2) as resp:
                    if resp.read().decode().strip() == "ok":
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                pass
            time.sleep(0.2)
        out = self.output()
        self.stop()
        raise RuntimeError(
            f"streamlit not healthy at {health} after {self.startup_timeout:.0f} s; output:\n{out}"
        )

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the process group, SIGKILL it if it has not gone within `timeout` seconds."""
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._signal_group(signal.SIGTERM)
            try:
                self._proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self._signal_group(signal.SIGKILL)
                self._proc.wait(timeout=timeout)
        self._signal_group(signal.SIGKILL)  # stragglers the leader left behind in its group
        self._close_log()

    def kill9(self) -> None:
        """SIGKILL the whole process group at once, as a crash would; for fault tests."""
        if self._proc is None:
            return
        self._signal_group(signal.SIGKILL)
        self._proc.wait(timeout=10)
        self._close_log()

    def restart(self) -> None:
        """Stop (if running) and start again on the same port, so open pages can reconnect."""
        self.stop()
        self._fixed_port, saved = self.port, self._fixed_port
        try:
            self.start()
        finally:
            self._fixed_port = saved

    def _signal_group(self, sig: signal.Signals) -> None:
        try:
            os.killpg(self._proc.pid, sig)  # pgid == pid thanks to start_new_session
        except (ProcessLookupError, PermissionError):
            pass

    def _close_log(self) -> None:
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def output(self) -> str:
        """Everything the server wrote to stdout and stderr so far."""
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")


# --------------------------------------------------------------------------- browser


def browser_unavailable_reason() -> str | None:
    """Why a real-browser test cannot run here, or None if it can."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright python package is not installed (pip install playwright)"
    if not os.path.exists(CHROMIUM_PATH):
        return f"no chromium at {CHROMIUM_PATH} (apt-get install chromium)"
    return None


def launch_browser(playwright: Any, headless: bool = True) -> Any:
    """Debian's chromium, headless, with background chatter switched off."""
    return playwright.chromium.launch(
        executable_path=CHROMIUM_PATH, headless=headless, args=CHROMIUM_ARGS
    )


# Opening a page by its url_path (e.g. /other) makes Streamlit's client probe the path as a
# possible base URL first: GET /other/_stcore/health and /host-config answer 404, then it falls
# back to the root. Those two 404s are noise, not app errors.
BENIGN_CONSOLE_ERRORS = [
    (re.compile(r"status of 404"), re.compile(r"/[^/]+/_stcore/(health|host-config)$")),
]


def _is_benign(text: str, url: str) -> bool:
    return any(t.search(text) and u.search(url) for t, u in BENIGN_CONSOLE_ERRORS)


def attach_error_collectors(page: Any) -> list[str]:
    """Record page errors and console errors on `page.errors` (also returned)."""
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(f"pageerror: {exc}"))

    def on_console(msg: Any) -> None:
        if msg.type == "error":
            where = (msg.location or {}).get("url", "")
            if _is_benign(msg.text, where):
                return
            errors.append(f"console.error: {msg.text}" + (f" [{where}]" if where else ""))

    page.on("console", on_console)
    page.errors = errors
    return errors


# --------------------------------------------------------------------------- run tracking

# Counts finished script runs (running -> notRunning) and stamps when the app last went idle.
_RUN_TRACKER_JS = """() => {
  if (window.__e2eRuns) return true;
  const app = document.querySelector('[data-testid="stApp"]');
  if (!app) return false;
  const t = window.__e2eRuns = {started: 0, finished: 0, idleSince: performance.now()};
  let last = app.getAttribute('data-test-script-state');
  new MutationObserver(() => {
    const s = app.getAttribute('data-test-script-state');
    if (s === last) return;
    if (s === 'running') t.started += 1;
    if (last === 'running' && s !== 'running') { t.finished += 1; t.idleSince = performance.now(); }
    last = s;
  }).observe(app, {attributes: true, attributeFilter: ['data-test-script-state']});
  return true;
}"""

_IDLE_JS = """([settle]) => {
  const app = document.querySelector('[data-testid="stApp"]');
  if (!app || app.getAttribute('data-test-connection-state') !== 'CONNECTED') return false;
  if (app.getAttribute('data-test-script-state') !== 'notRunning') return false;
  if (document.querySelector('[data-testid="stStatusWidgetRunningIcon"]')) return false;
  const t = window.__e2eRuns;
  return !t || performance.now() - t.idleSince >= settle;
}"""


def _track_runs(page: Any) -> int:
    """Install the run counter if needed; return the number of runs finished so far."""
    page.wait_for_selector(APP, state="attached")
    page.evaluate(_RUN_TRACKER_JS)
    return page.evaluate("() => window.__e2eRuns.finished")


def wait_for_app(page: Any, timeout: float = 30_000, settle_ms: float = 150) -> None:
    """Wait until the app is rendered, connected and idle (no script run for `settle_ms`)."""
    page.wait_for_selector(APP, state="attached", timeout=timeout)
    page.evaluate(_RUN_TRACKER_JS)
    page.wait_for_function(_IDLE_JS, arg=[settle_ms], timeout=timeout, polling=50)


def wait_for_rerun(page: Any, runs_before: int, timeout: float = 30_000, grace_ms: float = 3_000) -> None:
    """Wait for a run to finish after `runs_before` (from `_track_runs`), then for idle.

    If no run starts within `grace_ms` (an action that does not rerun) it just waits for idle.
    A `run_every` fragment's run also counts, so assert the outcome with `expect_text` too.
    """
    try:
        page.wait_for_function(
            "([n]) => window.__e2eRuns && window.__e2eRuns.finished > n",
            arg=[runs_before], timeout=grace_ms, polling=50,
        )  # fmt: skip
    except Exception as exc:  # playwright TimeoutError; still fine, see docstring
        if "Timeout" not in type(exc).__name__:
            raise
    wait_for_app(page, timeout=timeout)


def goto(page: Any, url: str, timeout: float = 30_000) -> None:
    """Open a URL of the app and wait for its first run to finish."""
    page.goto(url, timeout=timeout)
    page.wait_for_selector(f'{APP}[data-test-script-state="notRunning"]', timeout=timeout)
    wait_for_app(page, timeout=timeout)


# --------------------------------------------------------------------------- widgets


def _label_re(label: str) -> re.Pattern:
    return re.compile(rf"^\s*{re.escape(label)}\s*$")


def widget(page: Any, testid: str, label: str, timeout: float = 10_000) -> Any:
    """The widget container with data-testid `testid` whose label is exactly `label`.

    Waits for it: widget components are lazy-loaded chunks, so they can appear after the run ends.
    """
    loc = page.locator(f'[data-testid="{testid}"]').filter(
        has=page.locator(WIDGET_LABEL).filter(has_text=_label_re(label))
    )
    try:
        loc.first.wait_for(state="visible", timeout=timeout)
    except Exception as exc:
        labels = page.locator(f'[data-testid="{testid}"] {WIDGET_LABEL}').all_inner_texts()
        raise AssertionError(f"no {testid} labelled {label!r}; labels on the page: {labels}") from exc
    return loc.first


def click_button(page: Any, label: str, timeout: float = 30_000) -> None:
    """Click the st.button (or form submit / download button) whose text is `label`."""
    btn = page.locator(BUTTONS).get_by_role("button", name=_label_re(label))
    try:
        btn.first.wait_for(state="visible", timeout=10_000)
    except Exception as exc:
        names = page.locator(BUTTONS).get_by_role("button").all_inner_texts()
        raise AssertionError(f"no button {label!r}; buttons on the page: {names}") from exc
    runs = _track_runs(page)
    btn.first.click(timeout=timeout)
    wait_for_rerun(page, runs, timeout=timeout)


def _open_combobox(inp: Any, attempts: int = 4) -> None:
    """Open a react-aria ComboBox's menu: a click on its input, else ArrowDown, until expanded.

    The chevron ("Open") button ignored Playwright clicks in 1.67, and a click landing while the
    widget is still hydrating can be lost, hence the retry.
    """
    for i in range(attempts):
        if i % 2 == 0:
            inp.click()
        else:
            inp.press("ArrowDown")
        try:
            inp.page.wait_for_function(
                "el => el.getAttribute('aria-expanded') === 'true'", arg=inp.element_handle(), timeout=1_000
            )
            return
        except Exception:
            continue
    raise AssertionError("selectbox menu did not open")


def select_option(page: Any, label: str, option: str, timeout: float = 30_000) -> None:
    """Choose `option` in the st.selectbox labelled `label` (a react-aria ComboBox in 1.67)."""
    box = widget(page, "stSelectbox", label)
    runs = _track_runs(page)
    _open_combobox(box.get_by_role("combobox"))
    opt = page.get_by_role("option").filter(has_text=_label_re(option))
    try:
        opt.first.wait_for(timeout=5_000)
    except Exception:
        names = page.get_by_role("option").all_inner_texts()
        page.keyboard.press("Escape")
        raise AssertionError(f"selectbox {label!r} has no option {option!r}; options: {names}")
    opt.first.click(timeout=timeout)
    wait_for_rerun(page, runs, timeout=timeout)


def choose_radio(page: Any, option: str, timeout: float = 30_000) -> None:
    """Click the st.radio option labelled `option` (the first radio that has it) and wait for the rerun."""
    opt = page.locator('[data-testid="stRadio"] label').filter(has_text=_label_re(option))
    runs = _track_runs(page)
    opt.first.click(timeout=timeout)
    wait_for_rerun(page, runs, timeout=timeout)


def add_option(page: Any, label: str, option: str, timeout: float = 30_000) -> None:
    """Add `option` to the st.multiselect labelled `label`."""
    box = widget(page, "stMultiSelect", label)
    runs = _track_runs(page)
    _open_combobox(box.get_by_role("combobox"))
    page.get_by_role("option").filter(has_text=_label_re(option)).first.click(timeout=timeout)
    page.keyboard.press("Escape")
    wait_for_rerun(page, runs, timeout=timeout)


def _fill(page: Any, testid: str, field: str, label: str, value: object, timeout: float) -> None:
    inp = widget(page, testid, label).locator(field)
    runs = _track_runs(page)
    inp.fill(str(value), timeout=timeout)
    inp.press("Enter")  # Streamlit commits text/number inputs on Enter or blur
    wait_for_rerun(page, runs, timeout=timeout)


def fill_number(page: Any, label: str, value: float, timeout: float = 30_000) -> None:
    """Type `value` into the st.number_input labelled `label` and commit it."""
    _fill(page, "stNumberInput", 'input[data-testid="stNumberInputField"]', label, value, timeout)


def fill_text(page: Any, label: str, value: str, timeout: float = 30_000) -> None:
    """Type `value` into the st.text_input (or st.text_area) labelled `label` and commit it."""
    if page.locator('[data-testid="stTextArea"]').filter(
        has=page.locator(WIDGET_LABEL).filter(has_text=_label_re(label))
    ).count():
        # text_area commits on Ctrl+Enter or blur, not Enter
        box = widget(page, "stTextArea", label).locator("textarea")
        runs = _track_runs(page)
        box.fill(value, timeout=timeout)
        box.press("Control+Enter")
        wait_for_rerun(page, runs, timeout=timeout)
        return
    _fill(page, "stTextInput", 'input[data-testid="stTextInputField"]', label, value, timeout)


def expect_text(page: Any, text: str | re.Pattern, timeout: float = 10_000) -> None:
    """Assert (with retries until `timeout` ms) that some element shows `text` (substring or regex)."""
    from playwright.sync_api import expect

    expect(page.get_by_text(text).first).to_be_visible(timeout=timeout)


def get_exception_blocks(page: Any) -> list[str]:
    """Texts of the tracebacks Streamlit renders (st.exception / uncaught errors) on the page."""
    return page.locator(EXCEPTION).all_inner_texts()


_CUT_TEXT_JS = """() => {
  const out = [];
  for (const el of document.querySelectorAll('[data-testid="stMain"] *')) {
    if (!el.offsetParent || el.closest('[data-testid="stDataFrame"], .js-plotly-plot, [data-testid="stCode"]')) continue;
    const cs = getComputedStyle(el);
    if (cs.overflowX === 'visible' && cs.textOverflow !== 'ellipsis') continue;
    const text = (el.innerText || el.value || '').trim();
    if (text && el.scrollWidth > el.clientWidth + 1) out.push(text.slice(0, 60).replace(/\\s+/g, ' '));
  }
  const main = document.querySelector('[data-testid="stMain"]');
  if (main && main.scrollWidth > main.clientWidth + 1) out.push(`the page scrolls sideways (${main.scrollWidth} px)`);
  return out;
}"""


def cut_texts(page: Any) -> list[str]:
    """Texts on the page that are cut short (an ellipsis, a clipped button label, a selectbox value that
    does not fit its box), and a main area wider than the window; tables, charts and code scroll instead."""
    return page.evaluate(_CUT_TEXT_JS)


def screenshot(page: Any, path: str | os.PathLike) -> Path:
    """Full-page PNG at `path` (parent folders created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(path), full_page=True)
    return path


def navigate(page: Any, server: StreamlitServer, page_title_or_url_path: str, timeout: float = 30_000) -> None:
    """Go to an st.navigation page: click the nav link with that title, else open it by url_path."""
    target = page_title_or_url_path
    link = page.locator(NAV_LINKS).filter(has_text=_label_re(target))
    if not target.startswith("/") and link.count():
        link.first.click(timeout=timeout)
        wait_for_app(page, timeout=timeout)
        return
    goto(page, f"{server.url}/{target.lstrip('/')}", timeout=timeout)


# --------------------------------------------------------------------------- canvas


def draw_strokes(
    page: Any,
    strokes: list[list[tuple[float, float]]],
    canvas_index: int = 0,
    canvas_size: tuple[float, float] = (280, 280),
    timeout: float = 30_000,
) -> None:
    """Draw `strokes` (lists of (x, y) in canvas coordinates) with real mouse events, then wait.

    streamlit-drawable-canvas 0.13 renders in the page (inside an open shadow root that Playwright
    pierces); fabric listens on `canvas.upper-canvas`. The canvas sends its value on mouse up.
    """
    surface = page.locator(CANVAS_SURFACE).nth(canvas_index)
    surface.wait_for(state="visible", timeout=timeout)
    surface.scroll_into_view_if_needed()
    box = surface.bounding_box()
    sx, sy = box["width"] / canvas_size[0], box["height"] / canvas_size[1]

    def to_page(p: tuple[float, float]) -> tuple[float, float]:
        # Keep 2 px inside the edges; the toolbar overlaps a few px above the top edge.
        x = min(max(p[0], 2), canvas_size[0] - 2)
        y = min(max(p[1], 2), canvas_size[1] - 2)
        return box["x"] + x * sx, box["y"] + y * sy

    runs = _track_runs(page)
    for stroke in strokes:
        if not stroke:
            continue
        pts = [to_page(p) for p in stroke]
        page.mouse.move(*pts[0])
        page.mouse.down()
        prev = pts[0]
        for pt in pts[1:]:
            steps = max(1, int(math.dist(prev, pt) / 6))  # fabric samples mousemove; keep it dense
            page.mouse.move(*pt, steps=steps)
            prev = pt
        if len(pts) == 1:
            page.mouse.move(pts[0][0] + 1, pts[0][1] + 1)  # a dot still needs a move
        page.mouse.up()
    wait_for_rerun(page, runs, timeout=timeout)


def _arc(cx: float, cy: float, rx: float, ry: float, a0: float, a1: float, n: int = 16) -> list:
    """Points on an elliptic arc from angle a0 to a1 degrees (maths convention: y up, ccw positive)."""
    out = []
    for i in range(n + 1):
        a = math.radians(a0 + (a1 - a0) * i / n)
        out.append((round(cx + rx * math.cos(a), 1), round(cy - ry * math.sin(a), 1)))
    return out


def digit_strokes(d: int) -> list[list[tuple[float, float]]]:
    """Plausible mouse strokes for digit `d` in a 280x280 canvas (drawn with a thick brush).

    Digits span about y 60..225 and x 90..195, roughly where MNIST puts ink in its 28x28 box.
    """
    shapes = {
        0: [_arc(140, 142, 52, 80, 90, 450, 28)],
        1: [[(118, 88), (142, 60)], [(142, 60), (142, 225)]],
        2: [_arc(140, 105, 46, 45, 160, -40, 12) + [(96, 222), (192, 222)]],
        3: [_arc(136, 100, 44, 40, 150, -90, 12) + _arc(136, 182, 48, 42, 90, -150, 12)[1:]],
        4: [[(160, 60), (92, 165), (196, 165)], [(166, 92), (166, 225)]],
        5: [[(188, 62), (104, 62), (98, 132)] + _arc(138, 172, 50, 48, 140, -140, 14)],
        6: [[(176, 62), (138, 90), (108, 130)] + _arc(142, 175, 46, 48, 180, -180, 20)],
        7: [[(88, 66), (192, 66), (124, 226)]],
        8: [_arc(140, 100, 38, 38, -90, 270, 20), _arc(140, 180, 46, 44, 90, 450, 20)],
        9: [_arc(140, 100, 42, 40, 0, 360, 20), [(182, 100), (176, 226)]],
    }
    if d not in shapes:
        raise ValueError(f"digit must be 0..9, got {d!r}")
    return [list(s) for s in shapes[d]]
