"""What a resume or a fork starts from: its validated plan, its weights, and a resume's state on disk.

The run handle reads the files (`RunHandle.planned_epochs`, `epochs_set_after`, `fork_weights`, `rewind`);
this module turns them into what `JobManager.resume` / `fork` queue and what a resumed job's worker
starts from. A stored run's spec and recipe enter the lab here, so they are validated here (`plan_run`).
"""

from __future__ import annotations

from .. import data as D
from ..errors import CheckpointError, ConfigError, LabError
from ..plan import RunPlan, plan_run
from ..recipe import TrainConfig
from ..runs import ACTIVE, RunHandle, RunStore, effective_status
from .job import _Job

RESUME_KEYS = ("model", "optimizer", "epoch", "step", "gen_state")  # what last.pt must hold to resume


def resume_plan(handle: RunHandle, live_ids: set[str]) -> tuple[RunPlan, dict | None]:
    """(plan, parent) of a run that may resume here; LabError if it is active elsewhere or done.

    The caller holds the run's writer lock, so no other process starts it meanwhile.
    """
    state, _, _ = effective_status(handle.status, live_ids, handle.id)
    if state in ACTIVE:
        raise LabError(f"run '{handle.id}' is {state} in another process (pid {handle.status.get('pid')})")
    if state == "done":
        raise LabError(f"run '{handle.id}' is done; fork it to train further")
    cfgd = handle.config
    plan = plan_run(cfgd.get("spec"), TrainConfig.from_dict(cfgd.get("recipe")))  # it enters from disk
    parent = cfgd.get("parent") if isinstance(cfgd.get("parent"), dict) else None
    return plan, parent


def fork_plan(src: RunHandle, epoch: int | None, overrides: dict | None) -> tuple[RunPlan, dict, dict]:
    """(plan, weights, parent) of a new run from `src`'s weights after `epoch` (default: its last saved
    epoch) with recipe `overrides` (ConfigError naming the field)."""
    cfgd = src.config
    weights, epoch = src.fork_weights(epoch)
    over = dict(overrides or {})
    recipe = dict(cfgd.get("recipe") or {})
    recipe["epochs"] = src.planned_epochs()  # a live-edited count, not the launch recipe's
    data_over = over.pop("data", None) or {}
    if isinstance(data_over, D.DataConfig):
        data_over = data_over.to_dict()
    data = {**(recipe.pop("data", None) or {}), **data_over}
    cfg = TrainConfig.from_dict({**recipe, "data": data}, **over)
    if cfg.epochs <= epoch:
        raise ConfigError("epochs", f"the fork starts after epoch {epoch}, so epochs (the last epoch, counted "
                                    f"like the parent's) must be more than {epoch}, got {cfg.epochs}")
    return plan_run(cfgd.get("spec"), cfg), weights, {"run_id": src.id, "epoch": epoch}


def prepare_resume(job: _Job, store: RunStore, live_ids: set[str]) -> dict | None:
    """Load last.pt, drop the records written after it, prefill the view; the resume state or None.

    Without last.pt (stopped in its first epoch) the run restarts from its beginning (or, for a fork,
    from its parent's weights).
    """
    handle = job.handle
    state = handle.load_checkpoint("last") if handle.has_checkpoint("last") else None
    if state is not None:
        for key in RESUME_KEYS:
            if key not in state:
                raise CheckpointError(f"{handle.path / 'last.pt'} is not a resumable checkpoint (no '{key}')")
        epoch, step = int(state["epoch"]), int(state["step"])
        if epoch > 0 and (epoch not in handle.epoch_checkpoints() or handle.saved_epoch(f"epoch_{epoch}") != epoch):
            # a kill while epoch_<k>.pt was written (runs saved before last.pt went last): restore it
            handle.save_checkpoint({"model": state["model"], "epoch": epoch, "step": step}, f"epoch_{epoch}")
    else:
        if job.fork_from:
            src = store.get(job.fork_from["run_id"], live_ids=live_ids)
            job.init_weights, _ = src.fork_weights(int(job.fork_from["epoch"]))
        epoch = job.start_epoch
        step = epoch * job.steps_per_epoch
    later = handle.epochs_set_after(step, epoch)
    handle.rewind(step, epoch)
    if later is not None:  # changed after the checkpoint: apply it again at the resume step
        job.control.live.set(epochs=later)
    job.continue_from(epoch, step)
    return state
