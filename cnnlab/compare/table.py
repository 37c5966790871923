"""The Compare page's runs table, its filters and selection, and the diff of two configs."""

from __future__ import annotations

import json
import math
from datetime import datetime
from typing import Any, Iterable

from ..runs import ACTIVE, RunInfo


TABLE_COLUMNS = ["name", "id", "architecture", "params", "optimizer", "lr", "batch", "epochs", "augmentation",
                 "best val acc", "test acc", "train time (s)", "status", "parent", "created", "tags",
                 "sweep", "problem"]  # the id second: far right, it was out of view at 1024 px


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None


def _aug_text(data: dict) -> str:
    if not isinstance(data, dict) or not data.get("augment"):
        return "off"
    return f"x{_num(data.get('aug_strength')) or 0:g}"


def _created_text(iso: Any) -> str:
    try:
        return datetime.fromisoformat(str(iso)).strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        return str(iso or "")


def run_row(info: RunInfo, names: dict[str, str] | None = None) -> dict:
    """One table row for a run (from its RunInfo: nothing is read here)."""
    recipe = info.recipe if isinstance(info.recipe, dict) else {}
    data = recipe.get("data") if isinstance(recipe.get("data"), dict) else {}
    parent = info.parent if isinstance(info.parent, dict) else None
    parent_text = ""
    if parent:
        pid = str(parent.get("run_id"))
        parent_text = f"{(names or {}).get(pid, pid)} @ epoch {parent.get('epoch')}"
    arch = info.preset or "custom"
    if info.title:
        arch = f"{arch} ({info.title})"
    planned = info.epochs_planned
    done = info.epochs if isinstance(info.epochs, int) else 0
    train_s = _num(info.train_s)
    problem = info.error or (info.message if info.status in ("failed", "diverged", "interrupted") else "")
    return {
        "name": info.name,
        "id": info.id,
        "architecture": arch,
        "params": info.params if isinstance(info.params, int) else None,
        "optimizer": str(recipe.get("optimizer") or ""),
        "lr": _num(recipe.get("lr")),
        "batch": recipe.get("batch_size") if isinstance(recipe.get("batch_size"), int) else None,
        "epochs": f"{done}/{planned}" if planned else str(done),
        "augmentation": _aug_text(data),
        "best val acc": _num(info.best_val_acc),
        "test acc": _num(info.test_acc),
        "train time (s)": round(train_s, 1) if train_s is not None else None,
        "status": info.status,
        "parent": parent_text,
        "created": _created_text(info.created),
        "tags": ", ".join(info.tags),
        "sweep": info.sweep or "",
        "problem": problem or "",
    }


def table_rows(infos: Iterable[RunInfo]) -> list[dict]:
    """Rows for the runs table, in the given order; parents shown by their display name."""
    infos = list(infos)
    names = {i.id: i.name for i in infos}
    return [run_row(i, names) for i in infos]


def filter_rows(rows: list[dict], text: str = "", statuses: Iterable[str] = (), tags: Iterable[str] = (),
                sweeps: Iterable[str] = ()) -> list[dict]:
    """Rows whose name/id/architecture/tags contain `text` (case-insensitive), in `statuses`, with all `tags`,
    trials of one of `sweeps`."""
    needle = (text or "").strip().lower()
    statuses, tags, sweeps = set(statuses or ()), set(tags or ()), set(sweeps or ())
    out = []
    for row in rows:
        hay = " ".join(str(row.get(k) or "") for k in ("name", "id", "architecture", "tags", "optimizer")).lower()
        if needle and needle not in hay:
            continue
        if statuses and row.get("status") not in statuses:
            continue
        row_tags = {t.strip() for t in str(row.get("tags") or "").split(",") if t.strip()}
        if tags and not tags <= row_tags:
            continue
        if sweeps and row.get("sweep") not in sweeps:
            continue
        out.append(row)
    return out


def merge_selection(previous: list[str], view_ids: list[str], selected_rows: Iterable[int]) -> list[str]:
    """New selection after a table click: rows hidden by the filter keep their state, visible ones follow the table."""
    picked = [view_ids[i] for i in selected_rows if 0 <= i < len(view_ids)]
    hidden = [rid for rid in previous if rid not in view_ids]
    kept = [rid for rid in previous if rid in picked]
    return hidden + kept + [rid for rid in picked if rid not in kept]


def is_active(info: RunInfo) -> bool:
    """Whether a run is queued, running or paused (cannot be deleted)."""
    return info.status in ACTIVE


# ------------------------------------------------------------------ config diff

DIFF_IGNORE = ("id", "created")


def flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts/lists as {"recipe.lr": 0.01, "spec.0.type": "conv", ...}."""
    out: dict[str, Any] = {}
    if isinstance(obj, dict):
        items = obj.items() if obj else []
        if not obj and prefix:
            out[prefix] = {}
        for k, v in items:
            out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    elif isinstance(obj, list):
        if not obj and prefix:
            out[prefix] = []
        for i, v in enumerate(obj):
            out.update(flatten(v, f"{prefix}.{i}" if prefix else str(i)))
    else:
        out[prefix] = obj
    return out


_MISSING = "—"


def config_diff(a: dict, b: dict, ignore: Iterable[str] = DIFF_IGNORE) -> list[dict]:
    """Only the fields that differ between two configs: [{"field", "a", "b"}] in a stable order."""
    ignore = set(ignore)
    fa = {k: v for k, v in flatten(a).items() if k.split(".")[0] not in ignore}
    fb = {k: v for k, v in flatten(b).items() if k.split(".")[0] not in ignore}
    keys = list(fa) + [k for k in fb if k not in fa]
    rows = []
    for k in keys:
        va, vb = fa.get(k, _MISSING), fb.get(k, _MISSING)
        if va != vb or isinstance(va, bool) != isinstance(vb, bool):  # True == 1 in Python
            rows.append({"field": k, "a": _show(va), "b": _show(vb)})
    return rows


def _show(v: Any) -> str:
    if isinstance(v, str):
        return v
    return json.dumps(v, default=str)


def listing_signature(infos: Iterable[RunInfo]) -> tuple:
    """What the page's table depends on that changes by itself: run ids, statuses and epochs done."""
    return tuple(sorted((i.id, i.status, i.epochs if isinstance(i.epochs, int) else -1) for i in infos))


def digest(ids: Iterable[str]) -> str:
    """A short stable digest of a list of ids (for widget keys)."""
    import hashlib

    return hashlib.sha1("\n".join(ids).encode()).hexdigest()[:10]
