"""Bounded load test of the app: 2 training jobs, browser sessions following them, one session drawing.

    CNNLAB_DATA_DIR=/work/shared/data python benchmarks/load_test.py [--viewers 3] [--phase-seconds 30]

What it does (everything on 127.0.0.1, in a temporary run store, stopped in `finally`):

1. trains a small model with the CLI into the store (`fast` preset on a subset) for the Draw page;
2. starts `streamlit run app.py` (the e2e harness's `StreamlitServer`) and, from the Train page in a
   browser, launches two long jobs (default seed002 and seed004, enough images and epochs to outlast
   the test), then closes that page;
3. alternates phases (default `none, viewers, viewers, none`: a linear drift of the machine's load
   cancels out of the ratio):
   - **none**: no page open; the jobs train alone;
   - **viewers**: `--viewers` pages follow the jobs on the Train page (alternately `?run=` job 1 and
     job 2; each polls its run once a second), plus one page on the Draw page that draws digits with
     real mouse strokes, waits for the prediction after each, and clears the canvas, again and again.
4. reports per phase and job the training throughput (images/s from the run's metrics.jsonl: steps
   and wall times inside the phase's window), the ratio viewers / none per job, the prediction
   latency (client: last mouse-up -> the page's rerun finished with the prediction shown; server:
   the time the Draw page prints for its update), the server's RSS (process group, /proc) at start,
   after each phase and at the end, and the CPU seconds the server, the browsers and everything else
   on the machine used in each window (the browsers share the 2 cores with the server here, which a
   real deployment would not).

The last line of output is one JSON object with all of it. `--max-seconds` caps the whole run
(setup included, cleanup excluded): phases are shortened, or dropped, to fit.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.e2e.harness import (  # noqa: E402
    CANVAS_SURFACE,
    CHROMIUM_ARGS,
    CHROMIUM_PATH,
    VIEWPORT,
    StreamlitServer,
    _open_combobox,
    _track_runs,
    browser_unavailable_reason,
    click_button,
    digit_strokes,
    draw_strokes,
    expect_text,
    fill_number,
    fill_text,
    get_exception_blocks,
    goto,
    select_option,
    wait_for_app,
    wait_for_rerun,
    widget,
)

PROMPT = "Draw a digit in the black box"
METRIC = '[data-testid="stMetricValue"]'
STEPS_RE = re.compile(r"^([\d,]+) steps recorded")
SERVER_RE = re.compile(r"server time for this update: (\d+) ms \(forward pass with feature maps ([\d.]+) ms\)")
MODEL_NAME = "load-test model"
# Headless pages count as visible, but keep Chromium from throttling timers of pages it deems hidden:
# a viewer whose 1 s poll is throttled would understate the load.
EXTRA_CHROMIUM_ARGS = ["--disable-background-timer-throttling", "--disable-renderer-backgrounding",
                       "--disable-backgrounding-occluded-windows"]
CLK = os.sysconf("SC_CLK_TCK")

# Last stroke's rerun is done, the page shows n strokes and a prediction.
_UPDATED_JS = """([f0, n]) => {
  const t = window.__e2eRuns;
  if (!t || t.finished <= f0) return false;
  const app = document.querySelector('[data-testid="stApp"]');
  if (!app || app.getAttribute('data-test-script-state') === 'running') return false;
  const want = n + (n === 1 ? ' stroke ' : ' strokes ');
  const caps = document.querySelectorAll('[data-testid="stCaptionContainer"]');
  if (![...caps].some(c => c.innerText.startsWith(want))) return false;
  return !!document.querySelector('[data-testid="stMetricValue"]');
}"""


# --------------------------------------------------------------------------- /proc


def _procs() -> dict[int, tuple[int, int, int]]:
    """pid -> (ppid, pgrp, cpu ticks) of every process we can read."""
    out = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                rest = f.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        out[int(name)] = (int(rest[1]), int(rest[2]), int(rest[11]) + int(rest[12]))
    return out


def _descendants(root: int, procs: dict[int, tuple[int, int, int]]) -> set[int]:
    kids: dict[int, list[int]] = {}
    for pid, (ppid, _, _) in procs.items():
        kids.setdefault(ppid, []).append(pid)
    seen, todo = set(), [root]
    while todo:
        for k in kids.get(todo.pop(), []):
            if k not in seen:
                seen.add(k)
                todo.append(k)
    return seen


def _rss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def server_pids(server_pid: int) -> set[int]:
    """The server and its children (its own process group)."""
    procs = _procs()
    return {p for p, (_, g, _) in procs.items() if g == server_pid} | _descendants(server_pid, procs) | {server_pid}


def server_rss_mb(server_pid: int) -> float:
    """Resident memory of the server's process group, MiB."""
    return sum(_rss_kb(p) for p in server_pids(server_pid)) / 1024


def _machine_busy_s() -> float:
    """CPU seconds all cores spent not idle since boot."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + (v[4] if len(v) > 4 else 0)
    return (sum(v[:8]) - idle) / CLK


def renice_browsers(nice: int, server_pid: int) -> None:
    """Lower the priority of every browser process (our descendants outside the server's group)."""
    if not nice:
        return
    procs = _procs()
    for pid in _descendants(os.getpid(), procs):
        if procs[pid][1] != server_pid:
            try:
                os.setpriority(os.PRIO_PROCESS, pid, nice)
            except OSError:
                pass  # gone already


def _task_ticks(pid: int) -> dict[int, int]:
    """tid -> CPU ticks of every thread of a process."""
    out = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                rest = f.read().rsplit(")", 1)[1].split()
            out[int(tid)] = int(rest[11]) + int(rest[12])
        except (OSError, IndexError):
            pass
    return out


class CpuMeter:
    """CPU seconds used by the server (its training threads apart), the browsers, this script and the rest.

    The training threads are the server's `n_jobs` busiest threads in the first window measured (the
    jobs use one thread each when two run on 2 cores; see cnnlab.jobs); the rest of the server's CPU
    is serving the pages (script reruns, websocket, serialization).
    """

    def __init__(self, server_pid: int, n_jobs: int = 2):
        self.server_pid, self.n_jobs = server_pid, n_jobs
        self.train_tids: set[int] | None = None

    def snapshot(self) -> dict[str, Any]:
        procs = _procs()
        server = {p for p, (_, g, _) in procs.items() if g == self.server_pid}
        browser = _descendants(os.getpid(), procs) - server
        return {"server": {p: procs[p][2] for p in server}, "browser": {p: procs[p][2] for p in browser},
                "tasks": _task_ticks(self.server_pid),
                "self": procs.get(os.getpid(), (0, 0, 0))[2], "machine": _machine_busy_s()}

    def delta(self, a: dict, b: dict) -> dict[str, float]:
        def grp(k: str) -> float:
            return sum(t - a[k].get(p, 0) for p, t in b[k].items()) / CLK

        d = {"server": grp("server"), "browsers": grp("browser"), "script": (b["self"] - a["self"]) / CLK}
        tasks = {t: v - a["tasks"].get(t, 0) for t, v in b["tasks"].items()}
        if self.train_tids is None:
            self.train_tids = set(sorted(tasks, key=tasks.get, reverse=True)[: self.n_jobs])
        d["server_training"] = sum(tasks.get(t, 0) for t in self.train_tids) / CLK
        d["server_serving"] = d["server"] - d["server_training"]
        d["machine"] = b["machine"] - a["machine"]
        d["other"] = max(0.0, d["machine"] - d["server"] - d["browsers"] - d["script"])
        return {k: round(v, 1) for k, v in d.items()}


class RssSampler(threading.Thread):
    """Samples the server's RSS every second (max and the series) until stopped."""

    def __init__(self, server_pid: int, every: float = 1.0):
        super().__init__(daemon=True, name="rss-sampler")
        self.server_pid, self.every = server_pid, every
        self.samples: list[tuple[float, float]] = []
        self._halt = threading.Event()  # not `_stop`: threading.Thread has a method of that name

    def run(self) -> None:
        while not self._halt.is_set():
            self.samples.append((time.time(), server_rss_mb(self.server_pid)))
            self._halt.wait(self.every)

    def stop(self) -> None:
        self._halt.set()
        self.join(5)

    @property
    def max_mb(self) -> float:
        return max((m for _, m in self.samples), default=0.0)


# --------------------------------------------------------------------------- runs on disk


def run_dirs(store: Path) -> list[Path]:
    return sorted(p for p in store.iterdir() if p.is_dir() and (p / "config.json").is_file())


def run_preset(d: Path) -> tuple[str, int, str]:
    """(preset, batch size, source) of a run folder."""
    cfg = json.loads((d / "config.json").read_text())
    return cfg.get("preset"), int(cfg["recipe"]["batch_size"]), cfg.get("source", "")


def step_records(d: Path) -> list[tuple[float, int]]:
    """(wall, step) of every step record in a run's metrics.jsonl."""
    out = []
    path = d / "metrics.jsonl"
    if not path.exists():
        return out
    for line in path.read_text().splitlines():
        try:
            r = json.loads(line)
        except ValueError:
            continue  # a line being written
        if r.get("kind") == "step" and "wall" in r:
            out.append((float(r["wall"]), int(r["step"])))
    return out


def throughput(d: Path, batch: int, t0: float, t1: float) -> dict[str, Any]:
    """Images/s of a run between wall times t0 and t1 (first to last step record inside the window)."""
    recs = [(w, s) for w, s in step_records(d) if t0 <= w <= t1]
    if len(recs) < 2:
        return {"images_per_s": 0.0, "steps": 0}
    (w0, s0), (w1, s1) = recs[0], recs[-1]
    return {"images_per_s": round((s1 - s0) * batch / max(1e-9, w1 - w0), 1), "steps": s1 - s0}


def wait_flushed(dirs: list[Path], t1: float, timeout: float = 5.0) -> None:
    """Wait until every run has a step record after t1 (the recorder flushes every 0.5 s)."""
    end = time.time() + timeout
    while time.time() < end:
        if all(any(w > t1 for w, _ in step_records(d)[-50:]) for d in dirs):
            return
        time.sleep(0.25)


# --------------------------------------------------------------------------- stats


def summary(xs: list[float]) -> dict[str, Any]:
    """n, median, p90, max of a list of milliseconds."""
    if not xs:
        return {"n": 0, "median": None, "p90": None, "max": None}
    p90 = statistics.quantiles(xs, n=10, method="inclusive")[8] if len(xs) > 1 else xs[0]
    return {"n": len(xs), "median": round(statistics.median(xs), 1), "p90": round(p90, 1), "max": round(max(xs), 1)}


# --------------------------------------------------------------------------- pages


def new_page(browser: Any, errors: list[str], who: str) -> Any:
    """A page in a fresh context (its own Streamlit session); its page errors land in `errors`."""
    ctx = browser.new_context(viewport=VIEWPORT)
    ctx.set_default_timeout(30_000)
    page = ctx.new_page()
    page.on("pageerror", lambda exc: errors.append(f"{who}: pageerror: {exc}"))

    def on_console(msg: Any) -> None:
        if msg.type == "error" and "status of 404" not in msg.text:  # 404: the url_path probe, benign
            errors.append(f"{who}: console.error: {msg.text[:300]}")

    page.on("console", on_console)
    return page


def close_page(page: Any) -> None:
    try:
        page.context.close()
    except Exception:  # noqa: BLE001 - closing is best effort
        pass


def launch_jobs(browser: Any, server: StreamlitServer, store: Path, args: argparse.Namespace,
                errors: list[str]) -> list[Path]:
    """Launch the jobs from the Train page, as a user would; their run folders, once they are stepping."""
    page = new_page(browser, errors, "launcher")
    try:
        goto(page, server.url, timeout=60_000)
        before = set(run_dirs(store))
        found: list[Path] = []
        for preset in args.jobs:
            select_option(page, "Preset", preset)
            fill_number(page, "Training subset (0 = all)", args.subset)
            fill_number(page, "Validation images", 500)
            fill_number(page, "Epochs", args.epochs)
            fill_text(page, "Run name (optional)", f"load {preset}")
            click_button(page, "Launch")
            end = time.time() + 30
            while time.time() < end:
                new = [d for d in run_dirs(store) if d not in before and d not in found]
                if new:
                    found.append(new[0])
                    break
                time.sleep(0.2)
            else:
                raise RuntimeError(f"launching {preset}: no run folder appeared; page exceptions: "
                                   f"{get_exception_blocks(page)}")
        end = time.time() + 90
        while time.time() < end and not all(len(step_records(d)) >= 5 for d in found):
            time.sleep(0.5)
        if not all(step_records(d) for d in found):
            raise RuntimeError(f"the jobs did not start stepping within 90 s: {[d.name for d in found]}")
        errors.extend(f"launcher: exception block: {e[:300]}" for e in get_exception_blocks(page))
        return found
    finally:
        close_page(page)


def steps_shown(page: Any) -> int | None:
    """The 'N steps recorded' caption of a Train page, or None."""
    try:
        loc = page.get_by_text(STEPS_RE).first
        return int(STEPS_RE.match(loc.inner_text(timeout=2_000)).group(1).replace(",", ""))
    except Exception:  # noqa: BLE001 - not drawn (yet), or the page is busy
        return None


def runs_finished(page: Any) -> int | None:
    """Script runs (fragment runs included) the page has seen finish since it was opened."""
    try:
        return page.evaluate("() => window.__e2eRuns ? window.__e2eRuns.finished : null")
    except Exception:  # noqa: BLE001
        return None


def open_viewers(browser: Any, server: StreamlitServer, rids: list[str], errors: list[str]) -> list[Any]:
    """Pages following the runs `rids` on the Train page, loaded side by side; once each shows its curve."""
    pages = []
    for i, rid in enumerate(rids):
        page = new_page(browser, errors, f"viewer{i + 1}")
        # The Train page is the default page: it lives at "/" (its url_path is ignored; /train logs
        # "The page that you have requested does not seem to exist" and falls back to the main page).
        page.goto(f"{server.url}/?run={rid}", wait_until="commit", timeout=60_000)
        pages.append(page)
    for page in pages:
        wait_for_app(page, timeout=90_000)
        end = time.time() + 30
        while time.time() < end and steps_shown(page) is None:
            time.sleep(0.25)
    return pages


def select_model(page: Any, name: str = MODEL_NAME) -> None:
    """Pick the saved model's best checkpoint in the Draw page's Model box (live jobs are listed first)."""
    box = widget(page, "stSelectbox", "Model", timeout=60_000)
    runs = _track_runs(page)
    _open_combobox(box.get_by_role("combobox"))
    opt = page.get_by_role("option").filter(has_text=re.compile(rf"^\s*{re.escape(name)} — best"))
    opt.first.click(timeout=10_000)
    wait_for_rerun(page, runs, timeout=60_000)


def open_drawer(browser: Any, server: StreamlitServer, errors: list[str]) -> Any:
    page = new_page(browser, errors, "drawer")
    goto(page, f"{server.url}/draw", timeout=60_000)
    expect_text(page, PROMPT, timeout=60_000)
    select_model(page)
    expect_text(page, PROMPT, timeout=60_000)
    return page


def _to_page(box: dict, p: tuple[float, float], size: float = 280) -> tuple[float, float]:
    x, y = min(max(p[0], 2), size - 2), min(max(p[1], 2), size - 2)
    return box["x"] + x * box["width"] / size, box["y"] + y * box["height"] / size


def draw_one(page: Any, d: int, timeout_ms: float = 30_000) -> dict[str, Any]:
    """Draw digit d on a clear canvas; client latency of the last stroke, server time, prediction."""
    strokes = digit_strokes(d)
    n = len(strokes)
    if n > 1:  # earlier strokes: wait for their updates, so only the last one is timed
        draw_strokes(page, strokes[:-1], timeout=timeout_ms)
        expect_text(page, re.compile(rf"^{n - 1} strokes? ·"), timeout=timeout_ms)
        wait_for_app(page, timeout=timeout_ms)
    surface = page.locator(CANVAS_SURFACE).first
    surface.wait_for(state="visible", timeout=timeout_ms)
    surface.scroll_into_view_if_needed()
    box = surface.bounding_box()
    pts = [_to_page(box, p) for p in strokes[-1]]
    f0 = _track_runs(page)
    page.mouse.move(*pts[0])
    page.mouse.down()
    for a, b in zip(pts, pts[1:]):
        page.mouse.move(*b, steps=max(1, int(((b[0] - a[0]) ** 2 + (b[1] - a[1]) ** 2) ** 0.5 / 6)))
    page.mouse.up()
    t0 = time.perf_counter()
    page.wait_for_function(_UPDATED_JS, arg=[f0, n], timeout=timeout_ms, polling=20)
    client_ms = (time.perf_counter() - t0) * 1e3
    m = SERVER_RE.search(page.get_by_text(SERVER_RE).first.inner_text(timeout=timeout_ms))
    pred = page.locator(METRIC).first.inner_text(timeout=timeout_ms).strip()
    return {"digit": d, "pred": pred, "client_ms": round(client_ms, 1),
            "server_ms": float(m.group(1)) if m else None, "forward_ms": float(m.group(2)) if m else None}


def clear(page: Any, timeout_ms: float = 30_000) -> None:
    click_button(page, "Clear", timeout=timeout_ms)
    expect_text(page, PROMPT, timeout=timeout_ms)


def draw_until(page: Any, server: StreamlitServer, until: float, errors: list[str], start_digit: int) -> list[dict]:
    """Draw digits (0..9 in turn), clearing after each, until `until` (time.time()); the results."""
    out: list[dict] = []
    d, fails = start_digit, 0
    while time.time() < until and fails < 3:
        try:
            out.append(draw_one(page, d % 10))
            clear(page)
            fails = 0
        except Exception as exc:  # noqa: BLE001 - count it, reload, go on (bounded by `fails`)
            fails += 1
            errors.append(f"drawer: digit {d % 10}: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
            try:
                goto(page, f"{server.url}/draw", timeout=60_000)
                select_model(page)
            except Exception as exc2:  # noqa: BLE001
                errors.append(f"drawer: reload failed: {type(exc2).__name__}: {str(exc2).splitlines()[0][:200]}")
        d += 1
    return out


# --------------------------------------------------------------------------- main


def train_model(store: Path, env: dict[str, str], args: argparse.Namespace) -> dict:
    """A small trained run in the store, for the Draw page (CLI, bounded)."""
    cmd = [sys.executable, "-m", "cnnlab", "train", "--preset", "fast", "--subset", str(args.model_subset),
           "--epochs", "1", "--val-size", "1000", "--name", MODEL_NAME, "--quiet", "--json"]
    p = subprocess.run(cmd, cwd=REPO, env={**os.environ, **env}, capture_output=True, text=True, timeout=300)
    if p.returncode != 0:
        raise RuntimeError(f"training the Draw page's model failed:\n{p.stdout}\n{p.stderr}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--viewers", type=int, default=3, help="Train-page viewers in viewer phases (plus 1 drawer)")
    ap.add_argument("--phase-seconds", type=float, default=30.0, help="measured window of each phase")
    ap.add_argument("--order", default="none,viewers,viewers,none", help="phases, comma-separated")
    ap.add_argument("--max-seconds", type=float, default=420.0, help="cap on the whole run (cleanup excluded)")
    ap.add_argument("--jobs", default="seed002,seed004", help="two presets to train concurrently")
    ap.add_argument("--subset", type=int, default=50000, help="training images per epoch of each job")
    ap.add_argument("--epochs", type=int, default=40, help="epochs of each job (they are stopped at the end)")
    ap.add_argument("--model-subset", type=int, default=10000, help="images for the Draw page's fast model")
    ap.add_argument("--settle", type=float, default=3.0, help="seconds after opening/closing pages before a window")
    ap.add_argument("--browser-nice", type=int, default=0,
                    help="nice value for the browser processes (e.g. 19: they then take less of the cores the "
                         "server shares with them here, and poll less often if starved)")
    ap.add_argument("--keep-store", action="store_true", help="keep the temporary run store and server log")
    args = ap.parse_args(argv)
    args.jobs = [j.strip() for j in args.jobs.split(",") if j.strip()]
    args.order = [p.strip() for p in args.order.split(",") if p.strip()]
    if len(args.jobs) != 2:
        ap.error("--jobs needs exactly two presets")
    if bad := [p for p in args.order if p not in ("none", "viewers")]:
        ap.error(f"unknown phase {bad[0]!r}; known: none, viewers")
    if not 0 <= args.viewers <= 12:
        ap.error("--viewers must be 0..12")
    return args


def run_phase(mode: str, window: float, ctx: dict, args: argparse.Namespace, k: int) -> dict:
    """One phase: open the pages (viewers), settle, measure for `window` s, close; its figures."""
    browser, server, dirs, errors = ctx["browser"], ctx["server"], ctx["dirs"], ctx["errors"]
    rids = [d.name for d in dirs]
    viewers: list[Any] = []
    drawer = None
    draws: list[dict] = []
    try:
        t_open = time.time()
        if mode == "viewers":
            viewers = open_viewers(browser, server, [rids[i % 2] for i in range(args.viewers)], errors)
            drawer = open_drawer(browser, server, errors)
            draw_until(drawer, server, time.time() + 0.1, errors, 7)  # warm-up draw (first saliency, imports)
        open_s = time.time() - t_open
        renice_browsers(args.browser_nice, ctx["server"].pid)
        time.sleep(args.settle)
        shown0 = [steps_shown(v) for v in viewers]
        runs0 = [runs_finished(v) for v in viewers]
        cpu0, t0 = ctx["cpu"].snapshot(), time.time()
        if drawer is not None:
            draws = draw_until(drawer, server, t0 + window, errors, k * 3)
        else:
            time.sleep(window)
        t1, cpu1 = time.time(), ctx["cpu"].snapshot()
        shown1 = [steps_shown(v) for v in viewers]
        runs1 = [runs_finished(v) for v in viewers]
        for who, pg in [(f"viewer{i + 1}", v) for i, v in enumerate(viewers)] + [("drawer", drawer)]:
            if pg is not None:
                errors.extend(f"{who}: exception block: {e[:300]}" for e in get_exception_blocks(pg))
    finally:
        for pg in [*viewers, drawer]:
            if pg is not None:
                close_page(pg)
    wait_flushed(dirs, t1)
    jobs = {}
    for d in dirs:
        preset, batch, _ = run_preset(d)
        jobs[d.name] = {"preset": preset, **throughput(d, batch, t0, t1)}
    return {
        "phase": k + 1, "mode": mode, "seconds": round(t1 - t0, 1), "open_pages_s": round(open_s, 1),
        "jobs": jobs, "cpu_s": ctx["cpu"].delta(cpu0, cpu1), "loadavg_1m": round(os.getloadavg()[0], 2),
        "rss_mb_after": round(server_rss_mb(server.pid), 1),
        "viewers": [{"run": rids[i % 2], "steps_shown": [a, b],
                     "fragment_runs_per_s": round((r1 - r0) / max(1e-9, t1 - t0), 2)
                     if isinstance(r0, int) and isinstance(r1, int) else None}
                    for i, (a, b, r0, r1) in enumerate(zip(shown0, shown1, runs0, runs1))],
        "draws": draws,
    }


def report_phase(ph: dict) -> None:
    jobs = ", ".join(f"{j['preset']} {j['images_per_s']:.0f} img/s" for j in ph["jobs"].values())
    print(f"phase {ph['phase']} ({ph['mode']}, {ph['seconds']:.0f} s): {jobs}; server RSS {ph['rss_mb_after']:.0f} MiB; "
          f"CPU s server {ph['cpu_s']['server']} (serving {ph['cpu_s']['server_serving']}), browsers {ph['cpu_s']['browsers']}, other {ph['cpu_s']['other']}; "
          f"load {ph['loadavg_1m']}", flush=True)
    for i, v in enumerate(ph["viewers"]):
        print(f"  viewer{i + 1} ({v['run']}): steps shown {v['steps_shown'][0]} -> {v['steps_shown'][1]}, "
              f"{v['fragment_runs_per_s']} fragment runs/s", flush=True)
    if ph["draws"]:
        c = summary([x["client_ms"] for x in ph["draws"]])
        s = summary([x["server_ms"] for x in ph["draws"] if x["server_ms"] is not None])
        print(f"  drawer: {c['n']} digits, client median {c['median']} ms (p90 {c['p90']}), "
              f"server median {s['median']} ms (p90 {s['p90']})", flush=True)


def build_report(phases: list[dict], dirs: list[Path], rss: dict, args: argparse.Namespace,
                 durations: dict, errors: list[str], model: dict) -> dict:
    """Ratios, latency summaries, memory: the final JSON."""
    ratios = {}
    for d in dirs:
        by = {m: [p["jobs"][d.name]["images_per_s"] for p in phases if p["mode"] == m] for m in ("none", "viewers")}
        ratios[d.name] = {"preset": phases[0]["jobs"][d.name]["preset"] if phases else None,
                          "none_mean": round(statistics.fmean(by["none"]), 1) if by["none"] else None,
                          "viewers_mean": round(statistics.fmean(by["viewers"]), 1) if by["viewers"] else None}
        r = ratios[d.name]
        r["ratio"] = round(r["viewers_mean"] / r["none_mean"], 3) if r["none_mean"] and r["viewers_mean"] else None
    tot = {m: [sum(j["images_per_s"] for j in p["jobs"].values()) for p in phases if p["mode"] == m]
           for m in ("none", "viewers")}
    ratios["both"] = {"ratio": round(statistics.fmean(tot["viewers"]) / statistics.fmean(tot["none"]), 3)
                      if tot["none"] and tot["viewers"] and statistics.fmean(tot["none"]) else None}
    draws = [x for p in phases for x in p["draws"]]
    return {
        "viewers": args.viewers, "drawers": 1, "browser_nice": args.browser_nice, "order": [p["mode"] for p in phases],
        "phase_seconds": args.phase_seconds,
        "phases": [{k: v for k, v in p.items() if k != "draws"} | {"n_draws": len(p["draws"])} for p in phases],
        "ratio_viewers_over_none": ratios,
        "latency_ms": {"client": summary([x["client_ms"] for x in draws]),
                       "server": summary([x["server_ms"] for x in draws if x["server_ms"] is not None]),
                       "forward": summary([x["forward_ms"] for x in draws if x["forward_ms"] is not None])},
        "draw_correct": f"{sum(str(x['digit']) == x['pred'] for x in draws)}/{len(draws)}",
        "draw_model_test_acc": model.get("test_acc"),
        "rss_mb": rss, "durations_s": durations, "errors": errors[:50], "n_errors": len(errors),
        "cores": os.cpu_count(),
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if reason := browser_unavailable_reason():
        print(f"cannot run: {reason}", file=sys.stderr)
        return 2
    from playwright.sync_api import sync_playwright

    t_start = time.time()
    deadline = t_start + args.max_seconds
    tmp = Path(tempfile.mkdtemp(prefix="cnnlab-load-"))
    store = tmp / "checkpoints"
    store.mkdir()
    env = {"CNNLAB_CHECKPOINT_DIR": str(store), "CNNLAB_DOWNLOAD": "0",
           "CNNLAB_DATA_DIR": os.environ.get("CNNLAB_DATA_DIR") or str(REPO.parent / "shared" / "data")}
    server = StreamlitServer(REPO / "app.py", env=env, cwd=REPO, startup_timeout=90)
    sampler: RssSampler | None = None
    errors: list[str] = []
    phases: list[dict] = []
    rss: dict[str, Any] = {}
    durations: dict[str, float] = {}
    try:
        print(f"training the Draw page's model (fast, {args.model_subset} images) into {store} ...", flush=True)
        model = train_model(store, env, args)
        print(f"  test acc {model.get('test_acc')}, {model.get('wall_s')} s", flush=True)
        server.start()
        rss["start"] = round(server_rss_mb(server.pid), 1)
        sampler = RssSampler(server.pid)
        sampler.start()
        print(f"server pid {server.pid} at {server.url}, RSS {rss['start']:.0f} MiB", flush=True)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM_PATH, headless=True,
                                         args=CHROMIUM_ARGS + EXTRA_CHROMIUM_ARGS)
            try:
                dirs = launch_jobs(browser, server, store, args, errors)
                rss["after_launch"] = round(server_rss_mb(server.pid), 1)
                durations["setup"] = round(time.time() - t_start, 1)
                print(f"jobs: {', '.join(f'{run_preset(d)[0]} {d.name}' for d in dirs)}; "
                      f"setup {durations['setup']:.0f} s; RSS {rss['after_launch']:.0f} MiB", flush=True)
                ctx = {"browser": browser, "server": server, "dirs": dirs, "errors": errors, "cpu": CpuMeter(server.pid)}
                # Fixed costs per phase besides its window: settling, closing, flushing; and for a viewer
                # phase opening the pages (a first guess, then the slowest measured so far).
                est_open = 10.0 * (args.viewers + 1)
                for k, mode in enumerate(args.order):
                    rest = args.order[k:]
                    fixed = len(rest) * (args.settle + 3) + est_open * rest.count("viewers")
                    window = min(args.phase_seconds, (deadline - time.time() - fixed) / len(rest))
                    if window < 5:
                        errors.append(f"phase {k + 1} ({mode}) and later dropped: --max-seconds reached")
                        break
                    phases.append(run_phase(mode, window, ctx, args, k))
                    if mode == "viewers":
                        est_open = max(est_open, phases[-1]["open_pages_s"])
                    report_phase(phases[-1])
                    if not server.running:
                        errors.append("the server exited during the test")
                        break
                rss["end"] = round(server_rss_mb(server.pid), 1)
                for d in dirs:
                    st = json.loads((d / "status.json").read_text())
                    if st.get("status") != "running":
                        errors.append(f"job {d.name} is {st.get('status')} at the end: {st.get('message')}")
            finally:
                browser.close()
    finally:
        if sampler is not None:
            sampler.stop()
            rss["max"] = round(sampler.max_mb, 1)
            rss["samples"] = len(sampler.samples)
        server.stop()
        log = server.output() if server.log_path else ""  # after stop: what it wrote while stopping too
        code = server._proc.returncode if server._proc is not None else None
        durations["server_exit_code"] = code  # SIGTERM while jobs train: 0 is a clean exit
        if code not in (0, None, -15):
            errors.append(f"server exit code {code} after SIGTERM"
                          + (" (abort: 'terminate called without an active exception' in its log)"
                             if "terminate called" in log else ""))
        tracebacks = [ln for ln in log.splitlines() if "Traceback" in ln or "Error" in ln]
        if tracebacks:
            errors.append(f"server log: {len(tracebacks)} error lines, first: {tracebacks[0][:300]}")
        if args.keep_store:
            print(f"kept {tmp} (server log {server.log_path})", flush=True)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
            if server.log_path:
                server.log_path.unlink(missing_ok=True)
    durations["total"] = round(time.time() - t_start, 1)
    rep = build_report(phases, dirs, rss, args, durations, errors, model)
    for rid, r in rep["ratio_viewers_over_none"].items():
        if rid != "both":
            print(f"{r['preset']}: {r['none_mean']} img/s alone, {r['viewers_mean']} with viewers: ratio {r['ratio']}")
    print(f"both jobs: ratio {rep['ratio_viewers_over_none']['both']['ratio']}")
    lat = rep["latency_ms"]
    print(f"prediction latency: client median {lat['client']['median']} ms, p90 {lat['client']['p90']} "
          f"(n={lat['client']['n']}); server median {lat['server']['median']} ms, p90 {lat['server']['p90']}; "
          f"drawn digits recognized {rep['draw_correct']}")
    print(f"server RSS: start {rss.get('start')} MiB, after launch {rss.get('after_launch')}, "
          f"end {rss.get('end')}, max {rss.get('max')}")
    for e in errors:
        print(f"problem: {e}")
    print(json.dumps(rep))
    return 0


if __name__ == "__main__":
    sys.exit(main())
