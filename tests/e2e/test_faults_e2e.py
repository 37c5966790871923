"""Faults in a real browser: the Streamlit process SIGKILLed mid-training, and a tab closed mid-run.

(a) kill -9 while a run trains: every file on disk is whole (JSON parses, last.pt loads with
    weights_only=True); after a restart the page lists the run as interrupted with its saved epochs and
    its curve, Resume finishes it without repeating a step, and result.json holds the test accuracy.
(b) the only tab following a run closes: the job keeps training (metrics.jsonl keeps growing), and a new
    tab finds it on the Train page and follows it live.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import torch

from .conftest import REPO_ROOT
from .harness import (
    VIEWPORT,
    attach_error_collectors,
    click_button,
    expect_text,
    fill_number,
    fill_text,
    get_exception_blocks,
    goto,
    select_option,
    wait_for_app,
)
from .test_train_e2e import _expect_shown_run, _steps_recorded, _wait_steps_above

# what a browser logs while its server is gone (websocket and health polling), nothing else
DOWNTIME_ERRORS = re.compile(r"WebSocket|ERR_CONNECTION_REFUSED|Failed to load resource|connection|network",
                             re.IGNORECASE)


def _env(ckpt: Path) -> dict:
    return {"CNNLAB_CHECKPOINT_DIR": str(ckpt), "CNNLAB_DOWNLOAD": "0",
            "CNNLAB_DATA_DIR": os.environ.get("CNNLAB_DATA_DIR") or str(REPO_ROOT.parent / "shared" / "data")}


def _launch(page, name: str, subset: int, epochs: int) -> None:
    select_option(page, "Preset", "seed002")
    fill_number(page, "Training subset (0 = all)", subset)
    fill_number(page, "Validation images", 500)
    fill_number(page, "Epochs", epochs)
    fill_text(page, "Run name (optional)", name)
    click_button(page, "Launch")
    _expect_shown_run(page, re.compile(rf"^{re.escape(name)} · seed002$"))


def _run_dir(ckpt: Path, timeout: float = 30.0) -> Path:
    deadline = time.time() + timeout
    while time.time() < deadline:
        dirs = [p for p in ckpt.iterdir() if p.is_dir() and not p.name.startswith(".")] if ckpt.exists() else []
        if dirs:
            assert len(dirs) == 1, dirs
            return dirs[0]
        time.sleep(0.1)
    raise AssertionError("no run folder appeared")


def _status(run: Path) -> dict:
    try:
        return json.loads((run / "status.json").read_text())
    except (OSError, ValueError):
        return {}


def _wait_status(run: Path, pred, timeout: float, what: str) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        st = _status(run)
        if pred(st):
            return st
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; status: {_status(run)}")


def _step_lines(run: Path) -> list[int]:
    steps = []
    for line in (run / "metrics.jsonl").read_text().splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if rec.get("kind") == "step":
            steps.append(rec["step"])
    return steps


def _assert_files_whole(run: Path) -> None:
    """No half-written file: JSON parses, JSONL lines parse (a flushed line is whole), .pt files load."""
    from cnnlab.runlock import LOCK_NAME

    for f in sorted(run.iterdir()):
        if f.name == LOCK_NAME:  # the writer lock file stays (empty); the kernel released its lock
            continue
        assert not f.name.startswith("."), f"temp file left behind: {f.name}"
        if f.suffix == ".json":
            assert isinstance(json.loads(f.read_text()), dict), f.name
        elif f.suffix == ".jsonl":
            data = f.read_bytes()
            for line in data.split(b"\n")[:-1]:
                json.loads(line)
        elif f.suffix == ".pt":
            obj = torch.load(f, map_location="cpu", weights_only=True)
            assert isinstance(obj, dict) and "model" in obj, f.name


def _assert_clean(page, since: int = 0) -> None:
    assert get_exception_blocks(page) == []
    assert page.errors[since:] == []


def test_sigkill_mid_training_then_restart_and_resume(streamlit_server, page, tmp_path):
    ckpt = tmp_path / "checkpoints"
    server = streamlit_server(REPO_ROOT / "app.py", env=_env(ckpt))
    goto(page, server.url)
    _launch(page, "crash me", subset=3000, epochs=4)
    run = _run_dir(ckpt)
    st = _wait_status(run, lambda s: (s.get("epoch") or 0) >= 1, 120, "epoch 1 saved")
    assert st["status"] == "running"
    _assert_clean(page)

    server.kill9()  # the whole process group, as a crash or an OOM kill would
    assert not server.running
    _assert_files_whole(run)
    killed = _status(run)
    assert killed["status"] == "running" and killed["epoch"] >= 1  # nobody had the chance to say otherwise
    saved_epochs = killed["epoch"]
    steps_before = _step_lines(run)
    assert steps_before == sorted(set(steps_before))

    n_down = len(page.errors)
    server.restart()
    page.reload()  # the URL still carries ?run=<id>
    wait_for_app(page)
    assert all(DOWNTIME_ERRORS.search(e) for e in page.errors[:n_down]), page.errors
    since = len(page.errors)

    # listed as interrupted, with its saved epochs; its curve is drawn from the store
    n = saved_epochs
    expect_text(page, f"interrupted — the app stopped while it trained; {n} epoch{'s' if n != 1 else ''} saved "
                      "of 4", timeout=20_000)
    _expect_shown_run(page, re.compile(r"^crash me · seed002$"))
    assert _steps_recorded(page) >= 94 * n  # 3000 / 32 = 94 steps per epoch
    _assert_clean(page, since)

    click_button(page, "Resume from last epoch")
    expect_text(page, re.compile(r"^Training…|^Done"), timeout=30_000)
    _wait_status(run, lambda s: s.get("status") == "done", 240, "the resumed run to finish")
    expect_text(page, re.compile(r"^Done: best validation accuracy"), timeout=30_000)
    steps = _step_lines(run)
    assert steps == sorted(set(steps)), "a step was written twice"
    assert steps[-1] == 4 * 94 and len(steps) == 4 * 94
    result = json.loads((run / "result.json").read_text())
    assert 0.5 < result["test_acc"] <= 1.0
    events = [json.loads(x) for x in (run / "events.jsonl").read_text().splitlines()]
    assert [e["event"] for e in events].count("resumed") == 1
    assert _steps_recorded(page) == len(steps)
    _assert_clean(page, since)


def test_closed_tab_keeps_training_and_a_new_tab_finds_it(streamlit_server, browser, tmp_path):
    ckpt = tmp_path / "checkpoints"
    server = streamlit_server(REPO_ROOT / "app.py", env=_env(ckpt))
    ctx = browser.new_context(viewport=VIEWPORT)
    tab = ctx.new_page()
    attach_error_collectors(tab)
    goto(tab, server.url)
    _launch(tab, "orphan", subset=3000, epochs=30)
    _wait_steps_above(tab, 5)
    _assert_clean(tab)
    run = _run_dir(ckpt)
    ctx.close()  # the only viewer is gone

    time.sleep(1.0)  # the recorder flushes every 0.5 s
    a = len(_step_lines(run))
    time.sleep(3.0)
    b = len(_step_lines(run))
    assert b > a, "training stopped when its tab closed"
    assert _status(run)["status"] == "running"

    ctx2 = browser.new_context(viewport=VIEWPORT)
    try:
        tab2 = ctx2.new_page()
        attach_error_collectors(tab2)
        goto(tab2, server.url)  # no ?run=: a fresh session finds the active job by itself
        _expect_shown_run(tab2, re.compile(r"^orphan · seed002$"), timeout=20_000)
        expect_text(tab2, re.compile(r"^Training…"))
        shown = _wait_steps_above(tab2, b - 1)
        _wait_steps_above(tab2, shown)  # live: it keeps growing in the new tab
        click_button(tab2, "Stop")
        expect_text(tab2, re.compile(r"stopped by the user at step \d+"), timeout=30_000)
        _assert_clean(tab2)
    finally:
        ctx2.close()
