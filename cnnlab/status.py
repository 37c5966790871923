"""The statuses of a run or job: the one list every module reads.

A run is queued, then running (paused while paused), and ends done, stopped, failed or diverged; the
store reports a run whose status is active but whose process is gone as interrupted.
"""

STATUSES = ("queued", "running", "paused", "done", "stopped", "failed", "diverged", "interrupted")
ACTIVE = ("queued", "running", "paused")  # a job of some process may still change it
FINAL = ("done", "stopped", "failed", "diverged", "interrupted")  # it will not change (until a resume)
RESUMABLE = ("stopped", "failed", "diverged", "interrupted")  # resume continues it from last.pt
