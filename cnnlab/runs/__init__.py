"""The run store: one folder per run under `settings.checkpoint_dir()`.

Layout of `<root>/<run id>/`:
  config.json    immutable: id, created (ISO), preset, spec, recipe, versions, parent, + caller's keys
  meta.json      mutable: name, tags, notes (free text, never used as a path)
  status.json    status, message, traceback, pid, proc_start, updated, epoch, step, best_val_acc,
                 test_acc, wall_s
  metrics.jsonl  step and epoch records, one JSON object a line, appended and flushed per write
  events.jsonl   pause/resume/stop/set/diverged events, same format
  last.pt        torch.save(dict), atomic; best.pt likewise
  epoch_<n>.pt   {"model": state_dict, "epoch": n, "step": ...} after epoch n (what a fork starts from)
  result.json    test_acc, test_loss, confusion (10x10), per_class_acc, wall_s

The store deals in plain dicts and state_dicts; it knows nothing about models or trainers.

Modules, one idea each (this package re-exports what the rest of the lab uses):
  ids       run ids and cleaned names, tags, notes
  liveness  is a run's writer process alive; a run's effective status ("interrupted" when not)
  files     the folder's format: file names, statuses, limits, small cached readers
  records   the one reader of a run's records (incremental JSONL tails, a live job's list)
  handle    RunInfo (a row of the list) and RunHandle (one folder's reads and writes)
  store     RunStore: create, get, list, rename, tag, delete, export, import
  archive   the zip: export snapshot, import checks
"""

from .archive import IMPORT_MAX_MEMBER, IMPORT_MAX_TOTAL, ImportRefused
from .files import (ACTIVE, CHECKPOINTS, EPOCH_PT_RE, JSON_FILES, JSONL_FILES, JSONL_MAX, PT_FILES, RESUMABLE,
                    RUN_FILES, STATUSES, jsonl_limit, now_iso, read_json)
from .handle import RunHandle, RunInfo
from .ids import InvalidRunId, clean_name, clean_notes, clean_tags, new_run_id, validate_run_id
from .liveness import OWN_START, effective_status, pid_alive, proc_start_time
from .records import read_jsonl
from .store import RunNotFound, RunStore

__all__ = ["ACTIVE", "CHECKPOINTS", "EPOCH_PT_RE", "IMPORT_MAX_MEMBER", "IMPORT_MAX_TOTAL", "JSONL_FILES",
           "JSONL_MAX", "JSON_FILES", "OWN_START", "PT_FILES", "RESUMABLE", "RUN_FILES", "STATUSES",
           "ImportRefused", "InvalidRunId", "RunHandle", "RunInfo", "RunNotFound", "RunStore", "clean_name",
           "clean_notes", "clean_tags", "effective_status", "jsonl_limit", "new_run_id", "now_iso",
           "pid_alive", "proc_start_time", "read_json", "read_jsonl", "validate_run_id"]
