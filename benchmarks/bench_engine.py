"""Engine vs. the classic torchvision DataLoader loop, and the `fast` preset's wall time to 99%.

One run measures, in alternating order and `--repeat` times:
  (a) classic: pytorch/examples-style `for x, y in DataLoader(MNIST(transform=...), 64, shuffle=True)`
      loop training the seed004 network (Adam 1e-3) for one epoch;
  (b) engine: cnnlab's Trainer on the same network, recipe and images (seed004 preset, epochs=1);
  (c) fast: `python -m cnnlab train --preset fast --json --no-save` as a subprocess (cold process:
      imports, data loading, training, validation and test evaluation all inside its wall_s).
It prints the engine/classic throughput ratio and fast_wall / classic_one_epoch_wall, then one JSON line.

    CNNLAB_DATA_DIR=/work/shared/data python benchmarks/bench_engine.py            # quick (10k images)
    CNNLAB_DATA_DIR=/work/shared/data python benchmarks/bench_engine.py --full --repeat 2
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from cnnlab.plan import plan_run

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

FAST_MAX_RATIO = 0.40  # acceptance: fast wall <= 40% of one classic seed004 epoch
FAST_MIN_ACC = 0.99


class Seed004Net(nn.Module):
    """Seed 004 as a hand-written module, the way pytorch/examples writes its MNIST net."""

    def __init__(self, pad: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, 1, pad)
        self.conv2 = nn.Conv2d(32, 64, 3, 1, pad)
        side = 7 if pad else 5
        self.fc1 = nn.Linear(64 * side * side, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return self.fc2(F.relu(self.fc1(torch.flatten(x, 1))))


def data_root() -> str:
    from cnnlab import settings

    return str(settings.data_dir())


@torch.inference_mode()
def classic_test_acc(model: nn.Module, root: str) -> float:
    """Test accuracy through the same classic DataLoader pipeline (not timed)."""
    from torchvision import datasets, transforms

    tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))])
    test = datasets.MNIST(root, train=False, download=False, transform=tf)
    model.eval()
    correct = 0
    for x, y in torch.utils.data.DataLoader(test, batch_size=1000):
        correct += (model(x).argmax(1) == y).sum().item()
    return correct / len(test)


def run_classic(subset: int | None, seed: int, root: str, with_acc: bool = False) -> dict:
    """One epoch of the pytorch/examples mnist loop on seed004's net; times the epoch only."""
    from torchvision import datasets, transforms

    torch.manual_seed(seed)
    t0 = time.perf_counter()
    tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))])
    ds = datasets.MNIST(root, train=True, download=False, transform=tf)
    if subset:
        ds = torch.utils.data.Subset(ds, range(subset))
    loader = torch.utils.data.DataLoader(ds, batch_size=64, shuffle=True)
    model = Seed004Net()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    t1 = time.perf_counter()
    for x, y in loader:
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
    t2 = time.perf_counter()
    out = {"epoch_s": t2 - t1, "setup_s": t1 - t0, "images": len(ds), "ips": len(ds) / (t2 - t1)}
    if with_acc:
        out["test_acc"] = classic_test_acc(model, root)
    return out


def run_engine(subset: int | None, seed: int) -> dict:
    """The lab's Trainer on the seed004 preset for one epoch (train time = the epoch's steps)."""
    from cnnlab import data as D
    from cnnlab.engine import Trainer
    from cnnlab.presets import get_preset
    from cnnlab.recipe import TrainConfig

    p = get_preset("seed004")
    recipe = dict(p.recipe)
    data = {**recipe.pop("data", {}), "subset": subset}
    cfg = TrainConfig.from_dict({**recipe, "data": data}, epochs=1, seed=seed)
    trainer = Trainer(plan_run(p.spec, cfg), D.load_mnist())
    res = trainer.run()
    n = len(trainer.splits.train_idx)
    # train_s = the epoch's steps; wall_s adds validation and test evaluation
    return {"epoch_s": res.train_s, "wall_s": res.wall_s, "images": n, "ips": n / res.train_s,
            "test_acc": res.test_acc, "val_acc": res.best_val_acc, "status": res.status}


def run_preset(preset: str, seed: int, *args: str, env: dict | None = None) -> dict:
    """`python -m cnnlab train --preset P --json --seed S ARGS` in a fresh process.

    `process_s`: from starting the process to its JSON result line (Python and torch imports included);
    `wall_s`: the command's own figure, from after its imports (data loading, training, evaluation).
    """
    cmd = [sys.executable, "-m", "cnnlab", "train", "--preset", preset, "--json", "--seed", str(seed), *args]
    with tempfile.TemporaryFile("w+") as err:  # a file, not a pipe: a full pipe would block the child
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=err, text=True,
                                env=env if env is not None else os.environ.copy())
        res, proc_s = None, None
        for line in proc.stdout:  # the result is the JSON line; the clock stops when it is printed
            if line.startswith("{"):
                proc_s = time.perf_counter() - t0
                res = json.loads(line)
        if proc.wait() != 0 or res is None:
            err.seek(0)
            raise RuntimeError(f"{preset} run failed ({proc.returncode}): {err.read()[-2000:]}")
    return {"wall_s": res["wall_s"], "process_s": proc_s, "test_acc": res["test_acc"],
            "val_acc": res["best_val_acc"], "seed": seed, "run_id": res.get("run_id")}


def run_fast(seed: int) -> dict:
    """The fast preset without saving a run (its JSON wall_s includes data loading)."""
    return run_preset("fast", seed, "--no-save", "--quiet")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--subset", type=int, default=10_000, help="training images for (a) and (b) (quick mode)")
    ap.add_argument("--full", action="store_true", help="a real epoch: 60k images (classic), 55k (engine)")
    ap.add_argument("--repeat", type=int, default=1, help="rounds; the order of (a)(b)(c) alternates per round")
    ap.add_argument("--fast-seeds", default="0", help="comma-separated seeds for the fast preset, e.g. 0,1,2")
    ap.add_argument("--skip-fast", action="store_true")
    ap.add_argument("--threads", type=int, default=0, help="torch.set_num_threads for (a) and (b); 0 = default")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    subset = None if args.full else args.subset
    root = data_root()
    from cnnlab import data as D

    D.load_mnist()  # (b) reads the cached tensors; (c) loads its own in a fresh process
    seeds = [int(s) for s in args.fast_seeds.split(",") if s.strip()]
    res: dict[str, list[dict]] = {"classic": [], "engine": [], "fast": []}
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{'full epoch' if args.full else f'subset {subset}'}, repeat {args.repeat}", flush=True)
    for r in range(args.repeat):
        jobs = ["classic", "engine"] + ([] if args.skip_fast else ["fast"])
        if r % 2:
            jobs.reverse()
        for job in jobs:
            if job == "classic":
                m = run_classic(subset, r, root)
                print(f"[{r}] classic  epoch {m['epoch_s']:7.2f} s  {m['ips']:7.0f} img/s  ({m['images']} images)")
            elif job == "engine":
                m = run_engine(subset, r)
                print(f"[{r}] engine   epoch {m['epoch_s']:7.2f} s  {m['ips']:7.0f} img/s  ({m['images']} images)"
                      f"  test acc {m['test_acc']:.4f}")
            else:
                m = run_fast(seeds[r % len(seeds)])
                print(f"[{r}] fast     wall  {m['wall_s']:7.2f} s  (process {m['process_s']:.2f} s)"
                      f"  test acc {m['test_acc']:.4f}  seed {m['seed']}")
            res[job].append(m)
            sys.stdout.flush()
    out: dict = {"full": args.full, "subset": subset, "repeat": args.repeat, "threads": torch.get_num_threads()}
    classic_ips = statistics.median(m["ips"] for m in res["classic"])
    engine_ips = statistics.median(m["ips"] for m in res["engine"])
    out["classic_ips"], out["engine_ips"] = round(classic_ips), round(engine_ips)
    out["engine_over_classic"] = round(engine_ips / classic_ips, 3)
    print(f"throughput engine/classic: {engine_ips:.0f} / {classic_ips:.0f} img/s = {engine_ips / classic_ips:.2f}x")
    # one classic epoch = 60,000 images at the measured rate (a subset run extrapolates)
    classic_epoch_s = 60_000 / classic_ips
    out["classic_epoch_s"] = round(classic_epoch_s, 2)
    print(f"classic one-epoch wall (60k images{'' if args.full else ', extrapolated'}): {classic_epoch_s:.2f} s")
    if res["fast"]:
        fast_wall = statistics.median(m["wall_s"] for m in res["fast"])
        ratio = fast_wall / classic_epoch_s
        min_acc = min(m["test_acc"] for m in res["fast"])
        ok = ratio <= FAST_MAX_RATIO and min_acc >= FAST_MIN_ACC
        out.update({"fast_wall_s": round(fast_wall, 2), "fast_test_accs": [m["test_acc"] for m in res["fast"]],
                    "fast_over_classic": round(ratio, 3), "fast_ok": ok})
        print(f"fast: median wall {fast_wall:.2f} s = {ratio:.2f} of a classic epoch (bar {FAST_MAX_RATIO}); "
              f"min test acc {min_acc:.4f} (bar {FAST_MIN_ACC}) -> {'PASS' if ok else 'FAIL'}")
    out["raw"] = res
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
