"""The sweep driver: Ray Tune runs the trials; a Tune callback writes each one into the run store live.

`run_sweep` takes a definition validated where it entered (`SweepDef.validate`), connects to Ray (local
or a cluster, `cluster.connect`), loads MNIST once and hands it to every trial through the object store,
and runs `tune.Tuner` with the space, the search algorithm (random, grid, Optuna TPE) and optionally ASHA.
`StoreCallback` runs in this process: on a trial's start it creates the run (config.json carries `sweep`
and `sweep_params`); on each result it replays the trial's records through the engine's own `RunRecorder`
(metrics, events, last.pt, epoch_<k>.pt, best.pt, status, result), so a trial's folder is the same as any
run's. The runs' status carries this process's pid: if the driver is killed, unfinished trials list as
interrupted and resume like any run.

Stopping: the page writes stop requests into the sweep's control.json; the callback polls it and tells
the `SweepControl` actor, which the trials poll between steps (a stopped trial ends "stopped" at its next
step with its last epoch saved); stopping the whole sweep also tells Tune to start no more trials.
Trials that ASHA ends early are recorded "stopped" with `early_stopped: true` and a message saying so.
"""

from __future__ import annotations

import io
import logging
import shutil
import sys
import tempfile
import time
from typing import Any, Callable

from ray import tune

from ..engine import TrainResult
from ..errors import LabError
from ..plan import plan_run
from ..recipe import TrainConfig
from ..recorder import RunRecorder, run_config
from ..runs import RunHandle, RunStore
from . import cluster
from .space import SweepDef, _g, apply_sample, to_tune
from .store import SweepStore, best_trial, new_sweep_id, summary

CONTROL_POLL_S = 0.5


class _TrialProxy:
    """What `RunRecorder` reads from a Trainer, rebuilt in the driver from a trial's reports."""

    def __init__(self, cfg: TrainConfig):
        self.cfg = cfg
        self.epoch, self.step = 0, 0
        self.steps_per_epoch = cfg.steps_per_epoch()
        self.epochs = cfg.epochs  # planned epochs (a trial's count is not changed live)
        self.best_val_acc: float | None = None
        self.best_epoch: int | None = None
        self.state: dict | None = None

    def load(self, blob: bytes, rec: dict) -> None:
        import torch

        self.state = torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)
        self.epoch, self.step = rec["epoch"], rec["step"]
        self.best_val_acc, self.best_epoch = self.state.get("best_val_acc"), self.state.get("best_epoch")

    def checkpoint_state(self) -> dict:
        return self.state

    def weights_copy(self) -> dict:
        return self.state["model"]


class _TrialRef:
    """A Tune trial as far as `_end_without_final` needs one: its id."""

    def __init__(self, trial_id: str):
        self.trial_id = trial_id


class _Trial:
    def __init__(self, n: int, handle: RunHandle, recorder: RunRecorder, proxy: _TrialProxy, params: dict):
        self.n, self.handle, self.recorder, self.proxy, self.params = n, handle, recorder, proxy, params
        self.final = False


def trial_name(sweep_name: str, n: int, params: dict) -> str:
    shown = ", ".join(f"{k}={_g(v) if isinstance(v, float) else v}" for k, v in params.items())
    return f"{sweep_name} #{n}" + (f": {shown}" if shown else "")


class StoreCallback(tune.Callback):
    """Runs in the driver: writes each trial into the run store as Tune hands over its results."""

    def __init__(self, defn: SweepDef, sweep_id: str, store: RunStore, sweeps: SweepStore, control: Any,
                 log: Callable[[str], None]):
        self.defn, self.sweep_id, self.store, self.sweeps, self.control, self.log = (
            defn, sweep_id, store, sweeps, control, log)
        self.trials: dict[str, _Trial] = {}
        self.user_stopped: set[str] = set()
        self.stop_all = False
        self._next_poll = 0.0
        self._name = defn.name or sweep_id

    def __getstate__(self) -> dict:  # Tune pickles its config for restores we never do
        return {}

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        if trial.trial_id in self.trials:
            return
        params = {k: trial.config[k] for k in (p.field for p in self.defn.params) if k in trial.config}
        n = len(self.trials) + 1
        try:
            plan = plan_run(*apply_sample(self.defn.spec, self.defn.recipe, params))
        except LabError:  # the trial reports the error itself; the base (checked by defn.validate) is recorded
            plan = self.defn.validated_base()
        config = run_config(self.defn.preset, plan, source="sweep")
        config.update(sweep=self.sweep_id, sweep_params=params, sweep_trial=n)
        handle = self.store.create(config, name=trial_name(self._name, n, params), lock=True)  # one writer
        recorder = RunRecorder(handle)
        proxy = _TrialProxy(plan.cfg)
        recorder.on_start(proxy)
        self.trials[trial.trial_id] = _Trial(n, handle, recorder, proxy, params)
        self.log(f"trial {n} started: {handle.id}  {trial_name('', n, params).split(': ', 1)[-1]}")

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        t = self.trials.get(trial.trial_id)
        recs, blob, final = result.pop("_recs", []), result.pop("_state", None), result.pop("_final", None)
        if t is None:
            return
        for rec in recs:
            kind = rec.get("kind")
            if kind == "step":
                t.recorder.on_step(t.proxy, rec)
            elif kind == "event":
                t.recorder.on_event(t.proxy, rec)
            elif kind == "epoch" and blob is not None:
                t.proxy.load(blob, rec)
                t.recorder.on_epoch(t.proxy, rec)
        if final is not None:
            t.final = True
            t.recorder.on_end(t.proxy, TrainResult(**final))
            t.handle.release_writer()
            acc = final.get("test_acc")
            self.log(f"trial {t.n} {final['status']}: best val {_pct(final.get('best_val_acc'))}, "
                f"test {_pct(acc)}" + (f" ({final['message']})" if final.get("message") else ""))
        self._update_best()

    def _end_without_final(self, trial: Any, status: str, message: str, **extra: Any) -> None:
        t = self.trials.get(trial.trial_id)
        if t is None or t.final:
            return
        t.final = True
        res = TrainResult(status=status, message=message, epochs_done=t.proxy.epoch, step=t.proxy.step,
                          best_val_acc=t.proxy.best_val_acc, best_epoch=t.proxy.best_epoch,
                          train_s=float((t.proxy.state or {}).get("elapsed") or 0.0))
        t.recorder.on_end(t.proxy, res)
        if extra:
            t.handle.write_status(**extra)
        t.handle.release_writer()
        self.log(f"trial {t.n} {status}: {message}")

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        t = self.trials.get(trial.trial_id)
        if t is None or t.final:
            return
        after = f"after epoch {t.proxy.epoch}"
        if trial.trial_id in self.user_stopped:
            self._end_without_final(trial, "stopped", f"stopped by the user {after}")
        elif self.stop_all:
            self._end_without_final(trial, "stopped", f"stopped with the sweep {after}")
        elif self.defn.early_stop:
            self._end_without_final(trial, "stopped", f"early-stopped by ASHA {after}: its validation "
                                    "accuracy was behind the other trials'", early_stopped=True)
        else:
            self._end_without_final(trial, "stopped", f"ended by Ray Tune {after}")
        self._update_best()

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        message = "the trial failed in its Ray worker"
        try:
            err = trial.get_error()
            if err is not None:
                message = f"{type(err).__name__}: {str(err).strip().splitlines()[-1][:500]}"
        except Exception:  # noqa: BLE001 - the message is best effort
            pass
        self._end_without_final(trial, "failed", message)

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        now = time.monotonic()
        if now < self._next_poll:
            return
        self._next_poll = now + CONTROL_POLL_S
        req = self.sweeps.stop_requests(self.sweep_id)
        if req["all"] and not self.stop_all:
            self.request_stop_all()
        by_run = {t.handle.id: tid for tid, t in self.trials.items()}
        for run_id in req["runs"]:
            tid = by_run.get(run_id)
            if tid is not None and tid not in self.user_stopped:
                self.user_stopped.add(tid)
                self.control.stop.remote(tid)
                self.log(f"stopping trial {self.trials[tid].n} ({run_id})")

    def finish(self) -> None:
        """After Tune returns: trials it ended without telling us (a stopped sweep) end stopped, resumable."""
        for tid, t in list(self.trials.items()):
            if not t.final:
                why = "stopped with the sweep" if self.stop_all else "ended with the sweep"
                self._end_without_final(_TrialRef(tid), "stopped", f"{why} after epoch {t.proxy.epoch}")
        self._update_best()

    def request_stop_all(self) -> None:
        if not self.stop_all:
            self.log("stopping the sweep")
        self.stop_all = True
        self.control.stop_everything.remote()

    def _update_best(self) -> None:
        infos = [t.handle.info() for t in self.trials.values()]
        best = best_trial(infos)
        if best is not None:
            self.sweeps.update(self.sweep_id, best=best.id, best_val_acc=best.best_val_acc)


class SweepStopper(tune.Stopper):
    """Stops the trials the user stopped (at their next result) and, on request, the whole sweep."""

    def __init__(self, callback: StoreCallback):
        self.cb = callback

    def __getstate__(self) -> dict:
        return {}

    def __call__(self, trial_id: str, result: dict) -> bool:
        return trial_id in self.cb.user_stopped

    def stop_all(self) -> bool:
        return self.cb.stop_all


def _pct(v: Any) -> str:
    return f"{v * 100:.2f}%" if isinstance(v, (int, float)) else "-"


def _searcher(defn: SweepDef, seed: int) -> Any:
    if defn.search == "tpe":
        from optuna.samplers import TPESampler
        from ray.tune.search.optuna import OptunaSearch

        return OptunaSearch(sampler=TPESampler(seed=seed))
    if defn.search == "random":
        from ray.tune.search import BasicVariantGenerator

        return BasicVariantGenerator(random_state=seed)
    return None  # grid: Tune's default generator expands grid_search


def _scheduler(defn: SweepDef) -> Any:
    if not defn.early_stop:
        return None
    from ray.tune.schedulers import ASHAScheduler

    epochs = max([defn.validated_base().cfg.epochs]
                 + [int(v) for p in defn.params if p.field == "epochs" for v in p.probe_values()])
    # one report per epoch plus the final one (the test result) which must not be cut off
    return ASHAScheduler(time_attr="training_iteration", max_t=epochs + 1, grace_period=1, reduction_factor=2)


def run_sweep(defn: SweepDef, *, address: str | None = None, sweep_id: str | None = None,
              store: RunStore | None = None, log: Callable[[str], None] | None = None,
              on_started: Callable[[str], None] | None = None, seed: int = 0) -> dict:
    """Run a sweep to its end (or until stopped); returns the summary (`summary()`). LabError before start.

    `defn` was validated where it entered (`SweepDef.validate`: the page's form and the CLI's flags through
    `make_def`, the CLI's `--definition` file); here it is only checked against the CPUs of the Ray it gets.
    """
    defn.validated_base()  # trusted, not checked again
    log = log or (lambda s: None)
    store = store or RunStore()
    sweeps = SweepStore(store)
    sweep_id = sweep_id or new_sweep_id()
    from ..data import load_mnist

    addr = cluster.resolve_address(address)
    if addr is not None:
        cluster.ray_env_defaults()
        cluster.check_cluster(addr)  # an unreachable cluster or a refused token: a message within seconds
    mnist = load_mnist()  # before Ray: a missing MNIST is a message, not a failed trial per trial
    info = cluster.connect(address)
    storage = tempfile.mkdtemp(prefix="cnnlab-tune-")
    callback = None
    try:
        defn.fits(info.cpus)
        concurrent = defn.concurrent or min(defn.trials, info.cpus)
        threads = max(1, info.cpus // concurrent)
        sweeps.create(sweep_id, defn.to_dict(), address=info.address, concurrent=concurrent, cpus=info.cpus,
                      threads_per_trial=threads)
        if on_started:
            on_started(sweep_id)
        where = f"the Ray cluster at {info.address}" if info.address else "a local Ray"
        log(f"sweep {sweep_id}: {defn.trials} trials, {concurrent} at once on {where} ({info.cpus} CPUs)")
        callback, status, message = _fit(defn, sweep_id, store, sweeps, mnist, concurrent, threads, storage,
                                         log, seed)
    except LabError:
        raise
    except BaseException as exc:
        if sweeps.root.joinpath(sweep_id, "sweep.json").exists():
            sweeps.update(sweep_id, status="failed", message=f"{type(exc).__name__}: {exc}")
        raise
    finally:
        cluster.shutdown()
        shutil.rmtree(storage, ignore_errors=True)
    sweeps.update(sweep_id, status=status, message=message)
    return summary(sweeps, sweep_id)


def _fit(defn: SweepDef, sweep_id: str, store: RunStore, sweeps: SweepStore, mnist: Any, concurrent: int,
         threads: int, storage: str, log: Callable[[str], None], seed: int) -> tuple[Any, str, str]:
    import signal
    import threading

    from ray import tune

    from .trial import SweepControl, trainable

    # results live in the run store, not in Tune's result files (their loggers are off): no warnings at the end
    logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)
    control = SweepControl.remote()
    callback = StoreCallback(defn, sweep_id, store, sweeps, control, log)
    fn = tune.with_parameters(trainable, data=mnist, base={"spec": defn.spec, "recipe": defn.recipe},
                              control=control, threads=threads)
    tuner = tune.Tuner(
        tune.with_resources(fn, {"cpu": threads}),
        param_space=to_tune(defn.params, defn.search),
        tune_config=tune.TuneConfig(metric="val_acc", mode="max", search_alg=_searcher(defn, seed),
                                    scheduler=_scheduler(defn), max_concurrent_trials=concurrent,
                                    num_samples=1 if defn.search == "grid" else defn.trials, reuse_actors=True),
        run_config=tune.RunConfig(name=sweep_id, storage_path=storage, callbacks=[callback],
                                  stop=SweepStopper(callback), verbose=0,
                                  failure_config=tune.FailureConfig(max_failures=0),
                                  checkpoint_config=tune.CheckpointConfig(checkpoint_at_end=False)),
    )
    previous = None
    if threading.current_thread() is threading.main_thread():  # SIGTERM (the app stopping): stop cleanly
        previous = signal.signal(signal.SIGTERM, lambda *a: callback.request_stop_all())
    try:
        tuner.fit()
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    callback.finish()
    if callback.stop_all:
        return callback, "stopped", "stopped by the user"
    failed = [t for t in callback.trials.values() if _status(t.handle) == "failed"]
    if failed and len(failed) == len(callback.trials):
        return callback, "failed", "every trial failed"
    return callback, "done", ""


def _status(handle: RunHandle) -> str:
    try:
        return str(handle.status.get("status"))
    except LabError:
        return "error"


def default_log(line: str) -> None:
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


__all__ = ["run_sweep", "summary"]
