"""`python -m cnnlab runs|resume|fork` on real MNIST subsets: real subprocesses where a process must die or
start fresh (SIGKILL, resume, `runs --json`), `cli.main` in-process elsewhere (each subprocess pays for
importing torch and loading MNIST: seconds on a busy 2-core machine)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from cnnlab.cli import main
from cnnlab.runs import read_jsonl

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def store(tmp_path) -> Path:
    return Path(os.environ["CNNLAB_CHECKPOINT_DIR"])  # conftest: a fresh folder per test


@pytest.fixture
def env(store) -> dict:
    return {**os.environ, "CNNLAB_CHECKPOINT_DIR": str(store), "CNNLAB_DOWNLOAD": "0", "PYTHONPATH": str(ROOT)}


def cli(env: dict, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cnnlab", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)


def last_json(out: str) -> dict:
    return json.loads(out.strip().splitlines()[-1])


def run_main(capsys, *args: str) -> tuple[int, str]:
    """`python -m cnnlab ARGS` in this process, with 1 torch thread like a job: (exit code, stdout)."""
    capsys.readouterr()
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        code = main(list(args))
    finally:
        torch.set_num_threads(before)
    return code, capsys.readouterr().out


def test_sigkilled_training_is_interrupted_and_resume_finishes_it(env, store, capsys) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "cnnlab", "train", "--preset", "seed002", "--subset", "3000",
                             "--epochs", "3", "--val-size", "500", "--quiet"], cwd=ROOT,
                            env={**env, "OMP_NUM_THREADS": "1"},  # as jobs do: 2 threads crawl on a busy 2-core box
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        run_dir = None
        while time.monotonic() < deadline:  # wait until epoch 1 is saved, then kill mid-epoch 2
            dirs = [p for p in store.glob("*") if p.is_dir() and not p.name.startswith(".")] if store.exists() else []
            if dirs:
                run_dir = dirs[0]
                try:
                    if json.loads((run_dir / "status.json").read_text()).get("epoch", 0) >= 1:
                        break
                except (OSError, ValueError):
                    pass
            assert proc.poll() is None, "training ended before it could be killed"
            time.sleep(0.02)
        else:
            pytest.fail("the first epoch never finished")
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    run_id = run_dir.name
    before = read_jsonl(run_dir / "metrics.jsonl")
    code, out = run_main(capsys, "runs", "--json")  # what any later process sees
    assert code == 0
    (info,) = json.loads(out)
    assert info["id"] == run_id and info["status"] == "interrupted" and info["preset"] == "seed002"
    assert info["epochs"] in (1, 2) and info["best_val_acc"] > 0.5 and info["test_acc"] is None
    assert info["params"] == 30840 and info["error"] is None
    assert [r["epoch"] for r in before if r["kind"] == "epoch"][:1] == [1]

    r = cli(env, "resume", run_id, "--json")
    assert r.returncode == 0, r.stderr
    final = last_json(r.stdout)
    assert final["status"] == "done" and final["run_id"] == run_id and final["epochs"] == 3
    assert final["test_acc"] > 0.8 and final["steps"] == 3 * 94
    assert json.loads((run_dir / "result.json").read_text())["test_acc"] == final["test_acc"]
    metrics = read_jsonl(run_dir / "metrics.jsonl")
    assert [r["step"] for r in metrics if r["kind"] == "step"] == list(range(1, 3 * 94 + 1))
    assert [r["epoch"] for r in metrics if r["kind"] == "epoch"] == [1, 2, 3]
    assert metrics[: len([r for r in before if r["step"] <= 94])] == [r for r in before if r["step"] <= 94]
    assert [e["event"] for e in read_jsonl(run_dir / "events.jsonl")] == ["resumed"]
    status = json.loads((run_dir / "status.json").read_text())
    assert status["status"] == "done" and status["test_acc"] == final["test_acc"] and status["epoch"] == 3


def test_corrupt_weights_do_not_break_runs_and_fork_from_a_saved_epoch(env, store, capsys, mnist) -> None:
    code, out = run_main(capsys, "train", "--preset", "seed002", "--subset", "512", "--epochs", "1",
                         "--val-size", "500", "--json", "--quiet")
    assert code == 0, out
    good = last_json(out)["run_id"]
    broken = "20000101-000000-broken-0000"
    shutil.copytree(store / good, store / broken)
    (store / broken / "last.pt").write_bytes(b"PK\x03\x04 truncated")
    unreadable = "20000101-000000-unreadable-0000"
    shutil.copytree(store / good, store / unreadable)
    (store / unreadable / "config.json").write_text("{not json")

    code, out = run_main(capsys, "runs", "--json")
    assert code == 0
    listed = {i["id"]: i for i in json.loads(out)}
    assert listed.keys() == {good, broken, unreadable}
    assert listed[good]["status"] == "done" and listed[good]["error"] is None and listed[good]["test_acc"] > 0.2
    assert listed[broken]["status"] == "error" and "last.pt" in listed[broken]["error"]
    assert listed[unreadable]["status"] == "error" and "config.json" in listed[unreadable]["error"]
    code, out = run_main(capsys, "runs")
    assert code == 0 and good in out and "error: " in out

    code, out = run_main(capsys, "fork", good, "--epoch", "1", "--epochs", "2", "--lr", "0.0005", "--json", "--quiet")
    assert code == 0, out
    final = last_json(out)
    child = final["run_id"]
    assert final["status"] == "done" and child != good and final["epochs"] == 2 and final["steps"] == 2 * 16
    code, out = run_main(capsys, "runs", "--json")
    listed = {i["id"]: i for i in json.loads(out)}
    assert listed[child]["parent"] == {"run_id": good, "epoch": 1} and listed[child]["status"] == "done"
    steps = [r["step"] for r in read_jsonl(store / child / "metrics.jsonl") if r["kind"] == "step"]
    assert steps == list(range(17, 33))  # the fork's curve continues the parent's numbering

    code, out = run_main(capsys, "fork", good, "--epoch", "5", "--epochs", "6", "--json")
    assert code == 2 and "saved epochs: 1" in last_json(out)["error"]
    code, out = run_main(capsys, "resume", good, "--json")  # done: refused with a message
    assert code == 2 and "fork it" in last_json(out)["error"]
