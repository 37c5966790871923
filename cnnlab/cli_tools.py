"""Command line tools around runs: `lr-find --preset NAME [--json]` and `export RUN_ID --format F --out DIR`.

Exit status: 0 on success, 2 for a user error (LabError, printed as a message), 130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from .cli_common import _print_json, add_recipe_args, recipe_overrides


def cmd_lr_find(args: argparse.Namespace) -> int:
    """Run an LR range test on a preset's architecture and recipe; print the suggested learning rate."""
    from .data import load_mnist
    from .lrfind import END_LR, RULE_TEXT, START_LR, lr_range_test, preset_config

    over, data = recipe_overrides(args)
    over.pop("lr", None)  # the test sweeps the LR itself
    plan = preset_config(args.preset, **over, data=data)
    last = [0.0]

    def progress(rec: dict) -> None:
        if args.quiet or rec["step"] - last[0] < 10 and rec["step"] != rec["steps"]:
            return
        last[0] = rec["step"]
        sys.stderr.write(f"\rstep {rec['step']}/{rec['steps']}  lr {rec['lr']:.2e}  loss {rec['smoothed']:.4f}   ")
        sys.stderr.flush()

    res = lr_range_test(plan, load_mnist(), steps=args.steps, on_step=progress)
    if not args.quiet:
        sys.stderr.write("\n")
    out = {"preset": args.preset, "suggested_lr": res.suggestion, "rule": res.rule, "min_loss_lr": res.min_lr,
           "steepest_lr": res.steepest_lr, "recipe_lr": res.recipe_lr, "steps": len(res.lrs),
           "stop_reason": res.stop_reason, "wall_s": round(res.wall_s, 2),
           "range": [START_LR, END_LR], "lrs": res.lrs, "smoothed_loss": res.smoothed}
    if args.json:
        _print_json(out)
    elif res.suggestion is None:
        print(f"no suggestion: the loss exploded after {len(res.lrs)} steps (lr {res.lrs[-1] if res.lrs else START_LR:.2e})")
    else:
        print(f"suggested lr {res.suggestion:.3g} ({RULE_TEXT}; minimum at {res.min_lr:.3g}; "
              f"recipe {res.recipe_lr:g}; {len(res.lrs)} steps, {res.stop_reason}, {res.wall_s:.1f} s)")
    return 0 if res.suggestion is not None else 1


def cmd_export(args: argparse.Namespace) -> int:
    """Export a saved run's model as standalone code, ONNX or TorchScript."""
    from .export import export_run
    from .runs import RunStore

    files = export_run(RunStore(), args.run_id, args.format, args.out, args.weights)
    if args.json:
        _print_json({"run_id": args.run_id, "format": args.format, "files": [str(f) for f in files]})
    else:
        for f in files:
            print(f)
    return 0


def add_tool_commands(sub: Any) -> None:
    """Register lr-find and export on the `python -m cnnlab` subparsers."""
    from .export import FORMATS, WEIGHTS
    from .lrfind import STEPS

    lp = sub.add_parser("lr-find", help="LR range test: suggest a learning rate for a preset's recipe")
    lp.add_argument("--preset", required=True, help="architecture and recipe to test (a preset name)")
    add_recipe_args(lp)  # --lr is ignored: the test sweeps it
    lp.add_argument("--steps", type=int, default=STEPS, help=f"steps from 1e-6 to 10 (default {STEPS})")
    lp.add_argument("--quiet", action="store_true", help="no progress on stderr")
    lp.add_argument("--json", action="store_true", help="print the result and the curve as one JSON line")
    lp.set_defaults(func=cmd_lr_find)

    ep = sub.add_parser("export", help="export a saved run's model: standalone code, ONNX or TorchScript")
    ep.add_argument("run_id", help="the saved run to export (see `runs`)")
    ep.add_argument("--format", choices=FORMATS, default="code", help="code (model.py + safetensors + predict.py), onnx or torchscript")
    ep.add_argument("--out", required=True, help="folder to write into (created if needed)")
    ep.add_argument("--weights", choices=WEIGHTS, help="which checkpoint (default: best, else last)")
    ep.add_argument("--json", action="store_true", help="print the written files as one JSON line")
    ep.set_defaults(func=cmd_export)
