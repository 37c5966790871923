"""Following a run in the Train page vs the CLI: steps/s of one app job with the page open, with no page,
and of `python -m cnnlab train` on the same recipe, all in one run (issue 15).

    CNNLAB_DATA_DIR=/work/shared/data python benchmarks/bench_page_open.py
    ... --presets seed002,seed004 --window 15 --order cli,open,none,none,open,cli [--threads 1] [--keep-store]

A real `streamlit run app.py` on 127.0.0.1 (the e2e harness's server), Debian's headless Chromium via
Playwright, temporary run stores. Per preset: the Train page launches a long run (50,000 images, 500
validation images, 20 epochs); then windows of `--window` seconds, in `--order`:

- **open**: a fresh Train page follows the run (status every 3 s, curves every 10 s: what a user sees);
- **none**: no page open (about:blank), the job trains alone in the server;
- **cli**: the app job is paused from the page (the page is then closed) and `python -m cnnlab train` trains
  the same recipe in its own process; the app job resumes after the window.

Each window starts after a settling time (a new page reads the whole curve once; a CLI process imports
torch and loads MNIST) and its rate is read from the run's metrics.jsonl (the step records' wall times).
The default order puts every mode at the same mean position, so a linear drift in the machine's load
cancels out of the ratios. Prints the rates per window, `open / cli` and `none / cli` per preset, the
load average, and a JSON line last. No assertion: a benchmark reports, the README records.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.e2e.harness import (  # noqa: E402
    VIEWPORT,
    StreamlitServer,
    attach_error_collectors,
    browser_unavailable_reason,
    click_button,
    expect_text,
    fill_number,
    get_exception_blocks,
    goto,
    launch_browser,
    select_option,
)

SUBSET, VAL, EPOCHS = 50_000, 500, 20
PAGE_TIMEOUT_MS = 180_000  # a page load on a busy box can take a minute


def step_walls(metrics: Path) -> list[tuple[float, int]]:
    """(wall time, step) of every step record written so far."""
    out = []
    try:
        lines = metrics.read_text().splitlines()
    except OSError:
        return out
    for line in lines:
        try:
            r = json.loads(line)
        except ValueError:  # a line being written
            continue
        if r.get("kind") == "step" and "wall" in r:
            out.append((float(r["wall"]), int(r["step"])))
    return out


def rate(metrics: Path, t0: float, t1: float) -> float:
    """Steps per second between wall times t0 and t1."""
    pts = [(w, s) for w, s in step_walls(metrics) if t0 <= w <= t1]
    if len(pts) < 2 or pts[-1][0] <= pts[0][0]:
        return 0.0
    return (pts[-1][1] - pts[0][1]) / (pts[-1][0] - pts[0][0])


def run_dir(store: Path, before: set[str], timeout: float = 60.0) -> Path:
    """The run folder that appeared in `store` since `before`."""
    end = time.time() + timeout
    while time.time() < end:
        new = [p for p in store.iterdir() if p.is_dir() and not p.name.startswith(".") and p.name not in before] \
            if store.exists() else []
        if new:
            return new[0]
        time.sleep(0.2)
    raise RuntimeError(f"no new run folder in {store} after {timeout:.0f} s")


def wait_steps(metrics: Path, n: int, timeout: float) -> None:
    end = time.time() + timeout
    while time.time() < end:
        if len(step_walls(metrics)) >= n:
            return
        time.sleep(0.2)
    raise RuntimeError(f"{metrics.parent.name}: fewer than {n} steps after {timeout:.0f} s")


class Bench:
    """One server, one browser page; windows per preset."""

    def __init__(self, args: argparse.Namespace, server: StreamlitServer, page: Any, app_store: Path,
                 cli_store: Path):
        self.args, self.server, self.page = args, server, page
        self.app_store, self.cli_store = app_store, cli_store

    def launch(self, preset: str) -> tuple[str, Path]:
        page = self.page
        goto(page, self.server.url, timeout=PAGE_TIMEOUT_MS)
        select_option(page, "Preset", preset)
        fill_number(page, "Training subset (0 = all)", SUBSET)
        fill_number(page, "Validation images", VAL)
        fill_number(page, "Epochs", EPOCHS)
        before = {p.name for p in self.app_store.iterdir()} if self.app_store.exists() else set()
        click_button(page, "Launch", timeout=PAGE_TIMEOUT_MS)
        folder = run_dir(self.app_store, before)
        wait_steps(folder / "metrics.jsonl", 20, 180)
        return folder.name, folder

    def follow(self, rid: str) -> None:
        """A fresh session of the Train page showing the run (from a blank page, as a new tab would)."""
        self.page.goto("about:blank")
        goto(self.page, f"{self.server.url}/?run={rid}", timeout=PAGE_TIMEOUT_MS)
        expect_text(self.page, "steps recorded", timeout=PAGE_TIMEOUT_MS)

    def control(self, rid: str, button: str, after: str | re.Pattern) -> None:
        self.follow(rid)
        click_button(self.page, button, timeout=PAGE_TIMEOUT_MS)
        expect_text(self.page, after, timeout=PAGE_TIMEOUT_MS)
        self.page.goto("about:blank")

    def cli_window(self, preset: str, rid: str) -> tuple[float, float, float, dict]:
        """Pause the app job, train the same recipe with the CLI for a window, resume the app job."""
        self.control(rid, "Pause", "Paused — press Resume to continue.")
        before = {p.name for p in self.cli_store.iterdir()} if self.cli_store.exists() else set()
        env = {**os.environ, "CNNLAB_CHECKPOINT_DIR": str(self.cli_store)}
        cmd = [sys.executable, "-m", "cnnlab", "train", "--preset", preset, "--subset", str(SUBSET),
               "--val-size", str(VAL), "--epochs", str(EPOCHS), "--quiet", "--name", "bench cli"]
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                start_new_session=True)
        try:
            folder = run_dir(self.cli_store, before, timeout=180)
            wait_steps(folder / "metrics.jsonl", 20, 180)
            time.sleep(self.args.settle)
            t0 = time.time()
            time.sleep(self.args.window)
            t1 = time.time()
            time.sleep(1.0)  # the recorder flushes every 0.5 s
            r = rate(folder / "metrics.jsonl", t0, t1)
            recipe = json.loads((folder / "config.json").read_text()).get("recipe")
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        self.control(rid, "Resume", re.compile(r"^Training…"))
        return r, t0, t1, recipe

    def page_window(self, mode: str, rid: str, metrics: Path) -> tuple[float, float, float]:
        if mode == "open":
            self.follow(rid)
        else:
            self.page.goto("about:blank")
        time.sleep(self.args.settle)
        t0 = time.time()
        time.sleep(self.args.window)
        t1 = time.time()
        time.sleep(1.0)
        return rate(metrics, t0, t1), t0, t1

    def preset(self, preset: str) -> dict:
        rid, folder = self.launch(preset)
        metrics = folder / "metrics.jsonl"
        app_recipe = json.loads((folder / "config.json").read_text()).get("recipe")
        rates: dict[str, list[float]] = {"open": [], "none": [], "cli": []}
        windows = []
        same_recipe = None
        for mode in self.args.order:
            load = os.getloadavg()[0]
            if mode == "cli":
                r, t0, t1, cli_recipe = self.cli_window(preset, rid)
                same_recipe = cli_recipe == app_recipe if same_recipe is None else same_recipe
            else:
                r, t0, t1 = self.page_window(mode, rid, metrics)
            rates[mode].append(r)
            windows.append({"mode": mode, "steps_s": round(r, 2), "load": round(load, 2)})
            print(f"  {preset} {mode:>4}: {r:7.1f} steps/s  (load {load:.1f})", flush=True)
        self.control(rid, "Stop", re.compile(r"stopped by the user"))
        mean = {m: statistics.fmean(v) if v else None for m, v in rates.items()}
        cli = mean["cli"]
        out = {"preset": preset, "steps_s": {m: round(v, 2) if v else v for m, v in mean.items()},
               "open_over_cli": round(mean["open"] / cli, 3) if cli and mean["open"] else None,
               "none_over_cli": round(mean["none"] / cli, 3) if cli and mean["none"] else None,
               "same_recipe": same_recipe, "windows": windows}
        print(f"{preset}: open {mean['open']:.1f}, no page {mean['none']:.1f}, CLI {cli:.1f} steps/s -> "
              f"open/CLI {out['open_over_cli']}, no page/CLI {out['none_over_cli']}"
              + ("" if same_recipe else "  (WARNING: the CLI's recipe differs from the page's)"), flush=True)
        return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--presets", default="seed002,seed004", help="comma-separated presets")
    ap.add_argument("--window", type=float, default=15.0, help="seconds measured per window")
    ap.add_argument("--settle", type=float, default=3.0, help="seconds before each window starts")
    ap.add_argument("--order", default="cli,open,none,none,open,cli",
                    help="windows per preset: open, none, cli (default: each mode at the same mean position)")
    ap.add_argument("--threads", type=int, default=0,
                    help="CNNLAB_THREADS for the app's job and the CLI (0: their default, every core)")
    ap.add_argument("--keep-store", action="store_true", help="keep the temporary run stores")
    args = ap.parse_args()
    args.order = [m.strip() for m in args.order.split(",") if m.strip()]
    if set(args.order) - {"open", "none", "cli"} or not set(args.order) >= {"open", "none", "cli"}:
        ap.error("--order: each of open, none, cli at least once, nothing else")
    reason = browser_unavailable_reason()
    if reason:
        print(f"cannot run: {reason}", file=sys.stderr)
        return 2
    from playwright.sync_api import sync_playwright

    tmp = Path(tempfile.mkdtemp(prefix="bench-page-open-"))
    app_store, cli_store = tmp / "app", tmp / "cli"
    env = {"CNNLAB_CHECKPOINT_DIR": str(app_store), "CNNLAB_DOWNLOAD": "0",
           "CNNLAB_DATA_DIR": os.environ.get("CNNLAB_DATA_DIR") or str(REPO.parent / "shared" / "data")}
    if args.threads:
        env["CNNLAB_THREADS"] = str(args.threads)
    os.environ.update({k: v for k, v in env.items() if k != "CNNLAB_CHECKPOINT_DIR"})
    print(f"load average at start: {os.getloadavg()}; {os.cpu_count()} CPUs", flush=True)
    results, errors = [], []
    server = StreamlitServer(REPO / "app.py", env=env, cwd=REPO, startup_timeout=120)
    server.start()
    try:
        with sync_playwright() as p:
            browser = launch_browser(p)
            try:
                context = browser.new_context(viewport=VIEWPORT)
                context.set_default_timeout(PAGE_TIMEOUT_MS)
                page = context.new_page()
                attach_error_collectors(page)
                bench = Bench(args, server, page, app_store, cli_store)
                for preset in [s.strip() for s in args.presets.split(",") if s.strip()]:
                    results.append(bench.preset(preset))
                errors += [f"exception block: {e[:300]}" for e in get_exception_blocks(page)] + page.errors
            finally:
                browser.close()
    finally:
        server.stop()
        if not args.keep_store:
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"load average at end: {os.getloadavg()}", flush=True)
    for e in errors:
        print(f"error: {e}", flush=True)
    print(json.dumps({"results": results, "errors": errors, "window_s": args.window, "order": args.order,
                      "store": str(tmp) if args.keep_store else None}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
