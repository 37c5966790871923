"""Cost of the layer-health statistics (cnnlab.health) on training throughput.

A shared 2-core machine swings by far more than the few percent to be measured between two whole runs,
so this measures step by step: one training run with health sampled on every other step
(`every=2`), timing each step from `on_batch_start` to `on_batch_end` (forward, backward, optimizer
step, plus the health work on a sampled step; batch assembly excluded, so the ratio is conservative).
Sampled and plain steps alternate, so load drift hits both alike. From the medians:

  sampled-step overhead = median(sampled) / median(plain) - 1
  cost at period N      = overhead / N   (a run samples one step in N: N = 10..50, `health.default_every`)

    CNNLAB_DATA_DIR=/work/shared/data python benchmarks/bench_health.py
    CNNLAB_DATA_DIR=/work/shared/data python benchmarks/bench_health.py --presets seed004 --steps 300
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cnnlab import data as D  # noqa: E402
from cnnlab.engine import Trainer  # noqa: E402
from cnnlab.health import MAX_EVERY, MIN_EVERY, LayerHealth  # noqa: E402
from cnnlab.plan import plan_run  # noqa: E402
from cnnlab.presets import get_preset  # noqa: E402
from cnnlab.recipe import TrainConfig  # noqa: E402


class Timed(LayerHealth):
    """The health callback, timing each step and noting whether it sampled it."""

    def __init__(self, every: int) -> None:
        super().__init__(every)
        self.sampled: list[float] = []
        self.plain: list[float] = []
        self.records = 0
        self._t0, self._sampling = 0.0, False

    def on_health(self, trainer, rec: dict) -> None:
        self.records += 1

    def on_batch_start(self, trainer) -> None:
        self._t0 = time.perf_counter()
        super().on_batch_start(trainer)
        self._sampling = self._armed

    def on_batch_end(self, trainer) -> None:
        super().on_batch_end(trainer)
        (self.sampled if self._sampling else self.plain).append(time.perf_counter() - self._t0)


def measure(preset: str, steps: int, mnist: D.Mnist, threads: int) -> dict:
    p = get_preset(preset)
    recipe = dict(p.recipe)
    recipe.pop("data", None)
    batch = recipe["batch_size"]
    cfg = TrainConfig.from_dict({**recipe, "epochs": 1, "device": "cpu",
                                 "data": {"subset": batch * steps, "val_size": 500}})
    torch.set_num_threads(threads)
    timed = Timed(every=2)
    res = Trainer(plan_run(p.spec, cfg), mnist, callbacks=[timed]).run()
    assert res.status == "done", res.message
    sampled, plain = timed.sampled[2:], timed.plain[2:]  # skip warm-up steps
    over = statistics.median(sampled) / statistics.median(plain) - 1
    return {"batch": batch, "plain_ms": 1e3 * statistics.median(plain), "sampled_ms": 1e3 * statistics.median(sampled),
            "overhead": over, f"cost_every{MIN_EVERY}": over / MIN_EVERY, f"cost_every{MAX_EVERY}": over / MAX_EVERY,
            "n_sampled": len(sampled), "n_plain": len(plain)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--presets", default="seed002,seed004,seed003,fast")
    ap.add_argument("--steps", type=int, default=120, help="optimizer steps per preset (half of them sampled)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    mnist = D.load_mnist()
    out = {}
    for preset in args.presets.split(","):
        row = out[preset] = measure(preset, args.steps, mnist, args.threads)
        print(f"{preset:<8} batch {row['batch']:>4}  plain step {row['plain_ms']:7.2f} ms  sampled {row['sampled_ms']:7.2f} ms"
              f"  (+{row['overhead']:.0%})  cost: every {MIN_EVERY} steps {row[f'cost_every{MIN_EVERY}']:.2%}, "
              f"every {MAX_EVERY} {row[f'cost_every{MAX_EVERY}']:.2%}", flush=True)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
