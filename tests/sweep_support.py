"""Helpers for the tests that start Ray: the loopback-only rule, a per-test Ray temp dir, a `ray start` head.

Ray advertises the machine's own address even for a local instance, so every test that starts Ray runs
inside a network namespace whose only interface is loopback (`../shared/tools/loopback-only`; `.ci/run`
runs the whole suite in one). Outside such a namespace these tests skip, unless CNNLAB_REQUIRE_RAY=1
(CI sets it), in which case they fail.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def loopback_only() -> bool:
    """True inside a network namespace whose only interface is `lo`."""
    try:
        return [name for _, name in socket.if_nameindex()] == ["lo"]
    except OSError:
        return False


def require_ray() -> None:
    """Skip (or, with CNNLAB_REQUIRE_RAY=1, fail) unless Ray can run here safely."""
    reason = None
    try:
        import ray  # noqa: F401
    except ImportError:
        reason = "ray is not installed (pip install -r requirements.txt)"
    if reason is None and not loopback_only():
        reason = ("Ray tests run only inside a loopback-only network namespace: "
                  "../shared/tools/loopback-only python -m pytest tests/test_sweep_ray.py")
    if reason is None:
        return
    if os.environ.get("CNNLAB_REQUIRE_RAY"):
        pytest.fail(f"CNNLAB_REQUIRE_RAY is set but {reason}", pytrace=False)
    pytest.skip(reason)


def short_tmp(prefix: str) -> Path:
    """A short temp dir (Ray's socket paths must stay under 107 bytes, pytest's tmp_path can be long)."""
    return Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))


def sweep_env(store: Path, ray_tmp: Path, **extra: str) -> dict:
    env = {**os.environ, "CNNLAB_CHECKPOINT_DIR": str(store), "RAY_TMPDIR": str(ray_tmp),
           "RAY_USAGE_STATS_ENABLED": "0", **extra}
    env.pop("RAY_ADDRESS", None)
    return env


def cli(args: list[str], env: dict, timeout: float = 900) -> subprocess.CompletedProcess:
    """`python -m cnnlab ARGS` in the repo root."""
    return subprocess.run([sys.executable, "-m", "cnnlab", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)


def last_json(out: subprocess.CompletedProcess) -> dict | list:
    lines = out.stdout.strip().splitlines()
    assert lines, f"no output; stderr:\n{out.stderr[-3000:]}"
    return json.loads(lines[-1])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RayHead:
    """`ray start --head --block` on 127.0.0.1 with token auth, in its own process group.

    Ended by killing that group (TERM, then KILL): never `ray stop`, which would stop every Ray on the
    machine, other sessions' included.
    """

    def __init__(self, cpus: int = 2):
        self.port = free_port()
        self.tmp = short_tmp("rh-")
        self.token = secrets.token_hex(16)
        self.env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": self.token,
                    "RAY_USAGE_STATS_ENABLED": "0", "RAY_worker_niceness": "0"}
        self.env.pop("RAY_ADDRESS", None)
        self.log = open(self.tmp / "head.log", "wb")
        ray_bin = str(Path(sys.executable).with_name("ray"))
        self.proc = subprocess.Popen(
            [ray_bin, "start", "--head", "--block", "--port", str(self.port), "--node-ip-address", "127.0.0.1",
             "--num-cpus", str(cpus), "--include-dashboard", "false", "--temp-dir", str(self.tmp / "r")],
            env=self.env, stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float = 300) -> None:
        """Until the head's GCS answers (a cluster's raylet registers soon after)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, (self.tmp / "head.log").read_text(errors="replace")[-3000:]
            if "Ray runtime started" in (self.tmp / "head.log").read_text(errors="replace"):
                return
            time.sleep(1)
        raise AssertionError("ray start --head did not come up:\n"
                             + (self.tmp / "head.log").read_text(errors="replace")[-3000:])

    def stop(self) -> None:
        for sig, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.proc.wait(wait)
                break
            except subprocess.TimeoutExpired:
                continue
        self.log.close()
        shutil.rmtree(self.tmp, ignore_errors=True)
