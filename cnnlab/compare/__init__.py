"""Comparing runs: the table, overlay curves, config diffs, test-set evaluation, importing run zips.

Pure logic over the run store (no Streamlit). Everything here reads files; only an import writes.
  table       rows, filters, selection, config diff, the listing's signature
  curves      one curve per run and metric (forks anchored at their parent, events marked)
  evaluation  a run's predictions on the test set (weights loaded by `modelsource`, like the Draw page)
  importing   a run zip from the page
"""

from .curves import MAX_POINTS, METRICS, XAXES, Curve, curves, run_curve
from .evaluation import (EVAL_CACHE_SIZE, Evaluation, available_checkpoints, cell_from_selection, cell_table,
                         checkpoint_bytes, confusion_cell, evaluate_run, most_confident_mistakes, test_images,
                         worst_cell)
from .importing import already_imported, copy_name, import_run
from .table import (DIFF_IGNORE, TABLE_COLUMNS, config_diff, digest, filter_rows, flatten, is_active,
                    listing_signature, merge_selection, run_row, table_rows)

__all__ = ["DIFF_IGNORE", "EVAL_CACHE_SIZE", "MAX_POINTS", "METRICS", "TABLE_COLUMNS", "XAXES", "Curve",
           "Evaluation", "already_imported", "available_checkpoints", "cell_from_selection", "cell_table",
           "checkpoint_bytes", "config_diff", "confusion_cell", "copy_name", "curves", "digest", "evaluate_run", "filter_rows",
           "flatten", "import_run", "is_active", "listing_signature", "merge_selection",
           "most_confident_mistakes", "run_curve", "run_row", "table_rows", "test_images", "worst_cell"]
