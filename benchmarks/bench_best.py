"""The `best` preset's bar (issue 15): >= 99.5% test accuracy within 1.5x one classic seed-004 epoch.

One run measures, in this order:
  (a) the baseline: one epoch of the classic torchvision DataLoader + ToTensor/Normalize loop on seed 004's
      network, Adam, batch 64, all 60k images (bench_engine.run_classic: only the epoch is timed);
  (b) `python -m cnnlab train --preset best --json --seed S` for each seed, as a fresh process that saves
      its run (into a temporary store): wall clock from starting the process to its printed JSON result,
      Python and torch imports included, and the test accuracy from that JSON line;
  (c) `fast` the same way.
It prints each run's ratio to the baseline, the accuracies, whether the bars hold, then one JSON line.

    CNNLAB_DATA_DIR=/work/shared/data python benchmarks/bench_best.py [--seeds 0,1,2] [--classic-rounds 2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_engine import data_root, run_classic, run_preset  # noqa: E402

MAX_RATIO = 1.5  # process start to result <= 1.5x one classic epoch
MIN_MEAN_ACC = 0.995
MIN_EACH_ACC = 0.9945


def _line(preset: str, m: dict, base: float) -> str:
    return (f"{preset:<5} seed {m['seed']}: process {m['process_s']:6.2f} s = {m['process_s'] / base:.2f}x baseline"
            f"  (after imports {m['wall_s']:6.2f} s)  test acc {m['test_acc']:.4f}")


def verdict(best: list[dict], base: float) -> dict:
    """The bars of issue 15 over the best runs: mean and each seed's accuracy, and every run's ratio."""
    accs = [m["test_acc"] for m in best]
    ratios = [m["process_s"] / base for m in best]
    out = {"mean_acc": statistics.fmean(accs), "min_acc": min(accs), "max_ratio": max(ratios),
           "median_ratio": statistics.median(ratios)}
    out["acc_ok"] = out["mean_acc"] >= MIN_MEAN_ACC and out["min_acc"] >= MIN_EACH_ACC
    out["time_ok"] = out["max_ratio"] <= MAX_RATIO
    out["ok"] = out["acc_ok"] and out["time_ok"]
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="0,1,2", help="comma-separated seeds of the best runs")
    ap.add_argument("--classic-rounds", type=int, default=1,
                    help="classic epochs: the first before the runs, the others after (baseline: their median)")
    ap.add_argument("--skip-fast", action="store_true")
    ap.add_argument("--train-args", default="", help="extra `train` options for the best runs, e.g. '--epochs 4' "
                                                    "(to time a variant of the recipe)")
    ap.add_argument("--store", help="run store to keep the runs in (default: a temporary one); e.g. to record "
                                    "them with `CNNLAB_CHECKPOINT_DIR=STORE python -m cnnlab reproduce best "
                                    "--from-runs ID ...`")
    args = ap.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    root = data_root()
    print(f"load {os.getloadavg()[0]:.1f}; classic epoch (60k images, batch 64, Adam) ...", flush=True)
    classic = [run_classic(None, 4, root)]
    print(f"classic  epoch {classic[0]['epoch_s']:6.2f} s", flush=True)
    store = args.store or str(Path(tempfile.mkdtemp(prefix="bench-best-")) / "checkpoints")
    env = {**os.environ, "CNNLAB_CHECKPOINT_DIR": store}
    best = []
    for s in seeds:
        best.append(run_preset("best", s, "--quiet", *args.train_args.split(), env=env))
        print(_line("best", best[-1], classic[0]["epoch_s"]), flush=True)
    fast = [] if args.skip_fast else [run_preset("fast", seeds[0], "--quiet", env=env)]
    for _ in range(args.classic_rounds - 1):
        classic.append(run_classic(None, 4, root))
        print(f"classic  epoch {classic[-1]['epoch_s']:6.2f} s", flush=True)
    base = statistics.median(m["epoch_s"] for m in classic)
    print(f"baseline (classic epoch): {base:.2f} s; load {os.getloadavg()[0]:.1f}")
    for m in best + fast:
        print(_line("best" if m in best else "fast", m, base))
    v = verdict(best, base)
    print(f"best: mean test acc {v['mean_acc']:.4f} (bar {MIN_MEAN_ACC}), min {v['min_acc']:.4f} (bar {MIN_EACH_ACC}), "
          f"max ratio {v['max_ratio']:.2f} (bar {MAX_RATIO}) -> {'PASS' if v['ok'] else 'FAIL'}")
    print(json.dumps({"baseline_s": round(base, 2), "classic_epochs_s": [round(m["epoch_s"], 2) for m in classic],
                      "best": best, "fast": fast, **v, "time": time.strftime("%Y-%m-%d %H:%M:%S")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
