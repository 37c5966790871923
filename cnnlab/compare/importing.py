"""Importing a run zip from the page: limits, the launch's validation, and duplicates said plainly."""

from __future__ import annotations

import json
from typing import Iterable

from ..errors import LabError
from ..runs import IMPORT_MAX_TOTAL, ImportRefused, RunStore
from ..runs.archive import peek_config


def import_run(store: RunStore, data: bytes, max_total: int | None = None) -> str:
    """Import an uploaded run zip through the store's validation and a launch's check of its spec and recipe;
    ImportRefused (a LabError) says why."""
    limit = IMPORT_MAX_TOTAL if max_total is None else max_total
    if not isinstance(data, (bytes, bytearray)) or not data:
        raise ImportRefused("import refused: the upload is empty")
    if len(data) > limit:
        raise ImportRefused(f"import refused: the zip is {len(data):,} bytes, over the {limit:,}-byte limit")
    from ..plan import plan_from_config  # the spec and recipe checked like a launch's: resume and fork trust them

    if max_total is None:
        return store.import_zip(bytes(data), check=plan_from_config)
    return store.import_zip(bytes(data), max_total=max_total, max_member=max_total, check=plan_from_config)


def already_imported(store: RunStore, data: bytes) -> str | None:
    """The run in the store that this zip already is (same preset, creation time and recipe), if any."""
    cfg = peek_config(data)
    if not cfg or not cfg.get("created"):
        return None
    key = (cfg.get("created"), cfg.get("preset"), json.dumps(cfg.get("recipe"), sort_keys=True))
    for info in reversed(store.list_runs()):  # oldest first: the original, not an earlier copy
        try:
            c = store.get(info.id).config
        except LabError:
            continue
        if (c.get("created"), c.get("preset"), json.dumps(c.get("recipe"), sort_keys=True)) == key:
            return info.id
    return None


def copy_name(name: str, taken: Iterable[str]) -> str:
    """A distinct name for another copy of run `name`: "name (copy 2)", "name (copy 3)", ..."""
    taken = set(taken)
    n = 2
    while f"{name} (copy {n})" in taken:
        n += 1
    return f"{name} (copy {n})"
