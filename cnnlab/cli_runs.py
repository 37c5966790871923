"""Command line for saved runs: `runs [--json]`, `resume RUN_ID [--json]`, `fork RUN_ID --epoch K [...] [--json]`.

resume and fork train through the same `JobManager` as the app (one job, all cores), so their runs look
the same in the store; with `--json` they end, like `train`, with the final metrics as one JSON line.
Exit status: 0 when the run ends done, 1 when it ends otherwise, 2 for a user error, 130 when Ctrl-C
stopped it (the first Ctrl-C finishes the epoch in progress, a second stops now; the run stays resumable).
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from .cli_common import (Progress, TwoStepStop, _print_json, add_recipe_args, final_json, finishing_line,
                         recipe_overrides)
from .status import FINAL

POLL_S = 1.0  # at most this long between looks at the status (a record or the end wakes it sooner)


def _info_dict(info: Any) -> dict:
    return {"id": info.id, "name": info.name, "status": info.status, "message": info.message,
            "preset": info.preset, "params": info.params, "best_val_acc": info.best_val_acc,
            "test_acc": info.test_acc, "epochs": info.epochs, "epochs_planned": info.epochs_planned,
            "parent": info.parent, "created": info.created, "tags": info.tags, "error": info.error,
            "sweep": info.sweep}


def _pct(v: Any) -> str:
    return f"{v * 100:.2f}%" if isinstance(v, (int, float)) else "-"


def cmd_runs(args: argparse.Namespace) -> int:
    """List runs, newest first (a damaged run lists with status "error" and never hides the others)."""
    from .runs import RunStore

    infos = RunStore().list_runs(live_ids=set())  # this process trains nothing: a dead pid is interrupted
    if args.json:
        _print_json([_info_dict(i) for i in infos])
        return 0
    if not infos:
        print("no runs")
        return 0
    print(f"{'id':<36} {'status':<11} {'preset':<14} {'epochs':>7} {'best val':>9} {'test':>8}  name")
    for i in infos:
        epochs = f"{i.epochs if i.epochs is not None else '-'}/{i.epochs_planned or '-'}"
        print(f"{i.id:<36} {i.status:<11} {str(i.preset or '-'):<14} {epochs:>7} {_pct(i.best_val_acc):>9} "
              f"{_pct(i.test_acc):>8}  {i.name}")
        if i.error:
            print(f"{'':<36} error: {i.error}")
    return 0


def _follow(manager: Any, run_id: str, quiet: bool) -> tuple[Any, int]:
    """Print a job's progress until it ends: (its view, Ctrl-C presses). The first Ctrl-C asks the job to
    stop after the epoch in progress, the second to stop now; a third stops it and re-raises."""
    view = manager.get(run_id)
    progress = Progress(view.total_steps, quiet=quiet)
    history = view.mode == "resume"  # a resumed job's view starts with the stored curve: not reprinted

    def after_epoch() -> str:
        manager.stop(run_id, after_epoch=True)
        return finishing_line(view.epoch_to_finish())

    def now() -> str:
        manager.stop(run_id)
        return "stopping now"

    ctrl_c = TwoStepStop(after_epoch, now)
    try:
        with ctrl_c:
            return _print_until_final(view, progress, history), ctrl_c.presses
    except KeyboardInterrupt:
        manager.stop(run_id)
        manager.wait(run_id, timeout=10)
        raise


def _print_until_final(view: Any, progress: Progress, history: bool) -> Any:
    """Draw the job's records as they come until its status is final; the view."""
    k = 0
    while True:
        final = view.status in FINAL
        recs, k = view.records_since(k)
        for rec in recs:
            if history:
                history = rec.get("event") != "resumed"
            else:
                progress.show(rec)
        if final:
            progress.bar.close()
            return view
        view.wait_records(k, timeout=POLL_S)  # wakes at the next record or the job's end


def _finish(manager: Any, run_id: str, args: argparse.Namespace, t0: float) -> int:
    view, presses = _follow(manager, run_id, args.quiet)
    manager.shutdown(wait=10)
    result = view.result()
    wall = time.perf_counter() - t0
    handle = manager.store.get(run_id)
    params = handle.config.get("params")
    if not args.quiet:
        sys.stderr.write(f"\n{result.status}: test acc {result.test_acc}  ({wall:.1f} s)\n")
        if result.message:
            sys.stderr.write(result.message + "\n")
    if args.json:
        _print_json(final_json(result, run_id, params, wall))
    if result.status == "done":
        return 0
    return 130 if presses else 1


def cmd_resume(args: argparse.Namespace) -> int:
    """Continue an interrupted or stopped run from its last epoch checkpoint, in the same run folder."""
    t0 = time.perf_counter()
    from .jobs import JobManager

    manager = JobManager(max_concurrent=1)
    run_id = manager.resume(args.run_id)
    if not args.quiet:
        sys.stderr.write(f"resuming run {run_id} in {manager.store.get(run_id).path}\n")
    return _finish(manager, run_id, args, t0)


def cmd_fork(args: argparse.Namespace) -> int:
    """Start a new run from a saved epoch of another run with changed hyperparameters."""
    t0 = time.perf_counter()
    from .jobs import JobManager

    over, data = recipe_overrides(args)
    if data:
        over["data"] = data
    manager = JobManager(max_concurrent=1)
    run_id = manager.fork(args.run_id, args.epoch, over, name=args.name)
    if not args.quiet:
        view = manager.get(run_id)
        sys.stderr.write(f"fork {run_id} of {args.run_id} from epoch {view.parent['epoch']} "
                         f"in {manager.store.get(run_id).path}\n")
    return _finish(manager, run_id, args, t0)


def add_run_commands(sub: Any) -> None:
    """Register runs, resume and fork on the `python -m cnnlab` subparsers."""
    rp = sub.add_parser("runs", help="list saved runs with status, preset, best validation and test accuracy")
    rp.add_argument("--json", action="store_true", help="print the runs as one JSON list")
    rp.set_defaults(func=cmd_runs)

    sp = sub.add_parser("resume", help="continue an interrupted or stopped run from its last epoch")
    sp.add_argument("run_id", help="id of the run to resume (see `python -m cnnlab runs`)")
    sp.add_argument("--quiet", action="store_true", help="no progress output")
    sp.add_argument("--json", action="store_true", help="print the final metrics as one JSON line")
    sp.set_defaults(func=cmd_resume)

    fp = sub.add_parser("fork", help="start a new run from a saved epoch of a run, with changed hyperparameters")
    fp.add_argument("run_id", help="id of the run to fork from (see `python -m cnnlab runs`)")
    fp.add_argument("--epoch", type=int, help="saved epoch to start from (default: the last saved one)")
    add_recipe_args(fp)  # --epochs is the last epoch on the parent's axis: more than --epoch
    fp.add_argument("--name", help="display name of the new run")
    fp.add_argument("--quiet", action="store_true", help="no progress output")
    fp.add_argument("--json", action="store_true", help="print the final metrics as one JSON line")
    fp.set_defaults(func=cmd_fork)
