"""Command line: `python -m cnnlab presets|train|runs|resume|fork|lr-find|export ...` for headless training."""

from __future__ import annotations

import argparse
import re
import sys
import time
import traceback
from typing import Any

from .callbacks import Callback
from .cli_common import (Progress, TwoStepStop, _print_json, add_recipe_args, error_json,  # noqa: F401
                         final_json, finishing_line, recipe_overrides)
from .errors import LabError


class UsageError(Exception):
    """A command-line argument error (argparse's), raised instead of exiting so --json can report it."""

    def __init__(self, parser: argparse.ArgumentParser, message: str):
        super().__init__(message)
        self.parser, self.message = parser, message


class LabArgumentParser(argparse.ArgumentParser):
    """argparse that raises UsageError on a bad argument (its subcommand parsers inherit this)."""

    def error(self, message: str):  # type: ignore[override]
        raise UsageError(self, message)


def cmd_presets(args: argparse.Namespace) -> int:
    from .presets import get_preset, preset_names

    out = []
    for name in preset_names():
        p = get_preset(name)
        out.append({"name": p.name, "title": p.title, "params": p.params(), "recipe": p.recipe,
                    "reported": p.reported, "reported_test_acc": p.reported_test_acc,
                    "description": p.description, "notes": p.notes, "spec": p.spec})
    if args.json:
        _print_json(out)
    else:
        for p in out:
            r = p["recipe"]
            tta = f" tta {r['tta_shift']}px" if r.get("tta_shift") else ""
            print(f"{p['name']:<14} {p['params']:>9,} params  {r.get('optimizer')} lr {r.get('lr')} "
                  f"batch {r.get('batch_size')} epochs {r.get('epochs')}{tta}  — {p['reported']}")
    return 0


def read_arch(path: str) -> tuple[list[dict], Any]:
    """A custom architecture from a file in the Train page's format: one layer a line, or JSON; (spec, its summary)."""
    from pathlib import Path

    from .errors import SpecError
    from .trainform import check_spec_text

    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise LabError(f"--arch: cannot read {path}: {exc.strerror or exc}") from None
    res = check_spec_text(text)
    if res.error:
        raise SpecError(f"--arch {path}: {res.error}")
    return res.spec, res.summary


def cmd_train(args: argparse.Namespace) -> int:
    import torch

    from . import data as D
    from . import settings
    from .control import Control
    from .engine import Trainer
    from .health import LayerHealth
    from .plan import plan_run
    from .presets import get_preset
    from .recipe import TrainConfig
    from .recorder import RunRecorder, create_run
    from .runs import RunStore

    t0 = time.perf_counter()  # wall_s counts from here (after imports): data loading included

    p = get_preset(args.preset)
    (spec, summary), label = (read_arch(args.arch), "custom") if args.arch else ((p.spec, None), p.name)
    over, data_over = recipe_overrides(args)
    recipe = dict(p.recipe)
    plan = plan_run(spec, TrainConfig.from_dict({**recipe, "data": {**recipe.pop("data", {}), **data_over}}, **over),
                    summary=summary)  # the CLI's entry: checked here, trusted from here on
    cfg = plan.cfg
    mnist = D.load_mnist()
    params = plan.params
    progress = Progress(cfg.steps_per_epoch() * cfg.epochs, quiet=args.quiet)
    run = None
    callbacks: list[Callback] = [progress]
    if not args.no_save:
        run = create_run(RunStore(), label, plan, name=args.name, source="cli")
        callbacks = [RunRecorder(run), LayerHealth(), progress]
        if not args.quiet:
            sys.stderr.write(f"run {run.id} in {run.path}\n")
    threads = settings.job_threads()
    if threads:
        torch.set_num_threads(threads)
    control = Control()
    trainer = Trainer(plan, mnist, control=control, callbacks=callbacks)
    ctrl_c = TwoStepStop(lambda: _finish_epoch(trainer, control), lambda: _stop_now(control))
    try:
        with ctrl_c:
            result = trainer.run()
    finally:
        progress.bar.close()
    wall = time.perf_counter() - t0
    if not args.quiet:
        sys.stderr.write(f"\n{result.status}: test acc {result.test_acc}  ({wall:.1f} s)\n")
        if result.message:
            sys.stderr.write(result.message + "\n")
    if args.json:
        _print_json(final_json(result, run.id if run else None, params, wall))
    if result.status == "done":
        return 0
    return 130 if ctrl_c.presses else 1  # 130: stopped by Ctrl-C (the saved run stays resumable)


def _finish_epoch(trainer: Any, control: Any) -> str:
    """The first Ctrl-C: stop once the epoch in progress is validated and saved."""
    control.stop_after_epoch.set()
    return finishing_line(trainer.epoch_to_finish())


def _stop_now(control: Any) -> str:
    """The second Ctrl-C: stop at the next step (the epoch in progress is not kept)."""
    control.stop_event.set()
    return "stopping now"


def cmd_reproduce(args: argparse.Namespace) -> int:
    from . import reproduce as R
    from .presets import get_preset, preset_names

    names = args.presets or preset_names()
    for n in names:
        get_preset(n)  # unknown names fail before anything trains
    log = (lambda s: None) if args.json else (lambda s: print(s, file=sys.stderr, flush=True))
    smoke = {k: getattr(args, k) for k in ("epochs", "subset") if getattr(args, k) is not None}
    if args.from_runs:  # record runs trained earlier (or cut short) instead of training
        if len(names) != 1:
            raise LabError("--from-runs records one preset: name it, e.g. reproduce seed001 --from-runs RUN_ID")
        entry = R.entry_from_runs(names[0], args.from_runs)
        R.save_entries([entry])
        log(R.reproduced_line(entry) or f"{names[0]}: no result in those runs")
        return 0
    entries = []
    for n in names:
        entry = R.reproduce(n, list(range(args.seeds)), device=args.device, budget_h=args.budget_hours,
                            save=not args.no_save, time_steps_n=args.time_steps, max_hours=args.max_hours,
                            log=log, **smoke)
        entries.append(entry)
        if not args.no_record and not smoke:  # a shortened recipe is a check, not a reproduction
            R.save_entries([entry])  # after each preset, so a long batch keeps what it finished
        log(R.reproduced_line(entry) or f"{n}: no result")
    if args.json:
        _print_json({"status": "done", "presets": {e["preset"]: {k: e.get(k) for k in (
            "test_acc_mean", "test_acc_min", "test_acc_max", "epochs", "wall_s_mean", "images_per_s",
            "extrapolated", "est_total_h")} | {"run_ids": [r["run_id"] for r in e["runs"]]} for e in entries}})
    failed = [e["preset"] for e in entries
              if not e.get("extrapolated") and not e.get("partial") and e.get("test_acc_mean") is None]
    return 1 if failed else 0


def build_parser() -> argparse.ArgumentParser:
    ap = LabArgumentParser(prog="python -m cnnlab", description="CNN Lab: headless training and runs")
    sub = ap.add_subparsers(dest="cmd", required=True)
    sp = sub.add_parser("presets", help="list presets with parameter counts and recipes")
    sp.add_argument("--json", action="store_true", help="print the presets as one JSON list")
    sp.set_defaults(func=cmd_presets)
    tp = sub.add_parser("train", help="train a preset (or a custom architecture) and save the run")
    tp.add_argument("--preset", required=True, help="preset whose recipe (and, without --arch, layers) to use; "
                                                    "see `python -m cnnlab presets`")
    tp.add_argument("--arch", metavar="FILE", help="custom layers in the Train page's format: one layer a line "
                                                   "(`conv out=16 k=3 pad=1`, `relu`, ...) or a JSON list")
    add_recipe_args(tp)
    tp.add_argument("--name", help="display name of the run")
    tp.add_argument("--no-save", action="store_true", help="do not write a run folder")
    tp.add_argument("--quiet", action="store_true", help="no progress output")
    tp.add_argument("--json", action="store_true", help="print the final metrics as one JSON line")
    tp.set_defaults(func=cmd_train)
    rp = sub.add_parser("reproduce", help="train presets' full recipes and write docs/REPRODUCTION.md")
    rp.add_argument("presets", nargs="*", help="preset names (default: all)")
    rp.add_argument("--seeds", type=int, default=1, help="seeds per preset (0, 1, ...; default 1)")
    rp.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    rp.add_argument("--budget-hours", type=float, default=3.0, dest="budget_hours",
                    help="a recipe estimated to take longer is timed over its first steps and extrapolated")
    rp.add_argument("--time-steps", type=int, default=12, dest="time_steps",
                    help="training steps timed before training, for the time estimate (default 12)")
    rp.add_argument("--max-hours", type=float, dest="max_hours",
                    help="stop each run at the end of the last epoch that fits and record it as partial")
    rp.add_argument("--from-runs", nargs="+", dest="from_runs", metavar="RUN_ID",
                    help="record these stored runs of the preset's recipe instead of training")
    rp.add_argument("--epochs", type=int, help="smoke check: fewer epochs (the record is then not written)")
    rp.add_argument("--subset", type=int, help="smoke check: fewer training images (the record is then not written)")
    rp.add_argument("--no-save", action="store_true", help="do not keep the runs in the run store")
    rp.add_argument("--no-record", action="store_true", help="do not write docs/reproduction.json and REPRODUCTION.md")
    rp.add_argument("--json", action="store_true", help="print one JSON line with the results")
    rp.set_defaults(func=cmd_reproduce)
    from .cli_runs import add_run_commands  # runs, resume, fork (with the job machinery)

    add_run_commands(sub)
    from .cli_sweep import add_sweep_commands  # sweep, sweeps (Ray is imported only when a sweep runs)

    add_sweep_commands(sub)

    from .cli_tools import add_tool_commands  # lr-find, export

    add_tool_commands(sub)
    return ap


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    as_json = "--json" in argv
    try:
        args = build_parser().parse_args(argv)
    except UsageError as exc:
        exc.parser.print_usage(sys.stderr)
        print(f"{exc.parser.prog}: error: {exc.message}", file=sys.stderr)
        if as_json:
            named = re.match(r"argument --([\w-]+)", exc.message)  # "argument --lr: invalid float ..."
            _print_json(error_json(f"{exc.parser.prog}: {exc.message}",
                                   named.group(1).replace("-", "_") if named else None))
        return 2
    try:
        return args.func(args)
    except LabError as exc:
        if as_json:
            _print_json(error_json(str(exc), getattr(exc, "field", None)))
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if as_json:
            _print_json(error_json("interrupted (Ctrl-C); a saved run stays resumable"))
        print("\ninterrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug or an OS failure: the traceback for us, still one JSON line for scripts
        if not as_json:
            raise
        traceback.print_exc()
        _print_json(error_json(f"{type(exc).__name__}: {exc}"))
        return 1
