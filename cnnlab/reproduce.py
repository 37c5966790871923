"""Reproduce the seeds: train each preset's full recipe, record what it reaches, write docs/REPRODUCTION.md.

The record is `docs/reproduction.json` (one entry per preset, merged across invocations so presets can be
run one at a time); the Markdown page is generated from it. A recipe too slow for this machine (seed 000's
original on a CPU) is timed over its first steps and extrapolated, and said to be.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import torch

from . import data as D
from .callbacks import Callback
from .engine import Trainer
from .evaluation import evaluate
from .fsutil import atomic_write_bytes
from .plan import RunPlan, plan_run
from .presets import get_preset
from .recipe import TrainConfig

DOCS = Path(__file__).resolve().parents[1] / "docs"
RECORD = Path(os.environ.get("CNNLAB_REPRODUCTION_RECORD") or DOCS / "reproduction.json")  # env: tests point elsewhere
PAGE = RECORD.parent / "REPRODUCTION.md"


def machine() -> dict:
    """CPU model and cores, or the GPU, and the torch version: where a figure was measured."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {"cpu": cpu, "cores": os.cpu_count(), "threads": torch.get_num_threads(), "torch": torch.__version__,
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
    info["label"] = info["gpu"] or f"{info['cores']}-core CPU ({cpu})"
    return info


class _StopAfter(Callback):
    """Callback: ask the trainer to stop after `n` steps, remembering when step `warm` ended."""

    def __init__(self, control: Any, n: int, warm: int):
        self.control, self.n, self.warm = control, n, warm
        self.t_warm: float | None = None
        self.t_end: float | None = None

    def on_step(self, trainer: Any, rec: dict) -> None:
        if rec["step"] == self.warm:
            self.t_warm = time.perf_counter()
        if rec["step"] >= self.n and self.t_end is None:
            self.t_end = time.perf_counter()
            self.control.stop_event.set()


def time_steps(name: str, steps: int = 12, warm: int = 2, device: str = "auto", **smoke: Any) -> dict:
    """Seconds per training step of a preset's recipe, measured over `steps - warm` steps after `warm`."""
    from .control import Control

    plan = recipe_plan(name, 0, device=device, **smoke)
    cfg = plan.cfg
    control = Control()
    timer = _StopAfter(control, steps, warm)
    trainer = Trainer(plan, D.load_mnist(), control=control, callbacks=[timer])
    trainer.run()
    if timer.t_end is None or timer.t_warm is None:
        raise RuntimeError(f"{name}: timing stopped before step {steps}")
    per_step = (timer.t_end - timer.t_warm) / (steps - warm)
    return {"step_s": per_step, "steps_timed": steps - warm, "steps_per_epoch": cfg.steps_per_epoch(),
            "epoch_s": per_step * cfg.steps_per_epoch(), "batch_size": cfg.batch_size}


def recipe_plan(name: str, seed: int, **overrides: Any) -> RunPlan:
    """The validated plan of a preset's architecture and `recipe_config`: where `reproduce` enters."""
    return plan_run(get_preset(name).spec, recipe_config(name, seed, **overrides))


def recipe_config(name: str, seed: int, *, subset: int | None = None, **overrides: Any) -> TrainConfig:
    """The preset's full recipe with its seed; overrides (device, or epochs and subset for a smoke run).
    Not validated: `recipe_plan` (or `plan.plan_run`) does that."""
    recipe = dict(get_preset(name).recipe)
    if subset is not None:
        recipe["data"] = {**recipe.get("data", {}), "subset": subset}
    return TrainConfig.from_dict(recipe, seed=seed, **overrides)


def run_recipe(name: str, seed: int, *, device: str = "auto", save: bool = True,
               on_epoch: Callable[[dict], None] | None = None, max_hours: float | None = None, **smoke: Any) -> dict:
    """Train one seed of a preset's recipe; returns its figures (and the run id when saved).

    With `max_hours`, training stops at the end of the last epoch that fits (status "stopped", a partial run).
    """
    from .recorder import RunRecorder, create_run
    from .runs import RunStore

    from .control import Control

    p = get_preset(name)
    plan = recipe_plan(name, seed, device=device, **smoke)
    cfg = plan.cfg
    curve: list[list[float]] = []
    control = Control()
    t0 = time.perf_counter()

    class _Curve(Callback):
        def on_epoch(self, trainer: Any, rec: dict) -> None:
            curve.append([rec["epoch"], round(rec["val_acc"], 5)])
            if on_epoch:
                on_epoch(rec)
            elapsed = time.perf_counter() - t0
            if max_hours and elapsed * (1 + 1 / len(curve)) > max_hours * 3600:  # the next epoch would not fit
                control.stop_event.set()

    run = None
    callbacks: list[Callback] = [_Curve()]
    if save:
        run = create_run(RunStore(), p.name, plan, name=f"reproduce {name} seed {seed}", source="reproduce")
        callbacks.insert(0, RunRecorder(run))
    mnist = D.load_mnist()
    trainer = Trainer(plan, mnist, control=control, callbacks=callbacks)
    result = trainer.run()
    wall = time.perf_counter() - t0
    train_images_acc = None
    if result.status == "done":  # seed 002 reported accuracy on its training images: measure that too
        train_images_acc = evaluate(trainer.model, mnist.train_x, mnist.train_y, trainer.device,
                                    cfg.eval_batch_size, cfg.channels_last)[1]
    images = cfg.n_train() * result.epochs_done
    return {"seed": seed, "status": result.status, "message": result.message, "test_acc": result.test_acc,
            "best_val_acc": result.best_val_acc, "train_images_acc": train_images_acc,
            "epochs": result.epochs_done, "wall_s": round(wall, 1),
            "train_s": round(result.train_s, 1),
            "images_per_s": round(images / result.train_s, 1) if result.train_s else None,
            "run_id": run.id if run else None, "val_curve": curve}


def reproduce(name: str, seeds: list[int], *, device: str = "auto", budget_h: float = 3.0, save: bool = True,
              time_steps_n: int = 12, max_hours: float | None = None, log: Callable[[str], None] = lambda s: None,
              **smoke: Any) -> dict:
    """Reproduce one preset: train every seed, or extrapolate from timed steps when over `budget_h` hours.

    `smoke` (epochs, subset) shortens the recipe for a quick check; such an entry is marked `smoke`.
    """
    p = get_preset(name)
    plan = recipe_plan(name, seeds[0], device=device, **smoke)
    cfg = plan.cfg
    entry: dict[str, Any] = {
        "preset": name, "title": p.title, "params": plan.params, "reported": p.reported,
        "reported_test_acc": p.reported_test_acc, "source": p.source, "epochs": cfg.epochs,
        "batch_size": cfg.batch_size, "validation": cfg.data.val_source, "machine": machine(),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"), "smoke": bool(smoke),
    }
    timing = time_steps(name, steps=time_steps_n, warm=1 if time_steps_n < 6 else 2, device=device, **smoke)
    est_h = timing["epoch_s"] * cfg.epochs / 3600 * len(seeds)
    entry["timing"] = {k: round(v, 4) if isinstance(v, float) else v for k, v in timing.items()}
    log(f"{name}: {timing['step_s'] * 1000:.0f} ms/step, ~{timing['epoch_s'] / 60:.1f} min/epoch, "
        f"~{est_h:.2f} h for {len(seeds)} seed(s)")
    if est_h > budget_h:
        entry.update(extrapolated=True, runs=[], est_total_h=round(est_h, 2),
                     est_epoch_s=round(timing["epoch_s"], 1))
        log(f"{name}: over the {budget_h} h budget: recorded as an extrapolation from {timing['steps_timed']} steps")
        return entry
    runs = []
    for s in seeds:
        log(f"{name}: seed {s} ...")
        r = run_recipe(name, s, device=device, save=save, max_hours=max_hours, **smoke,
                       on_epoch=lambda rec: log(f"  {name} s{s} epoch {rec['epoch']}: val {rec['val_acc']:.4f}"))
        log(f"{name}: seed {s}: {r['status']} test {r['test_acc']} in {r['wall_s']:.0f} s")
        runs.append(r)
    done = [r for r in runs if r["status"] == "done" and r["test_acc"] is not None]
    accs = [r["test_acc"] for r in done]
    entry.update(extrapolated=False, runs=runs)
    partial = [r for r in runs if r["status"] == "stopped" and r["val_curve"]]
    if not done and partial:  # out of time: what the epochs that ran reached (on the test set when it validates)
        r = partial[0]
        entry.update(partial=True, epochs_done=r["epochs"], partial_val_acc=r["val_curve"][-1][1],
                     partial_wall_s=r["wall_s"], images_per_s=r["images_per_s"])
    if accs:
        tr = [r["train_images_acc"] for r in done if r.get("train_images_acc") is not None]
        entry["train_images_acc_mean"] = statistics.fmean(tr) if tr else None
        entry.update(test_acc_mean=statistics.fmean(accs), test_acc_min=min(accs), test_acc_max=max(accs),
                     wall_s_mean=statistics.fmean(r["wall_s"] for r in done),
                     images_per_s=statistics.fmean(r["images_per_s"] for r in done if r["images_per_s"]))
    return entry


def run_figures(run_id: str) -> dict:
    """A reproduction run's figures read back from the run store (for a run trained earlier, or cut short)."""
    from .runs import RunStore

    handle = RunStore().get(run_id)
    epochs = [r for r in handle.read_metrics() if r.get("kind") == "epoch"]
    result = handle.result or {}
    status = handle.info().status
    cfg = TrainConfig.from_dict(handle.config["recipe"])
    train_s = epochs[-1]["t"] if epochs else 0.0
    return {"seed": cfg.seed, "status": "done" if result.get("test_acc") is not None else "stopped",
            "stored_status": status, "message": "", "test_acc": result.get("test_acc"),
            "best_val_acc": max((r["val_acc"] for r in epochs), default=None), "train_images_acc": None,
            "epochs": len(epochs), "wall_s": round(float(result.get("wall_s") or train_s), 1),
            "train_s": round(train_s, 1),
            "images_per_s": round(cfg.n_train() * len(epochs) / train_s, 1) if train_s else None,
            "run_id": run_id, "val_curve": [[r["epoch"], round(r["val_acc"], 5)] for r in epochs]}


def entry_from_runs(name: str, run_ids: list[str]) -> dict:
    """A reproduction entry from runs already in the store (all of one preset's recipe)."""
    p = get_preset(name)
    runs = [run_figures(r) for r in run_ids]
    plan = recipe_plan(name, 0)
    cfg = plan.cfg
    entry: dict[str, Any] = {
        "preset": name, "title": p.title, "params": plan.params, "reported": p.reported,
        "reported_test_acc": p.reported_test_acc, "source": p.source, "epochs": cfg.epochs,
        "batch_size": cfg.batch_size, "validation": cfg.data.val_source, "machine": machine(),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"), "smoke": False, "extrapolated": False,
        "runs": runs, "from_store": True,
    }
    done = [r for r in runs if r["test_acc"] is not None]
    if done:
        accs = [r["test_acc"] for r in done]
        entry.update(test_acc_mean=statistics.fmean(accs), test_acc_min=min(accs), test_acc_max=max(accs),
                     wall_s_mean=statistics.fmean(r["wall_s"] for r in done),
                     images_per_s=statistics.fmean(r["images_per_s"] for r in done if r["images_per_s"]))
        refresh_entry(entry)
    elif runs and runs[0]["val_curve"]:
        r = runs[0]
        entry.update(partial=True, epochs_done=r["epochs"], partial_val_acc=r["val_curve"][-1][1],
                     partial_wall_s=r["train_s"], images_per_s=r["images_per_s"])
    return entry


def refresh_entry(entry: dict) -> dict:
    """Fill in figures added since a run was recorded (accuracy on the training images) from its saved weights."""
    from .models import build_model
    from .runs import RunStore

    store, mnist = RunStore(), D.load_mnist()
    for r in entry.get("runs", []):
        if r.get("train_images_acc") is not None or r.get("status") != "done" or not r.get("run_id"):
            continue
        handle = store.get(r["run_id"])
        cfg = TrainConfig.from_dict(handle.config["recipe"])
        model = build_model(handle.config["spec"])
        model.load_state_dict(handle.load_checkpoint("last")["model"])
        r["train_images_acc"] = evaluate(model, mnist.train_x, mnist.train_y, torch.device("cpu"),
                                         cfg.eval_batch_size)[1]
    tr = [r["train_images_acc"] for r in entry.get("runs", []) if r.get("train_images_acc") is not None]
    entry["train_images_acc_mean"] = statistics.fmean(tr) if tr else None
    return entry


# ----------------------------------------------------------------------------- the record and its page

def load_record(path: Path | None = None) -> dict:
    """{preset: entry}; empty when there is no record (or it is unreadable)."""
    path = path or RECORD
    try:
        data = json.loads(path.read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def save_entries(entries: list[dict], path: Path | None = None, page: Path | None = None) -> None:
    """Merge entries into the record (by preset) and regenerate the Markdown page."""
    import fcntl

    path, page = path or RECORD, page or PAGE
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.parent / ".reproduction.lock", "a") as lock:  # two reproduce processes may finish together
        fcntl.flock(lock, fcntl.LOCK_EX)
        record = load_record(path)
        for e in entries:
            record[e["preset"]] = e
        atomic_write_bytes(path, (json.dumps(record, indent=1, sort_keys=True) + "\n").encode())
        atomic_write_bytes(page, render_page(record).encode())


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.2f}%"


def _dur(s: float | None) -> str:
    if s is None:
        return "—"
    return f"{s:.0f} s" if s < 120 else (f"{s / 60:.1f} min" if s < 7200 else f"{s / 3600:.1f} h")


def reproduced_line(entry: dict | None) -> str | None:
    """One line for the Train page: 'Reproduced here: 99.41% (3 seeds, 99.38–99.45%) in 20 epochs, 8 min ...'."""
    if not entry:
        return None
    where = entry.get("machine", {}).get("label", "this machine")
    if entry.get("extrapolated"):
        return (f"Not trained to the end here: {_dur(entry.get('est_epoch_s'))} per epoch measured on a {where} "
                f"(≈{entry.get('est_total_h')} h for the recipe)")
    if entry.get("partial"):
        on = "test" if entry.get("validation") == "test" else "validation"
        return (f"Partly reproduced here: {_pct(entry['partial_val_acc'])} {on} after {entry['epochs_done']} of "
                f"{entry['epochs']} epochs ({_dur(entry.get('partial_wall_s'))} on a {where})")
    if entry.get("test_acc_mean") is None:
        return None
    n = len([r for r in entry.get("runs", []) if r.get("test_acc") is not None])
    spread = (f", {_pct(entry['test_acc_min'])}–{_pct(entry['test_acc_max'])}" if n > 1 else "")
    epochs = f"{entry['epochs']} epoch{'s' if entry['epochs'] != 1 else ''}"
    return (f"Reproduced here: {_pct(entry['test_acc_mean'])} test ({n} seed{'s' if n > 1 else ''}{spread}) in "
            f"{epochs}, {_dur(entry.get('wall_s_mean'))} on a {where}")


def reference_curve(entry: dict | None) -> list[list[float]] | None:
    """The validation curve of the reproduction run closest to the mean (for a faint overlay)."""
    runs = [r for r in (entry or {}).get("runs", []) if r.get("val_curve") and r.get("test_acc") is not None]
    if not runs:
        partial = [r for r in (entry or {}).get("runs", []) if r.get("val_curve")]
        return partial[0]["val_curve"] if partial else None
    mean = entry.get("test_acc_mean") or 0
    return min(runs, key=lambda r: abs(r["test_acc"] - mean))["val_curve"]


def render_page(record: dict) -> str:
    """docs/REPRODUCTION.md from the record."""
    lines = [
        "# Reproducing the seeds",
        "",
        "Generated by `python -m cnnlab reproduce` from `docs/reproduction.json`: each preset's full recipe,",
        "trained here, against the figure its seed reported. Wall time counts data loading, validation and the",
        "test pass. The development machine's CPU was shared with other work while these ran, so times are",
        "upper bounds; accuracies are not affected.",
        "",
        "| preset | params | reported by its seed | reproduced here (test) | on its training images | seeds | epochs | wall time | images/s | machine | torch | runs |",
        "|---|---:|---|---|---:|---:|---:|---:|---:|---|---|---|",
    ]
    for name in sorted(record):
        e = record[name]
        m = e.get("machine", {})
        if e.get("extrapolated"):
            got = f"not run: ≈{_dur(e.get('est_epoch_s'))}/epoch measured over {e['timing']['steps_timed']} steps"
            wall = f"≈{e.get('est_total_h')} h (extrapolated)"
            ips = f"{e['timing']['batch_size'] / e['timing']['step_s']:.0f}"
            seeds = "0"
        elif e.get("partial"):
            on = "test" if e.get("validation") == "test" else "val"
            got = f"{_pct(e['partial_val_acc'])} {on} after {e['epochs_done']} of {e['epochs']} epochs (stopped: time)"
            wall, ips, seeds = _dur(e.get("partial_wall_s")), f"{e.get('images_per_s') or 0:.0f}", "1"
        else:
            n = len(e.get("runs", []))
            got = _pct(e.get("test_acc_mean"))
            if n > 1 and e.get("test_acc_min") is not None:
                got += f" ({_pct(e['test_acc_min'])}–{_pct(e['test_acc_max'])})"
            wall, ips, seeds = _dur(e.get("wall_s_mean")), f"{e.get('images_per_s') or 0:.0f}", str(n)
        runs = ", ".join(r["run_id"] for r in e.get("runs", []) if r.get("run_id")) or "—"
        lines.append(f"| `{name}` | {e['params']:,} | {e['reported']} | {got} | {_pct(e.get('train_images_acc_mean'))} | "
                     f"{seeds} | {e['epochs']} | {wall} | "
                     f"{ips} | {m.get('label', '?')} | {m.get('torch', '?')} | {runs} |")
    lines += ["", "## Notes per preset", ""]
    for name in sorted(record):
        e = record[name]
        lines.append(f"- **`{name}`** ({e.get('source') or 'the lab'}): validation on "
                     f"{'the test set, as the seed did' if e.get('validation') == 'test' else 'held-out training images'}; "
                     f"measured {e.get('date')}.")
        for note in e.get("findings", []):
            lines.append(f"  - {note}")
    return "\n".join(lines) + "\n"
