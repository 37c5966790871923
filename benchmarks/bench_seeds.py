"""Each seed recipe's first epoch: its seed-style pipeline (torchvision DataLoader + PIL transforms) vs the lab.

For seed000 (original 39.9M-parameter net on 224x224 inputs; only a few steps, see below), seed001,
seed002, seed003 and seed004, in alternating order and `--repeat` times:
  (a) seed: the seed's own pipeline: `DataLoader(MNIST(transform=<the seed's transforms>), batch,
      shuffle=True, num_workers=<the seed's>)` (seed002: raw 0-255 float tensors in a TensorDataset),
      training the preset's network with the preset's optimizer in a plain loop;
  (b) lab: `cnnlab.engine.Trainer` on the preset's recipe (in-memory uint8 tensors, batches by index,
      batched augmentation).
Each is measured twice: training (data + forward + backward + step) and the data path alone (batches
produced per second, no model). The bar of issue 13 is about the data path: lab / seed >= 1.5.

The model is the same in (a) and (b): `build_model(preset.spec)` with the same seed; the preset's input
layers that stand in for a seed's transforms (`pixels` undoes the lab's normalization, `resize` is seed
000's Resize(224)) are replaced by identities in (a), whose transforms already did that work; in (b) the
data-path measurement runs them too. tests/test_seed_originals.py checks that these networks compute what
the original classes compute.

    CNNLAB_DATA_DIR=/work/shared/data nice python benchmarks/bench_seeds.py              # fixed steps
    CNNLAB_DATA_DIR=/work/shared/data nice python benchmarks/bench_seeds.py --full       # a whole first epoch
    ... --recipes seed001,seed004 --steps 100 --repeat 2
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from cnnlab import data as D, settings  # noqa: E402
from cnnlab.callbacks import Callback  # noqa: E402
from cnnlab.control import Control  # noqa: E402
from cnnlab.engine import Trainer  # noqa: E402
from cnnlab.models import build_model  # noqa: E402
from cnnlab.optim import make_optimizer  # noqa: E402
from cnnlab.plan import plan_run  # noqa: E402
from cnnlab.presets import get_preset  # noqa: E402
from cnnlab.recipe import TrainConfig  # noqa: E402

BAR = 1.5  # issue 13: the lab's data path at least 1.5x the seed-style one
INPUT_LAYERS = ("pixels", "resize")  # preset layers that do what a seed's transforms did


@dataclass(frozen=True)
class SeedStyle:
    """How a seed fed its network: transforms (or raw tensors), loader workers, drop_last, train split."""

    transforms: str  # key of _seed_transforms, or "tensor" (seed002: TensorDataset of raw floats)
    workers: int
    drop_last: bool = False
    split: str = "all"  # "all": 60k; "random50k": random_split(60k, [50000, 10000]) (seed000's body.py)
    steps: int = 150  # default training steps (fixed-step mode)
    data_steps: int = 300  # default batches for the data-path measurement
    note: str = ""


SEEDS = {
    "seed000": SeedStyle("resize224_jitter", workers=2, drop_last=True, split="random50k", steps=2, data_steps=40,
                         note="Others/body.py: Resize(224), ColorJitter(0.5), ToTensor; num_workers=2, drop_last"),
    "seed001": SeedStyle("cropzoom", workers=2, steps=150,
                         note="notebook: RandomApply(CenterCrop(22), .1), Resize(28), RandomRotation(±15), "
                              "ToTensor, Normalize; num_workers=2"),
    "seed002": SeedStyle("tensor", workers=0, drop_last=True, steps=300,
                         note="notebook: raw 0-255 float tensors in a TensorDataset, drop_last"),
    "seed003": SeedStyle("cropzoom", workers=2, steps=20, data_steps=60,
                         note="utils.py: as seed001; num_workers=2"),
    "seed004": SeedStyle("classic", workers=0, steps=150,
                         note="ToTensor, Normalize (pytorch/examples style)"),
}


def _seed_transforms(kind: str):
    from torchvision import transforms as T

    norm = T.Normalize((D.MEAN,), (D.STD,))
    if kind == "cropzoom":
        return T.Compose([T.RandomApply([T.CenterCrop(22)], p=0.1), T.Resize((28, 28)),
                          T.RandomRotation((-15.0, 15.0), fill=0), T.ToTensor(), norm])
    if kind == "resize224_jitter":
        return T.Compose([T.Resize((224, 224)), T.ColorJitter(brightness=0.5), T.ToTensor()])
    return T.Compose([T.ToTensor(), norm])


def seed_loader(name: str, batch_size: int) -> torch.utils.data.DataLoader:
    """The seed's DataLoader over its training images (built before timing starts)."""
    from torchvision.datasets import MNIST

    s = SEEDS[name]
    root = str(settings.data_dir())
    if s.transforms == "tensor":
        mn = D.load_mnist()
        ds = torch.utils.data.TensorDataset(mn.train_x.float().unsqueeze(1), mn.train_y)
    else:
        ds = MNIST(root, train=True, download=False, transform=_seed_transforms(s.transforms))
    if s.split == "random50k":
        ds, _ = torch.utils.data.random_split(ds, [50_000, 10_000])
    return torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=True, num_workers=s.workers,
                                       drop_last=s.drop_last, persistent_workers=False)


def seed_model(name: str, seed: int) -> nn.Module:
    """The preset's network with its input layers (pixels, resize) made identities: the transforms did that."""
    model = build_model(get_preset(name).spec, seed=seed)
    for i in range(n_input_layers(name)):
        model[i] = nn.Identity()
    return model


def n_input_layers(name: str) -> int:
    """How many of the preset's first layers are input layers (INPUT_LAYERS)."""
    spec = get_preset(name).spec
    return next((i for i, layer in enumerate(spec) if layer.get("type") not in INPUT_LAYERS), len(spec))


def lab_config(name: str, seed: int) -> TrainConfig:
    """The preset's recipe, one epoch, on the CPU."""
    return TrainConfig.from_dict(dict(get_preset(name).recipe), epochs=1, seed=seed, device="cpu")


def _loss_fn(name: str):
    return F.nll_loss if get_preset(name).spec[-1].get("type") == "logsoftmax" else F.cross_entropy


def cpu_s(children: bool = False) -> float:
    """CPU seconds of this process (all threads), or of its reaped children (DataLoader workers)."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _result(n: int, k: int, wall: float, cpu: float) -> dict:
    return {"s": wall, "cpu_s": cpu, "steps": k, "images": n, "ips": n / wall, "ipc": n / max(cpu, 1e-9),
            "bps": k / wall}


def _seed_loop(name: str, steps: int | None, seed: int, train: bool) -> dict:
    """for x, y in loader: [step]. Wall and this process's CPU from iter(loader) (workers start) to the
    last batch, plus the workers' CPU seconds."""
    cfg = lab_config(name, seed)
    torch.manual_seed(seed)
    loader = seed_loader(name, cfg.batch_size)
    if train:
        model = seed_model(name, seed).train()
        opt = make_optimizer(model, cfg)
        loss_fn = _loss_fn(name)
    n = k = 0
    c0, w0, t0 = cpu_s(), cpu_s(children=True), time.perf_counter()
    it = iter(loader)
    for x, y in it:
        if train:
            opt.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            opt.step()
        n, k = n + len(y), k + 1
        if steps and k >= steps:
            break
    wall, cpu = time.perf_counter() - t0, cpu_s() - c0
    del it  # shuts the workers down and joins them: their CPU seconds count once they are reaped
    gc.collect()
    return _result(n, k, wall, cpu + cpu_s(children=True) - w0)


def run_seed_train(name: str, steps: int | None, seed: int) -> dict:
    """The seed-style training loop (a plain loop: no per-step .item() or progress bar, which favors the seed)."""
    return _seed_loop(name, steps, seed, train=True)


def run_seed_data(name: str, steps: int | None, seed: int) -> dict:
    """Batches the seed's DataLoader produces per second, no model (workers' start included)."""
    return _seed_loop(name, steps, seed, train=False)


class _StopAfter(Callback):
    """Trainer callback: the time of each step's end; stops the run after `steps` steps."""

    def __init__(self, control: Control, steps: int | None):
        self.control, self.steps, self.t_last, self.cpu_last, self.n = control, steps, None, None, 0

    def on_step(self, trainer: Trainer, rec: dict) -> None:
        self.t_last, self.cpu_last, self.n = time.perf_counter(), cpu_s(), rec["step"]
        if self.steps and rec["step"] >= self.steps:
            self.control.stop_event.set()


def run_lab_train(name: str, steps: int | None, seed: int) -> dict:
    """cnnlab's Trainer on the preset's recipe; times from run() to the end of the last timed step."""
    cfg = lab_config(name, seed)
    control = Control()
    timer = _StopAfter(control, steps)
    trainer = Trainer(plan_run(get_preset(name).spec, cfg), D.load_mnist(), control=control, callbacks=[timer])
    c0, t0 = cpu_s(), time.perf_counter()
    trainer.run()  # a whole epoch (steps=None) also validates: after t_last, not timed
    k = timer.n
    n = min(k * cfg.batch_size, len(trainer.splits.train_idx))
    return _result(n, k, timer.t_last - t0, timer.cpu_last - c0)


@torch.no_grad()
def run_lab_data(name: str, steps: int | None, seed: int) -> dict:
    """What the Trainer does for data each step (make_batch, labels), plus the preset's input layers."""
    cfg = lab_config(name, seed)
    trainer = Trainer(plan_run(get_preset(name).spec, cfg), D.load_mnist())
    x_all, y_all = trainer.mnist.train_x, trainer.mnist.train_y
    lead = list(trainer.model)[: n_input_layers(name)]
    n = k = 0
    c0, t0 = cpu_s(), time.perf_counter()
    for idx in D.iterate_indices(trainer.splits.train_idx, cfg.batch_size, True, trainer.gen):
        xb = D.make_batch(x_all, idx, trainer.aug_strength, trainer.gen, cfg.data.aug_kind)
        for m in lead:
            xb = m(xb)
        yb = y_all.index_select(0, idx)
        n, k = n + len(yb), k + 1
        if steps and k >= steps:
            break
    return _result(n, k, time.perf_counter() - t0, cpu_s() - c0)


JOBS = {("seed", "train"): run_seed_train, ("lab", "train"): run_lab_train,
        ("seed", "data"): run_seed_data, ("lab", "data"): run_lab_data}


def _med(ms: list[dict], key: str = "ips") -> float:
    return statistics.median(m[key] for m in ms)


def _round(v: float) -> float:
    """Images per second as printed: whole numbers, but seed000's few per second keep 2 decimals."""
    return round(v) if v >= 100 else round(v, 2)


def _per_recipe(text: str) -> dict[str, int]:
    """'150' -> {'*': 150}; 'seed003=2,seed001=20' -> {'seed003': 2, 'seed001': 20}."""
    if "=" not in text:
        return {"*": int(text)}
    return {k.strip(): int(v) for k, v in (part.split("=", 1) for part in text.split(",") if part.strip())}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipes", default=",".join(SEEDS), help="comma-separated presets (default: all five)")
    ap.add_argument("--steps", type=_per_recipe, default={},
                    help="training steps: N for every recipe, or seed003=2,seed001=20 (others keep their default)")
    ap.add_argument("--data-steps", type=_per_recipe, default={}, help="batches for the data path, as --steps")
    ap.add_argument("--full", action="store_true",
                    help="a whole first epoch (training and data path) for every recipe but seed000 "
                         "(hours on a CPU: it keeps its few steps unless --steps says otherwise)")
    ap.add_argument("--repeat", type=int, default=1, help="rounds; the order seed/lab alternates per round")
    ap.add_argument("--skip-train", action="store_true", help="measure the data path only")
    ap.add_argument("--threads", type=int, default=0, help="torch.set_num_threads; 0 = default")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    names = [s.strip() for s in args.recipes.split(",") if s.strip()]
    for name in names:
        if name not in SEEDS:
            ap.error(f"unknown recipe {name!r}; known: {', '.join(SEEDS)}")
    D.load_mnist()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{'first epoch' if args.full else 'fixed steps'}, repeat {args.repeat}", flush=True)
    report: dict = {"full": args.full, "repeat": args.repeat, "threads": torch.get_num_threads(), "recipes": {}}
    for name in names:
        s = SEEDS[name]
        whole = args.full and name != "seed000"
        st, dst = args.steps.get(name, args.steps.get("*")), args.data_steps.get(name, args.data_steps.get("*"))
        steps = st or (None if whole else s.steps)
        data_steps = dst or (None if whole else s.data_steps)
        cfg = lab_config(name, args.seed)
        print(f"\n== {name}: batch {cfg.batch_size}, {cfg.optimizer} lr {cfg.lr:g}, "
              f"aug {cfg.data.aug_kind if cfg.data.augment else 'none'}; seed-style: {s.note}", flush=True)
        res: dict[str, list[dict]] = {}
        parts = ["data"] + ([] if args.skip_train else ["train"])
        for part in parts:
            n_steps = data_steps if part == "data" else steps
            for r in range(args.repeat):
                order = ["seed", "lab"] if r % 2 == 0 else ["lab", "seed"]
                for who in order:
                    m = JOBS[(who, part)](name, n_steps, args.seed + r)
                    res.setdefault(f"{who}_{part}", []).append(m)
                    print(f"[{r}] {part:5s} {who:4s} {m['steps']:5d} steps {m['s']:8.2f} s {m['ips']:8.1f} img/s "
                          f"({m['bps']:6.1f} batches/s)  {m['cpu_s']:8.2f} CPU s {m['ipc']:8.1f} img/CPU-s", flush=True)
        out: dict = {"steps": steps or "epoch", "data_steps": data_steps or "epoch"}
        for part in parts:
            for key, unit in (("ips", ""), ("ipc", "_cpu")):
                seed_v, lab_v = _med(res[f"seed_{part}"], key), _med(res[f"lab_{part}"], key)
                out[f"seed_{part}{unit}"], out[f"lab_{part}{unit}"] = _round(seed_v), _round(lab_v)
                out[f"{part}_ratio{unit}"] = round(lab_v / seed_v, 2)
        out["raw"] = res
        report["recipes"][name] = out
        for part in parts:
            print(f"{name} {part}: lab / seed = {out[f'lab_{part}']} / {out[f'seed_{part}']} img/s = "
                  f"{out[f'{part}_ratio']}x; per CPU second {out[f'lab_{part}_cpu']} / {out[f'seed_{part}_cpu']} = "
                  f"{out[f'{part}_ratio_cpu']}x", flush=True)
    print("\n| recipe | batch | data path img/s, seed → lab | lab/seed | per CPU-s | "
          "training img/s, seed → lab | lab/seed | per CPU-s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, o in report["recipes"].items():
        mark = "" if o["data_ratio"] >= BAR else " (below 1.5)"
        train = (f"{o['seed_train']} → {o['lab_train']} | {o['train_ratio']}x | {o['train_ratio_cpu']}x"
                 if "train_ratio" in o else "— | — | —")
        print(f"| {name} | {lab_config(name, 0).batch_size} | {o['seed_data']} → {o['lab_data']} | "
              f"**{o['data_ratio']}x**{mark} | {o['data_ratio_cpu']}x | {train} |")
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
