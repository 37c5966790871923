"""What the Sweep page shows, as plain data (no Streamlit): the definition from the form, table rows, curves."""

from __future__ import annotations

from typing import Any

from ..presets import get_preset
from ..recipe import TrainConfig
from ..runs import records as R
from ..runs import RunStore
from ..spec import parse_spec_text
from ..status import ACTIVE
from .space import SweepDef, _g, make_def

CUSTOM = "custom"


def definition_from_form(preset: str, custom: bool, spec_text: str, params_text: str, *, trials: int,
                         concurrent: int, search: str, early_stop: bool, epochs: int, subset: int,
                         name: str = "") -> SweepDef:
    """The page's form as a validated SweepDef (ConfigError/SpecError naming the field)."""
    p = get_preset(preset)
    spec = parse_spec_text(spec_text) if custom else p.spec
    recipe = dict(p.recipe)
    data = {**(recipe.pop("data", None) or {}), "subset": int(subset) if subset else None}
    cfg = TrainConfig.from_dict({**recipe, "data": data}, epochs=int(epochs))  # validated by make_def
    lines = [ln.strip() for ln in (params_text or "").splitlines() if ln.strip() and not ln.strip().startswith("#")]
    return make_def(CUSTOM if custom else p.name, spec, cfg.to_dict(), lines, trials=int(trials),
                    concurrent=int(concurrent) or None, search=search, early_stop=bool(early_stop),
                    name=(name or "").strip())


def sweep_label(rec: dict) -> str:
    d = rec.get("definition") or {}
    return f"{d.get('name') or rec['id']} · {d.get('preset')} · {rec.get('status')}"


def table(rows: list[dict], fields: list[str]) -> list[dict]:
    """Display rows of the trial table: trial, status, each hyperparameter, epoch, accuracies, time."""
    out = []
    for r in rows:
        row: dict[str, Any] = {"trial": r["trial"], "status": r["status"]}
        for f in fields:
            v = (r["params"] or {}).get(f)
            row[f] = _g(v) if isinstance(v, float) else v
        row["epoch"] = f"{r['epochs'] or 0}/{r['epochs_planned'] or '?'}"
        row["best val acc"] = r["best_val_acc"]
        row["test acc"] = r["test_acc"]
        row["time (s)"] = round(r["time_s"], 1) if isinstance(r["time_s"], (int, float)) else None
        row["run"] = r["run_id"]
        row["message"] = r["message"] if r["status"] not in ("done", "running") else ""
        out.append(row)
    return out


def curves(store: RunStore, rows: list[dict]) -> list[dict]:
    """Validation accuracy per epoch of each trial (read incrementally from metrics.jsonl)."""
    out = []
    for r in rows:
        recs = [x for x in R.stored(store.run_dir(r["run_id"])).metrics() if x.get("kind") == "epoch"]
        if recs:
            out.append({"run_id": r["run_id"], "name": f"#{r['trial']}", "epochs": [x["epoch"] for x in recs],
                        "val_acc": [x.get("val_acc") for x in recs]})
    return out


def active_trials(rows: list[dict]) -> list[dict]:
    return [r for r in rows if r["status"] in ACTIVE]
