"""The one door from the pages to runs: every page asks a `Lab` and nothing else about runs and jobs.

Pages launch, resume, fork, stop and tweak jobs, rename, tag, delete, import and export runs, list
them, load their models and evaluate them here; they never import the run store or reach a private
name. One door means one behaviour: a rename made on any page goes through the job manager, so the
Train page's view of a training job shows it too; a run deleted in another tab is a `RunGone` message
(a LabError), never a traceback.

Arrows: pages -> lab -> jobs / sweeps -> engine -> data / models; the store sits beside them.
"""

from __future__ import annotations

from typing import Any, Iterable

from . import compare as C
from . import trainform as tf
from .jobs import JobManager, JobView
from .modelsource import LoadedModel, ModelRef, ModelSource
from .runs import RunInfo, RunNotFound
from .status import ACTIVE


class RunGone(RunNotFound):
    """The run was there when the page listed it and is gone now (deleted in another tab, say)."""


class Lab:
    """Runs and jobs for the pages: a facade over the job manager, the run store and the model cache."""

    def __init__(self, manager: JobManager):
        self.manager = manager
        self._store = manager.store
        self.models = ModelSource(self._store, manager)  # Draw and Compare load models through it

    def _handle(self, run_id: str) -> Any:
        try:
            return self._store.get(run_id, live_ids=self.manager.live_ids())
        except RunNotFound:
            raise RunGone(f"run '{run_id}' is no longer in the store (deleted, maybe in another tab); "
                          "the list shows what is there now") from None

    def _guard(self, run_id: str, fn: Any, *args: Any, **kw: Any) -> Any:
        """fn(*args), with a vanished run said plainly."""
        try:
            return fn(*args, **kw)
        except RunNotFound:
            self._handle(run_id)  # raises RunGone when the folder is gone
            raise

    # ---- listing
    def list_runs(self) -> list[RunInfo]:
        """Every run in the store, newest first, this process's jobs known as live."""
        return self.manager.list_runs()

    def saved_runs(self) -> list[RunInfo]:
        """Store runs that this process is not training right now."""
        return tf.saved_runs(self.manager)

    def jobs(self) -> list[JobView]:
        """This process's jobs, newest first."""
        return self.manager.jobs()

    def job(self, run_id: str) -> JobView | None:
        return self.manager.get(run_id)

    def live_ids(self) -> set[str]:
        return self.manager.live_ids()

    @property
    def max_concurrent(self) -> int:
        return self.manager.max_concurrent

    def set_max_concurrent(self, n: int) -> None:
        self.manager.set_max_concurrent(n)

    def is_stored_run(self, run_id: Any) -> bool:
        return tf.is_stored_run(self.manager, run_id)

    def stored_key(self, run_id: str) -> tuple:
        return tf.stored_key(self.manager, run_id)

    def stored_view(self, run_id: Any) -> tf.StoredRunView | None:
        return tf.stored_view(self.manager, run_id)

    def config(self, run_id: str) -> dict:
        """A run's config.json (RunGone if it vanished)."""
        return self._handle(run_id).config

    def has_checkpoint(self, run_id: str, which: str) -> bool:
        return self._handle(run_id).has_checkpoint(which)

    # ---- jobs
    def launch(self, preset: str, custom: bool, text: str, values: dict, name: str | None = None) -> str:
        """Validate the Train form and start a job; its run id."""
        return tf.launch(self.manager, preset, custom, text, values, name=name)

    def resume(self, run_id: str) -> str:
        return self._guard(run_id, self.manager.resume, run_id)

    def fork_defaults(self, run_id: str) -> tf.ForkDefaults:
        return self._guard(run_id, tf.fork_defaults, self.manager, run_id)

    def fork(self, run_id: str, epoch: Any, lr: Any, epochs: Any, optimizer: Any, name: str | None = None) -> str:
        """Validate the fork form and start the fork; the new run id."""
        return self._guard(run_id, tf.fork_run, self.manager, run_id, epoch, lr, epochs, optimizer, name=name)

    def pause(self, run_id: str) -> None:
        self.manager.pause(run_id)

    def unpause(self, run_id: str) -> None:
        self.manager.unpause(run_id)

    def stop(self, run_id: str, *, after_epoch: bool = False) -> None:
        self.manager.stop(run_id, after_epoch=after_epoch)

    def set_live(self, run_id: str, **changes: float) -> None:
        self.manager.set_live(run_id, **changes)

    # ---- managing runs
    def rename(self, run_id: str, name: str) -> str:
        """Rename in the store and in the job's view (the Train page shows it); the stored name."""
        return self._guard(run_id, self.manager.rename, run_id, name)

    def set_tags(self, run_id: str, tags: Iterable[str]) -> list[str]:
        return self._guard(run_id, self._store.set_tags, run_id, tags)

    def set_notes(self, run_id: str, notes: str) -> str:
        return self._guard(run_id, self._store.set_notes, run_id, notes)

    def delete(self, run_id: str) -> None:
        """Delete a run's folder; refused while it is queued, running or paused here or elsewhere."""
        live = {i.id for i in self.manager.list_runs() if i.status in ACTIVE}
        self._guard(run_id, self._store.delete, run_id, live_ids=live)

    def import_zip(self, data: bytes) -> tuple[str, str | None, str | None]:
        """Import a run zip: (new id, the run it duplicates or None, the copy's name or None)."""
        dup = C.already_imported(self._store, data)
        new_id = C.import_run(self._store, data)
        if dup is None:
            return new_id, None, None
        names = {i.id: i.name for i in self.manager.list_runs()}
        copy = self._store.rename(new_id, C.copy_name(names.get(dup, dup), names.values()))
        return new_id, dup, copy

    def export_zip(self, run_id: str) -> bytes:
        return self._guard(run_id, self._store.export_zip, run_id)

    def metrics_csv(self, run_id: str) -> str:
        return self._guard(run_id, self._store.metrics_csv, run_id)

    def checkpoint_bytes(self, run_id: str, which: str) -> bytes:
        return self._guard(run_id, C.checkpoint_bytes, self._store, run_id, which)

    def code_problem(self, run_id: str) -> str | None:
        """Why the run cannot be exported as code now, or None."""
        from . import export as E

        return E.run_code_problem(self._store, run_id)

    def export_code_zip(self, run_id: str) -> bytes:
        from . import export as E

        return self._guard(run_id, E.export_zip, self._store, run_id, "code")

    # ---- models and evaluation
    def load_model(self, run_id: str, which: str = "best") -> LoadedModel:
        return self._guard(run_id, self.models.load, ModelRef(run_id, which))

    def available_checkpoints(self, run_id: str) -> list[str]:
        return self._guard(run_id, C.available_checkpoints, self._store, run_id)

    def evaluate(self, run_id: str, which: str = "best") -> C.Evaluation:
        return self._guard(run_id, C.evaluate_run, self._store, run_id, which, source=self.models)

    def curves(self, infos: list[RunInfo], metric: str, xaxis: str) -> list[C.Curve]:
        return C.curves(self._store, infos, metric, xaxis)

    def saved_epochs(self, run_id: str) -> list[int]:
        from . import epochs

        return self._guard(run_id, epochs.saved_epochs, self._store, run_id)

    def epoch_probs(self, run_id: str, x: Any) -> Any:
        from . import epochs

        return self._guard(run_id, epochs.epoch_probs, self._store, run_id, x)
