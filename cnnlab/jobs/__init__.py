"""Background training jobs: a process-wide manager, workers, read-only views.

`JobManager` runs `engine.Trainer` for each job, at most `max_concurrent` at once (default 2); more wait
in a FIFO queue. Where a job trains is `workers`: "process" (what the app uses, `settings.job_workers()`)
trains each job in a training process of its own (`jobs.child`, started by `jobs.process.ChildProcess`;
a spare one has already imported torch and loaded MNIST), so a job trains like `python -m cnnlab train`
whatever the pages do: no page script run takes its GIL, and its OpenMP pool is the process's only one (in
a server thread seed002 trained at 0.82 of the CLI's rate with no page open, measured in one run). The
job's daemon thread then relays: controls and live changes to the child, the child's records to the job's
callback hooks. "thread" (the default of the class: tests, the CLI's resume and fork) trains in that
daemon thread itself, with data from `mnist_loader`. Every job writes to the run store through `recorder.RunRecorder`, so app
and CLI runs look the same on disk, and to an in-memory, append-only record list that any number of
readers follow with `JobView.records_since(k)` (readers never consume: several tabs can follow one job).
The worker never imports or calls Streamlit. The record list is a `runs.records.RunRecords`: once a job has ended
its records are on disk, the list is dropped and its readers read the store (`runs.records.stored`).
Modules: `job` (`_Job`, a Trainer callback after the recorder; `JobView`; the thread budget), `manager`
(`JobManager`: the queue, the slots and the public calls), `worker` (how one job trains, in a thread or a
training process, to a final status), `lineage` (what a resume or a fork starts from: its plan, weights
and resume state, read through the run handle's `planned_epochs`, `epochs_set_after`, `fork_weights`,
`rewind`), `process` (the parent's side of a training process) and `child` (the training process).

Policies:
- **States**: queued, running, paused, done, stopped, failed, diverged (interrupted is what the store
  reports for a run whose process died). A worker's `finally` always leaves a final status; anything
  raised outside `Trainer.run` (data loading, a bad checkpoint, the store) makes the job `failed` with
  its message and traceback, and the next queued job starts.
- **Starting**: between Launch and the first step a job loads MNIST (once per process; `preload_data`
  does it at app start), reads its checkpoint (resume) and builds the model; `JobView.phase` names the
  step it is in (`PHASES`) so the page can say so, and is empty from the first step record on.
- **Pause / stop / live changes** take effect at the next step boundary (one optimizer step: tens of ms
  on CPU for every preset; the epoch-end validation pass is not interrupted) and are recorded as events.
  `stop(id)` on a queued job removes it from the queue (status stopped). `stop(id, after_epoch=True)`
  lets the current epoch finish and checkpoint first, so a later `resume` loses nothing.
- **Live LR vs scheduler** (the engine's policy): a live learning rate *rescales the schedule* from the
  step it is applied on, `lr_t = schedule(t) * scale` with `scale` chosen so that `lr_t` equals the new
  value at that step. The schedule keeps its shape: a later StepLR drop or the one-cycle/cosine decay
  still happens, relative to the user's value. Neither silently wins; the `set` event records the step,
  epoch and old/new values. Momentum, weight decay and augmentation strength are plain overrides.
- **Live epochs**: more epochs extend the run; fewer end it at the end of the epoch in progress (a value
  below the epochs already done or in progress ends it there, and the event records what was asked).
  One-cycle and cosine schedules re-stretch what is left of them over the new total from that step
  (`optim.stretched_step`: no jump in the LR, the schedule ends at the new last step); StepLR keeps its
  steps. The count is saved in every checkpoint and in status.json (`epochs_planned`), so a resumed run
  keeps it (a change made after the last checkpoint is applied again at the resume step, as a new
  `set` event), and a fork's default `epochs` is the parent's current count.
- **Threads**: with torch's OpenMP backend `torch.set_num_threads` holds per thread once that thread
  has run a parallel op (measured here: a thread that set 1 keeps 1 while another sets 2). Each worker
  therefore sets its own count, and re-checks it at every step: `cores // running jobs`, at least 1.
  A lone job uses every core, like the CLI (so following a run in the page costs it nothing), and two
  jobs on 2 cores get 1 each instead of four OpenMP threads fighting over two cores (measured on the
  busy box: seed002 fell from 3.5k to 1.6k images/s when its second thread had no core to run on).
  Page inference runs with 1 thread in its own thread (`settings.limit_threads`).
  `JobManager(threads=n)` (default: the environment's `CNNLAB_THREADS`) fixes the count instead. Same seed and config give the same curves
  bit for bit under the same thread count (oneDNN splits its reductions by thread; the initial
  weights never depend on other jobs: `models.init_weights` uses a private generator).
- **Viewers gone**: a job belongs to the process, not to a browser tab. When every tab following it
  closes it keeps training to its end (or until stopped); any later page can find it with `jobs()` /
  `get(id)` and read its whole record list. `shutdown()` stops everything (status stopped); a process
  that dies instead leaves runs the store reports as `interrupted`, resumable from their last epoch.
- **Resume** continues an interrupted/stopped/failed/diverged run in the same folder from `last.pt`
  (model, optimizer, epoch, step, LR scale, the data-order and dropout generators). Records written after
  that checkpoint (the partial epoch) are dropped first (`RunHandle.rewind`) so the curve continues
  without repeated steps, and a `resumed` event marks the point. With the same seed the resumed curve
  equals an uninterrupted one (tests check it). Every job draws from its own generators (data order,
  augmentation, dropout masks: never torch's process-wide RNG), so starting a job does not change the
  curves of jobs already running.
- **Fork** starts a new run from the weights saved after epoch K of another run (`epoch_K.pt`, or
  last.pt/best.pt when they hold that epoch) with changed hyperparameters and a fresh optimizer; its
  counters start at the fork point (epoch K, step K * steps_per_epoch) so the two overlay, `epochs` is the
  last epoch on that shared axis, and config.json records `parent: {"run_id", "epoch"}`.
"""

from .job import FINAL, IPS_SMOOTHING, MAX_CONCURRENT, PHASES, JobView, cpu_cores, threads_per_job
from .manager import JobManager

__all__ = ["FINAL", "IPS_SMOOTHING", "MAX_CONCURRENT", "PHASES", "JobManager", "JobView", "cpu_cores",
           "threads_per_job"]
