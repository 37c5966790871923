"""Layer health: per-layer statistics of one training step every N steps, and what they say in words.

`LayerHealth` is a Trainer callback. On a sampled step it snapshots the weights and hooks every ReLU
just before the forward pass (`on_batch_start`), and after the optimizer step (`on_batch_end`) it
measures, per layer with weights (Conv2d, Linear): the weight norm, the gradient norm and the
update-to-weight ratio ||W_after - W_before|| / ||W_after||; per ReLU: the dead fraction (channels, or
units of a linear layer, whose output is 0 for every image and position of the batch) and the mean/std
of its output. The hooks exist only during the sampled step, so the other steps pay nothing.

A record is `{"kind": "health", "step", "epoch", "every", "lr", "layers": [...], "weight_norm": [...],
"grad_norm": [...], "update_ratio": [...], "acts": [...], "dead_frac": [...], "act_mean": [...],
"act_std": [...]}`, published with `trainer.publish_health(rec)` to every callback's `on_health` (the
recorder writes them to metrics.jsonl beside the step records, so saved runs show them too).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import numpy as np
import torch
from torch import nn

from .callbacks import Callback

# Sampling period: about 100 records a run, never more often than every 10 steps (cost: benchmarks/)
MIN_EVERY, MAX_EVERY, TARGET_RECORDS = 10, 50, 100
QUANTITIES = {  # record key -> (label, per "layers" or "acts", log scale)
    "update_ratio": ("update / weight ratio", "layers", True),
    "grad_norm": ("gradient norm", "layers", True),
    "weight_norm": ("weight norm", "layers", True),
    "dead_frac": ("dead ReLU fraction", "acts", False),
    "act_mean": ("activation mean", "acts", False),
    "act_std": ("activation std", "acts", False),
}
HEALTHY_RATIO = 1e-3  # update/weight ratio of a healthy layer, order of magnitude (Karpathy's rule of thumb)
RATIO_LOW, RATIO_HIGH = 1e-5, 1e-1  # two orders of magnitude either side: flagged
DEAD_ALL, DEAD_MANY = 0.999, 0.5
ANNEALED = 0.01  # an LR below 1% of the run's highest: the schedule's decay, tiny updates are not flagged
GRAD_EXPLODED = 1e3  # a layer's gradient norm above this, or 100x its first sample: exploding


def default_every(total_steps: int) -> int:
    """Sampling period for a run of `total_steps`: ~100 records, between every 10 and every 50 steps."""
    return int(min(MAX_EVERY, max(MIN_EVERY, total_steps // TARGET_RECORDS)))


def weighted_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(name, module) of every Conv2d and Linear, in forward order."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def activations(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(name, module) of every ReLU."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, nn.ReLU)]


class LayerHealth(Callback):
    """Trainer callback: layer statistics of one step every `every` steps (default: `default_every`)."""

    def __init__(self, every: int | None = None):
        self.every = every
        self._armed = False
        self._first = True
        self._hooks: list[Any] = []
        self._layers: list[tuple[str, nn.Module]] = []
        self._names: list[str] = []
        self._before: list[torch.Tensor] = []
        self._acts: dict[str, torch.Tensor] = {}

    def _due(self, trainer: Any) -> bool:
        if self.every is None:
            self.every = default_every(trainer.total_steps)
        return self._first or (trainer.step + 1) % self.every == 0

    def on_batch_start(self, trainer: Any) -> None:
        if not self._due(trainer):
            return
        self._first = False
        self._armed = True
        model = trainer.model
        self._layers = weighted_layers(model)
        self._names = [n for n, _ in activations(model)]
        with torch.no_grad():
            self._before = [m.weight.detach().clone() for _, m in self._layers]
        self._acts = {}
        self._hooks = [m.register_forward_hook(self._hook(n)) for n, m in activations(model)]

    def _hook(self, name: str) -> Callable:
        def hook(_m: nn.Module, _inp: Any, out: torch.Tensor) -> None:
            with torch.no_grad():
                o = out.detach()
                dims = [d for d in range(o.dim()) if d != 1] if o.dim() > 1 else [0]
                alive = o.amax(dim=dims) > 0  # per channel (conv) or unit (linear)
                of = o.float()
                self._acts[name] = torch.stack([1 - alive.float().mean(), of.mean(), of.std()])
        return hook

    def on_batch_end(self, trainer: Any) -> None:
        if not self._armed:
            return
        self._armed = False
        for h in self._hooks:
            h.remove()
        self._hooks = []
        nan = torch.tensor(float("nan"))
        with torch.no_grad():
            rows = []
            for (_, m), before in zip(self._layers, self._before):
                w = m.weight.detach()
                wn = w.float().norm()
                gn = m.weight.grad.detach().float().norm() if m.weight.grad is not None else nan.to(w.device)
                un = (w - before).float().norm()
                rows.append(torch.stack([wn, gn, un / wn.clamp(min=1e-12)]).cpu())
            layer_stats = torch.stack(rows).tolist() if rows else []  # one sync for all layers
            acts = [n for n in self._names if n in self._acts]
            act_stats = torch.stack([self._acts[n].cpu() for n in acts]).tolist() if acts else []
        self._before, self._acts = [], {}
        lr = trainer.optimizer.param_groups[0].get("lr")
        rec = {"kind": "health", "step": trainer.step, "epoch": trainer.epoch + 1, "every": self.every, "lr": lr,
               "layers": [n for n, _ in self._layers],
               "weight_norm": [_clean(r[0]) for r in layer_stats],
               "grad_norm": [_clean(r[1]) for r in layer_stats],
               "update_ratio": [_clean(r[2]) for r in layer_stats],
               "acts": acts,
               "dead_frac": [_clean(r[0]) for r in act_stats],
               "act_mean": [_clean(r[1]) for r in act_stats],
               "act_std": [_clean(r[2]) for r in act_stats]}
        trainer.publish_health(rec)


def _clean(v: float) -> float | str:
    """JSON-safe, 5 significant digits; a non-finite value is kept as its name ("nan", "inf") for the flags."""
    return float(f"{v:.5g}") if math.isfinite(v) else str(v)


# ------------------------------------------------------------------ reading records


@dataclass
class HealthSeries:
    """One quantity over time: rows = layers (or activations), columns = sampled steps."""

    quantity: str
    label: str
    names: list[str]
    steps: list[int]
    values: np.ndarray  # [len(names), len(steps)], NaN where a layer has no value
    log: bool


def health_records(records: Iterable[dict]) -> list[dict]:
    """The health records among a run's records, in step order."""
    return sorted((r for r in records if r.get("kind") == "health"), key=lambda r: int(r.get("step") or 0))


def _num(v: Any) -> float:
    try:
        return float(v)  # "nan" / "inf" strings parse too
    except (TypeError, ValueError):
        return float("nan")


def series(recs: list[dict], quantity: str) -> HealthSeries:
    """A layer x time matrix of one quantity from health records (layers in first-seen order)."""
    if quantity not in QUANTITIES:
        raise ValueError(f"unknown health quantity {quantity!r}; known: {', '.join(QUANTITIES)}")
    label, axis, log = QUANTITIES[quantity]
    names: list[str] = []
    for r in recs:
        for n in r.get(axis) or []:
            if n not in names:
                names.append(n)
    row = {n: i for i, n in enumerate(names)}
    values = np.full((len(names), len(recs)), np.nan)
    for j, r in enumerate(recs):
        for n, v in zip(r.get(axis) or [], r.get(quantity) or []):
            values[row[n], j] = _num(v)
    return HealthSeries(quantity, label, names, [int(r.get("step") or 0) for r in recs], values, log)


@dataclass
class Flag:
    level: str  # "error" | "warning"
    layer: str
    text: str


def flags(recs: list[dict]) -> list[Flag]:
    """What the latest health record says is wrong, in words (empty: nothing to report)."""
    if not recs:
        return []
    last, first = recs[-1], recs[0]
    out: list[Flag] = []
    first_grad = dict(zip(first.get("layers") or [], map(_num, first.get("grad_norm") or [])))
    layers = last.get("layers") or []
    grads = [_num(v) for v in last.get("grad_norm") or []]
    ratios = [_num(v) for v in last.get("update_ratio") or []]
    for name, g in zip(layers, grads):
        g0 = first_grad.get(name, float("nan"))
        if not math.isfinite(g):
            out.append(Flag("error", name, f"{name}: the gradient is {g} — exploding gradients; lower the "
                                           "learning rate or add BatchNorm"))
        elif g > GRAD_EXPLODED or (math.isfinite(g0) and g0 > 0 and g > 100 * g0 and last is not first):
            out.append(Flag("error", name, f"{name}: gradient norm {g:.3g} (was {g0:.3g} at the first sample) — "
                                           "exploding gradients; lower the learning rate"))
    if grads and all(math.isfinite(g) and g < 1e-8 for g in grads):
        out.append(Flag("error", "all", "every layer's gradient is ~0: the network has stopped learning"))
    lrs = [_num(r.get("lr")) for r in recs]
    lr, top_lr = lrs[-1], max((v for v in lrs if math.isfinite(v)), default=float("nan"))
    annealed = math.isfinite(lr) and math.isfinite(top_lr) and lr < ANNEALED * top_lr  # tiny steps by design
    for name, r in zip(layers, ratios):
        if not math.isfinite(r):
            continue
        if r > RATIO_HIGH:
            out.append(Flag("warning", name, f"{name}: each step changes the weights by {r:.1%} of their size "
                                             f"(healthy ≈ {HEALTHY_RATIO:.1%}) — a learning rate this high can be "
                                             "unstable"))
        elif r == 0 and grads and layers.index(name) < len(grads) and grads[layers.index(name)] == 0:
            out.append(Flag("warning", name, f"{name}: gets no gradient at all, so it does not learn "
                                             "(dead ReLUs next to it pass no signal: see the dead ReLU fraction)"))
        elif r < RATIO_LOW and not annealed:
            out.append(Flag("warning", name, f"{name}: update/weight ratio {r:.1e} (healthy ≈ {HEALTHY_RATIO:g}) — "
                                             "this layer barely learns; the learning rate may be too low"))
    for name, d in zip(last.get("acts") or [], map(_num, last.get("dead_frac") or [])):
        if not math.isfinite(d):
            continue
        if d >= DEAD_ALL:
            out.append(Flag("error", name, f"{name}: all its ReLUs are dead (output 0 for the whole batch) — "
                                           "nothing after it gets a signal; lower the learning rate or reinitialize"))
        elif d >= DEAD_MANY:
            out.append(Flag("warning", name, f"{name}: {d:.0%} of its ReLUs are dead for the whole batch"))
    return out


class HealthCache:
    """A page's incremental reader of a job's (or stored run's) health records."""

    def __init__(self, run_id: str):
        self.run_id, self.k, self.recs = run_id, 0, []

    def update(self, view: Any) -> bool:
        """Pull new records from a JobView / StoredRunView; True if health records arrived."""
        recs, self.k = view.records_since(self.k)
        new = [r for r in recs if r.get("kind") == "health"]
        self.recs.extend(new)
        return bool(new)
