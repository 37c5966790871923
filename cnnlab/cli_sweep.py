"""Command line for sweeps: `sweep --preset NAME --trials N --param FIELD=SPEC ... [--json]` and `sweeps [--json]`.

`sweep` runs the trials on Ray Tune (a local Ray sized to this machine, or the cluster at `--address` /
RAY_ADDRESS) and writes each trial into the run store as it goes; with `--json` the last line is one
JSON object: sweep_id, status, best, trials (run_id, params, status, best_val_acc, test_acc, ...).
Exit status: 0 when the sweep ran (even if some trials failed), 1 when it failed or was stopped, 2 for a
user error (bad space, unreachable address: nothing is written), 130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import sys

from .cli_common import _print_json, add_recipe_args, recipe_overrides


def base_from_args(args: argparse.Namespace) -> tuple[str, list[dict], dict]:
    """(preset, spec, recipe dict) of the sweep's base: the preset with the recipe flags applied."""
    from .presets import get_preset
    from .recipe import TrainConfig

    p = get_preset(args.preset)
    over, data_over = recipe_overrides(args)
    recipe = dict(p.recipe)
    cfg = TrainConfig.from_dict({**recipe, "data": {**recipe.pop("data", {}), **data_over}}, **over)
    return p.name, p.spec, cfg.to_dict()  # validated with the whole definition (make_def)


def cmd_sweep(args: argparse.Namespace) -> int:
    from .sweeps.space import make_def

    if args.definition:  # the app: a definition it has validated, written as JSON
        import json

        from .sweeps.space import SweepDef

        with open(args.definition, encoding="utf-8") as f:
            defn = SweepDef.from_dict(json.load(f)).validate()
    else:
        if not args.preset or args.trials is None:
            from .errors import ConfigError

            raise ConfigError("preset" if not args.preset else "trials", "is required (--preset NAME --trials N)")
        preset, spec, recipe = base_from_args(args)
        defn = make_def(preset, spec, recipe, args.param or [], trials=args.trials, concurrent=args.concurrent,
                        search=args.search, early_stop=args.early_stop, name=args.name or "")
    from .sweeps import cluster

    addr = cluster.resolve_address(args.address)
    if addr is not None:  # before Ray Tune's imports and MNIST: a bad address is a message within seconds
        cluster.ray_env_defaults()
        cluster.check_cluster(addr)
    from .sweeps.driver import default_log, run_sweep

    log = (lambda s: None) if args.quiet else default_log
    out = run_sweep(defn, address=args.address, sweep_id=args.sweep_id, log=log)
    if not args.quiet:
        best = out["best"]
        sys.stderr.write(f"sweep {out['sweep_id']} {out['status']}: {len(out['trials'])} trials"
                         + (f", best {best['run_id']} (val {best['best_val_acc']:.4f})" if best else "") + "\n")
    if args.json:
        _print_json(out)
    return 0 if out["status"] == "done" else 1


def cmd_sweeps(args: argparse.Namespace) -> int:
    """List sweeps with their space, search, status and best trial."""
    from .runs import RunStore
    from .sweeps.driver import summary
    from .sweeps.store import SweepStore

    sweeps = SweepStore(RunStore())
    out = [summary(sweeps, rec["id"]) for rec in sweeps.list()]
    if args.json:
        _print_json(out)
        return 0
    if not out:
        print("no sweeps")
    for s in out:
        best = s["best"]
        print(f"{s['sweep_id']}  {s['status']:<11} {s['preset']:<14} {s['search']:<6} {len(s['trials'])} trials  "
              f"{' '.join(s['space'] or [])}  best: {best['run_id'] if best else '-'}")
    return 0


def add_sweep_commands(sub: argparse._SubParsersAction) -> None:
    """Register sweep and sweeps on the `python -m cnnlab` subparsers."""
    sp = sub.add_parser("sweep", help="run many trials over a search space on Ray Tune (local Ray or a cluster)")
    sp.add_argument("--preset", help="base architecture and recipe (a preset name; the Sweep page also takes custom layers)")
    sp.add_argument("--trials", type=int, help="number of trials (grid: the number of combinations)")
    sp.add_argument("--param", action="append", metavar="FIELD=SPEC",
                    help="loguniform:LO:HI, uniform:LO:HI, int:LO:HI or choice:A,B,C; fields: lr, weight_decay, "
                         "momentum, label_smoothing, batch_size, epochs, seed, optimizer, scheduler, aug_strength, "
                         "subset, width (multiplier of every hidden conv layer's channels)")
    sp.add_argument("--concurrent", type=int, help="trials at once (default: as many as there are CPUs)")
    sp.add_argument("--search", choices=("random", "grid", "tpe"), default="random",
                    help="random sampling, a grid over choice/int fields, or Optuna's TPE (default random)")
    sp.add_argument("--early-stop", action="store_true", dest="early_stop",
                    help="ASHA: stop trials whose validation accuracy falls behind")
    add_recipe_args(sp)  # the base recipe: --epochs, --subset, --lr ...
    sp.add_argument("--address", help="HOST:PORT of a Ray cluster (default: RAY_ADDRESS, else a local Ray)")
    sp.add_argument("--name", help="display name of the sweep (trials are named after it)")
    sp.add_argument("--sweep-id", dest="sweep_id", help=argparse.SUPPRESS)
    sp.add_argument("--definition", help=argparse.SUPPRESS)  # JSON of a SweepDef (the app's launcher)  # the app picks the id it follows
    sp.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    sp.add_argument("--json", action="store_true", help="print the sweep's summary as one JSON line")
    sp.set_defaults(func=cmd_sweep)

    lp = sub.add_parser("sweeps", help="list sweeps with their space, search and best trial")
    lp.add_argument("--json", action="store_true", help="print the sweeps as one JSON line")
    lp.set_defaults(func=cmd_sweeps)
