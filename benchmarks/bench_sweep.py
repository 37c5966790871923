"""Overhead of a sweep on Ray Tune vs the same trials one after another with `python -m cnnlab train`.

Four short trials (seed002, 1 epoch, 2,000 images, four learning rates): once as
`python -m cnnlab sweep --search grid --param lr=choice:...` on a local Ray (two at once on two cores),
once as four sequential `python -m cnnlab train` processes. Both wall times include process start,
imports, MNIST loading and the test pass; the sweep's also includes starting Ray and its workers.
Prints both and their ratio (sweep / sequential: below 1 means the sweep was faster).

Ray must run inside a loopback-only network namespace:
    ../shared/tools/loopback-only python benchmarks/bench_sweep.py [--subset 2000] [--epochs 1]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.sweep_support import loopback_only  # noqa: E402

LRS = ("0.0005", "0.001", "0.003", "0.01")


def _run(args: list[str], env: dict) -> tuple[float, dict]:
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "cnnlab", *args, "--json"], cwd=ROOT, env=env,
                         capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if out.returncode != 0:
        raise SystemExit(f"failed: {' '.join(args)}\n{out.stderr[-3000:]}")
    return wall, json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--subset", type=int, default=2000)
    ap.add_argument("--epochs", type=int, default=1)
    args = ap.parse_args()
    if not loopback_only():
        raise SystemExit("run me inside a loopback-only namespace: ../shared/tools/loopback-only python "
                         "benchmarks/bench_sweep.py")
    tmp = Path(tempfile.mkdtemp(prefix="bsw-", dir="/tmp"))
    env = {**os.environ, "CNNLAB_CHECKPOINT_DIR": str(tmp / "ck"), "RAY_TMPDIR": str(tmp / "r"),
           "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("RAY_ADDRESS", None)
    common = ["--preset", "seed002", "--epochs", str(args.epochs), "--subset", str(args.subset)]
    try:
        seq_wall, seq = 0.0, []
        for lr in LRS:
            wall, res = _run(["train", *common, "--lr", lr, "--quiet"], env)
            seq_wall += wall
            seq.append(res["test_acc"])
        sweep_wall, res = _run(["sweep", *common, "--trials", str(len(LRS)), "--search", "grid",
                                "--param", f"lr=choice:{','.join(LRS)}", "--quiet"], env)
        by_lr = {t["params"]["lr"]: t["test_acc"] for t in res["trials"]}
        print(f"sequential train x{len(LRS)}: {seq_wall:.1f} s  test acc {', '.join(f'{a:.4f}' for a in seq)}")
        print(f"sweep ({len(res['trials'])} trials, local Ray, {os.cpu_count()} cores): {sweep_wall:.1f} s  "
              f"test acc {', '.join(f'{by_lr[float(lr)]:.4f}' for lr in LRS)}")
        print(f"ratio sweep / sequential: {sweep_wall / seq_wall:.2f}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
