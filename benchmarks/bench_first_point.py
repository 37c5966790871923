"""From Launch to the first curve point on the Train page, and what the page says meanwhile (issue 15).

    CNNLAB_DATA_DIR=/work/shared/data python benchmarks/bench_first_point.py [--preset fast] [--rounds 3]

A real `streamlit run app.py` on 127.0.0.1 and Debian's headless Chromium (the e2e harness). Each round is a
new user's first Launch: a fresh server and run store, the Train page opened and left `--warm` seconds (the
server's spare training process loads torch and MNIST), the preset picked, Launch pressed; then, every 50 ms,
the page is read: the status line's text (each new one is printed with its time) and whether the curves chart
of the new run (the page's ?run= is the new one) has a point. The baseline, measured in the same round: when the run's first step record reached metrics.jsonl (the job's
own latency, from the click); the page's share is the difference. Each run is stopped once it has a point.
No assertion: a benchmark reports, the README records.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import parse_qs, urlparse

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench_page_open import run_dir, step_walls  # noqa: E402
from tests.e2e.harness import (  # noqa: E402
    BUTTONS,
    VIEWPORT,
    StreamlitServer,
    browser_unavailable_reason,
    click_button,
    expect_text,
    goto,
    launch_browser,
    select_option,
)

# the curves chart (its Streamlit key is train_chart) holds at least one point
HAS_POINT_JS = """() => Array.from(document.querySelectorAll('.st-key-train_chart .js-plotly-plot'))
    .some(p => (p.data || []).some(t => t.x && t.x.length > 0))"""
STATUS_JS = """() => Array.from(document.querySelectorAll('[data-testid="stAlert"]'))
    .map(a => a.innerText.trim()).filter(t => /^(Starting|Queued|Training|Loading|Building|Waiting)/.test(t))
    .join(' | ')"""


def _shown_run(url: str) -> str | None:
    """The run the page shows: its ?run= (Launch sets it to the new run)."""
    return (parse_qs(urlparse(url).query).get("run") or [None])[0]


def one_round(page, url: str, store: Path, preset: str, timeout: float) -> dict:
    goto(page, url, timeout=180_000)
    select_option(page, "Preset", preset)
    before = {p.name for p in store.iterdir()} if store.exists() else set()
    launch = page.locator(BUTTONS).get_by_role("button", name=re.compile(r"^\s*Launch\s*$")).first
    launch.wait_for(state="visible", timeout=60_000)
    shown_before = _shown_run(page.url)  # the page may show an earlier run (and its curve) until Launch
    t0 = time.time()
    launch.click()  # no wait for the page's rerun: the clock runs from the click
    seen, point_s, first_step_s, folder = [], None, None, None
    while time.time() - t0 < timeout and point_s is None:
        status = page.evaluate(STATUS_JS)
        if status and (not seen or seen[-1][1] != status):
            seen.append((round(time.time() - t0, 2), status[:120]))
        if _shown_run(page.url) not in (None, shown_before) and page.evaluate(HAS_POINT_JS):
            point_s = time.time() - t0
        if folder is None:
            try:
                folder = run_dir(store, before, timeout=0.01)
            except RuntimeError:
                pass
        time.sleep(0.05)
    if folder is not None:
        walls = step_walls(folder / "metrics.jsonl")
        first_step_s = walls[0][0] - t0 if walls else None
    click_button(page, "Stop", timeout=60_000)
    expect_text(page, re.compile(r"stopped by the user|Done"), timeout=120_000)
    return {"point_s": point_s, "first_step_s": first_step_s, "status_lines": seen}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="fast")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for a point per round")
    ap.add_argument("--warm", type=float, default=10.0, help="seconds between opening the page and Launch")
    args = ap.parse_args()
    reason = browser_unavailable_reason()
    if reason:
        print(f"cannot run: {reason}", file=sys.stderr)
        return 2
    from playwright.sync_api import sync_playwright

    tmp = Path(tempfile.mkdtemp(prefix="bench-first-point-"))
    store = tmp / "app"
    env = {"CNNLAB_CHECKPOINT_DIR": str(store), "CNNLAB_DOWNLOAD": "0",
           "CNNLAB_DATA_DIR": os.environ.get("CNNLAB_DATA_DIR") or str(REPO.parent / "shared" / "data")}
    print(f"load average at start: {os.getloadavg()}; {os.cpu_count()} CPUs", flush=True)
    rounds = []
    fmt = lambda x: "-" if x is None else f"{x:.2f} s"  # noqa: E731
    with sync_playwright() as p:
        browser = launch_browser(p)
        try:
            for i in range(args.rounds):  # a fresh server and store each round: a new user's first Launch
                shutil.rmtree(store, ignore_errors=True)
                server = StreamlitServer(REPO / "app.py", env=env, cwd=REPO, startup_timeout=120)
                server.start()
                try:
                    ctx = browser.new_context(viewport=VIEWPORT)
                    ctx.set_default_timeout(180_000)
                    page = ctx.new_page()
                    goto(page, server.url, timeout=180_000)
                    time.sleep(args.warm)  # the server's spare training process warms up (torch, MNIST, a step)
                    r = one_round(page, server.url, store, args.preset, args.timeout)
                    ctx.close()
                finally:
                    server.stop()
                rounds.append(r)
                print(f"round {i + 1}: first step on disk {fmt(r['first_step_s'])}, first point on the page "
                      f"{fmt(r['point_s'])} after Launch", flush=True)
                for t, s_ in r["status_lines"]:
                    print(f"    {t:6.2f} s  {s_}", flush=True)
        finally:
            browser.close()
            shutil.rmtree(tmp, ignore_errors=True)
    pts = [r["point_s"] for r in rounds if r["point_s"] is not None]
    steps = [r["first_step_s"] for r in rounds if r["first_step_s"] is not None]
    if pts and steps:
        print(f"median: first step {statistics.median(steps):.2f} s, first point {statistics.median(pts):.2f} s "
              f"after Launch (the page's share {statistics.median(pts) - statistics.median(steps):.2f} s)")
    print(f"load average at end: {os.getloadavg()}", flush=True)
    print(json.dumps({"preset": args.preset, "rounds": rounds}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
