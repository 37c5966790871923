"""The Train page's logic without Streamlit, one idea a module:
  form     defaults from presets, a validated TrainConfig and layer spec from widget values, launch, LR finder texts
  watch    which run to show, progress and status lines, live changes, a stored run's view
  curves   a session's incremental cache of a run's curves
  saved    the saved-runs list, resume and the fork form
"""

from ..recipe import TrainConfig
from .curves import (IDLE_EVERY_S, LIST_EVERY_S, REDRAW_EVERY_S, STATUS_EVERY_S, CurveCache, Redraw, reference_for,
                     val_label, view_config)
from .form import (ACTIVE, CFG_FIELDS, CUSTOM, DATA_FIELDS, DEVICES, FORM_FIELDS, LR_FINDER_HELP,
                   VAL_SOURCE_LABELS, SpecResult, augmented_examples, build_config, check_spec_text, field_message,
                   finder_progress, finder_summary, form_config, form_defaults, launch, layer_lines, layer_table, limits_caption,
                   plan_for_launch, preset_caption, preset_choices, preset_spec, preset_spec_text, require_data,
                   round_lr, spec_for_launch, try_build_config)
from .saved import (RESUMABLE, SAVED_SHOWN, ForkDefaults, can_resume, default_saved, fork_defaults, fork_overrides,
                    fork_run, has_last_checkpoint, saved_label, saved_rows, saved_runs, saved_status_line)
from .watch import (LIVE_EPOCHS_HELP, StoredRunView, check_live, choose_run, fmt_duration, is_active,
                    is_stored_run, job_rows, live_changes, pick_run, progress, short_cause, status_line, stored_key,
                    stored_view)

__all__ = ["ACTIVE", "CFG_FIELDS", "CUSTOM", "DATA_FIELDS", "DEVICES", "FORM_FIELDS", "LIVE_EPOCHS_HELP",
           "LR_FINDER_HELP", "IDLE_EVERY_S", "LIST_EVERY_S", "REDRAW_EVERY_S", "STATUS_EVERY_S", "RESUMABLE",
           "SAVED_SHOWN", "VAL_SOURCE_LABELS", "CurveCache", "ForkDefaults", "Redraw",
           "SpecResult", "StoredRunView", "TrainConfig", "augmented_examples", "build_config", "can_resume",
           "check_live", "check_spec_text", "choose_run", "default_saved", "field_message", "finder_progress",
           "finder_summary", "fmt_duration", "fork_defaults", "fork_overrides", "fork_run", "form_config", "form_defaults",
           "has_last_checkpoint", "is_active", "is_stored_run", "job_rows", "launch", "layer_lines", "layer_table",
           "limits_caption", "live_changes", "pick_run", "plan_for_launch", "preset_caption", "preset_choices", "preset_spec",
           "preset_spec_text", "progress", "reference_for", "require_data", "round_lr", "saved_label", "saved_rows",
           "saved_runs", "saved_status_line", "short_cause", "spec_for_launch", "status_line", "stored_key",
           "stored_view", "try_build_config", "val_label", "view_config"]
