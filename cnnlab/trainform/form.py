"""The Train page's form without Streamlit: defaults from presets, a validated TrainConfig and layer spec
from widget values, launching, and the LR finder's texts."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ..data import DataConfig
from ..errors import ConfigError, SpecError
from ..plan import RunPlan, plan_run
from ..presets import get_preset, preset_names
from ..recipe import TrainConfig
from ..spec import MAX_ACT_BYTES, MAX_PARAMS, Summary, parse_spec_text, spec_to_text, summarize
from ..status import ACTIVE  # noqa: F401 (the package re-exports it)

DEVICES = ("auto", "cpu", "cuda", "mps")
CUSTOM = "custom"

# Widget fields of the hyperparameter form (TrainConfig fields, plus DataConfig ones).
CFG_FIELDS = ("optimizer", "lr", "momentum", "nesterov", "weight_decay", "scheduler", "step_size", "gamma",
              "pct_start", "batch_size", "epochs", "label_smoothing", "seed", "device", "channels_last", "tta_shift")
DATA_FIELDS = ("subset", "val_size", "augment", "aug_strength", "aug_kind", "val_source")
VAL_SOURCE_LABELS = {"holdout": "held-out training images", "test": "the test set (all 60k train, as the seeds)"}
FORM_FIELDS = CFG_FIELDS + DATA_FIELDS


def preset_choices() -> list[str]:
    """Every registered preset, in registry order."""
    return preset_names()


def preset_caption(name: str) -> str:
    """Markdown: a preset's title, description, parameter count, its seed's reported result and what the
    lab reproduced (docs/reproduction.json)."""
    from ..reproduce import load_record, reproduced_line

    p = get_preset(name)
    text = (f"**{p.title}** · {p.params():,} parameters\n\n{p.description}\n\n"
            f"*Reported:* {p.reported}")
    line = reproduced_line(load_record().get(name))
    return text + (f"\n\n*{line}*" if line else "")


def form_defaults(preset: str) -> dict[str, Any]:
    """Widget values for every form field from a preset's recipe (TrainConfig defaults elsewhere).

    `subset` is 0 for "all training images" (a number input cannot hold None).
    """
    p = get_preset(preset)
    cfg = TrainConfig.from_dict(p.recipe)
    vals: dict[str, Any] = {f: getattr(cfg, f) for f in CFG_FIELDS}
    vals.update(subset=cfg.data.subset or 0, val_size=cfg.data.val_size, augment=cfg.data.augment,
                aug_strength=cfg.data.aug_strength, aug_kind=cfg.data.aug_kind, val_source=cfg.data.val_source)
    return vals


def as_int(name: str, v: Any) -> int:
    """Number inputs hand back floats for int fields sometimes; accept only whole numbers."""
    if isinstance(v, bool):
        raise ConfigError(name, f"must be an integer, got {v!r}")
    if isinstance(v, float):
        if not math.isfinite(v) or not v.is_integer():
            raise ConfigError(name, f"must be a whole number, got {v!r}")
        return int(v)
    if not isinstance(v, int):
        raise ConfigError(name, f"must be an integer, got {v!r}")
    return v


def build_config(values: dict[str, Any]) -> TrainConfig:
    """A validated TrainConfig from form values; raises ConfigError naming the first bad field."""
    return form_config(values).validate()


def form_config(values: dict[str, Any]) -> TrainConfig:
    """The TrainConfig of form values, converted but not yet validated (ConfigError for a missing or non-whole
    field)."""
    missing = [f for f in FORM_FIELDS if f not in values]
    if missing:
        raise ConfigError(missing[0], "missing from the form")
    kw = {f: values[f] for f in CFG_FIELDS}
    for f in ("step_size", "batch_size", "epochs", "seed", "tta_shift"):
        kw[f] = as_int(f, kw[f])
    for f in ("lr", "momentum", "weight_decay", "gamma", "pct_start", "label_smoothing"):
        if isinstance(kw[f], int) and not isinstance(kw[f], bool):
            kw[f] = float(kw[f])
    subset = values["subset"]
    subset = None if subset in (None, 0, 0.0, "") else as_int("subset", subset)
    aug = values["aug_strength"]
    data = DataConfig(subset=subset, val_size=as_int("val_size", values["val_size"]),
                      augment=bool(values["augment"]),
                      aug_strength=float(aug) if isinstance(aug, int) and not isinstance(aug, bool) else aug,
                      aug_kind=values["aug_kind"], val_source=values["val_source"])
    return TrainConfig(data=data, **kw)


def try_build_config(values: dict[str, Any]) -> tuple[TrainConfig | None, ConfigError | None]:
    """build_config, with the error returned instead of raised."""
    try:
        return build_config(values), None
    except ConfigError as exc:
        return None, exc


def field_message(exc: ConfigError) -> str:
    """A ConfigError as a sentence naming its field."""
    return f"Invalid value for **{exc.field}** — {exc}"


@dataclass
class SpecResult:
    """A parsed custom architecture: the spec and its summary rows, or the error to show inline."""

    spec: list[dict] | None
    table: list[dict]
    total_params: int | None
    error: str | None
    summary: Summary | None = None  # validate_spec's result: a launch of this text does not redo it


def layer_lines(text: str) -> list[int] | None:
    """The text box's line number (from 1) of each layer of a line-format text; None for JSON."""
    if (text or "").strip().startswith("["):
        return None
    return [n for n, line in enumerate((text or "").splitlines(), 1) if line.split("#", 1)[0].strip()]


def _by_line(message: str, lines: list[int] | None) -> str:
    """An error's "layer i" (counted from 0) as the box's line: "line 7 (layer #6)"; JSON: "layer #i+1"."""
    import re

    m = re.match(r"layer (\d+)\b", message)
    if not m:
        return message
    i = int(m.group(1))
    if lines is not None and i < len(lines):
        where = f"line {lines[i]} (layer #{i + 1}; lines counted from 1 as in the box)"
    else:
        where = f"layer #{i + 1} (counted from 1)"
    return where + message[m.end():]


def check_spec_text(text: str) -> SpecResult:
    """Parse and validate a layer text (line format or JSON); never raises for a user's mistake.

    Layers are numbered the way the text box shows them: by line, from 1 (the table's "line" column).
    """
    lines = layer_lines(text)
    try:
        spec = parse_spec_text(text)
        summary = summarize(spec)
    except SpecError as exc:
        return SpecResult(None, [], None, _by_line(str(exc), lines))
    rows = [{"line" if lines else "#": lines[r["#"]] if lines else r["#"] + 1, **{k: v for k, v in r.items()
             if k != "#"}} for r in summary.table()]
    return SpecResult(spec, layer_table(rows), summary.total_params, None, summary)


def layer_table(rows: list[dict]) -> list[dict]:
    """Summary rows for display: the receptive field as text (a number, or '-' after flatten)."""
    return [{**r, "receptive field": str(r["receptive field"])} for r in rows]


def preset_spec(preset: str) -> tuple[list[dict], list[dict], int]:
    """A preset's spec, its summary table and parameter count."""
    p = get_preset(preset)
    s = summarize(p.spec)
    return p.spec, layer_table(s.table()), s.total_params


def preset_spec_text(preset: str) -> str:
    return spec_to_text(get_preset(preset).spec)


def spec_for_launch(preset: str, custom: bool, text: str) -> tuple[str, list[dict], Summary | None]:
    """(preset label, spec, its summary if already made) to launch: the preset's spec, or the parsed custom text
    (SpecError if it fails)."""
    if not custom:
        return preset, get_preset(preset).spec, None
    res = check_spec_text(text)
    if res.error:
        raise SpecError(res.error)
    return CUSTOM, res.spec, res.summary


def plan_for_launch(preset: str, custom: bool, text: str, values: dict[str, Any]) -> tuple[str, RunPlan]:
    """(preset label, the validated plan) of the Train form: where a page's architecture and recipe enter."""
    label, spec, summary = spec_for_launch(preset, custom, text)
    return label, plan_run(spec, form_config(values), summary=summary)


def require_data() -> None:
    """DataMissingError (with where the four files go) unless MNIST is in place: no run is made for it."""
    from .. import datacheck
    from ..data import _missing_message
    from ..errors import DataMissingError

    state = datacheck.check()
    if not state.ready:
        raise DataMissingError(_missing_message(state.root, state.error or f"{state.state}: "
                                                f"{state.files_present} of 4 files found"))


def launch(manager: Any, preset: str, custom: bool, text: str, values: dict[str, Any],
           name: str | None = None) -> str:
    """Validate everything, then submit to the job manager; returns the run id. Raises LabError subclasses."""
    label, plan = plan_for_launch(preset, custom, text, values)
    require_data()
    name = (name or "").strip() or None
    return manager.submit(label, plan, name=name)


def augmented_examples(mnist: Any, strength: float, n: int = 8, seed: int = 0, kind: str = "affine") -> Any:
    """n real training digits followed by the same digits augmented at `strength`: float array [2n,28,28] in [0,1]."""
    import torch

    from ..data import augment_batch

    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(mnist.train_x), generator=g)[:n]
    x = mnist.train_x.index_select(0, idx).float().div(255.0).unsqueeze(1)
    aug = augment_batch(x, float(strength), g, kind) if strength > 0 else x
    return torch.cat([x, aug]).squeeze(1).numpy()


def limits_caption() -> str:
    """The size limits of a custom architecture, stated next to the editor."""
    return (f"Limits: at most {MAX_PARAMS:,} parameters and {MAX_ACT_BYTES // 2**20} MiB of "
            "activations for a batch of 64 images; bigger nets are refused before they are built.")


# ----------------------------------------------------------------------------- LR finder

LR_FINDER_HELP = ("Trains a throw-away copy of this architecture and recipe for up to 200 steps while the "
                  "learning rate grows from 1e-6 to 10, and stops when the loss explodes. Suggested: a tenth of "
                  "the learning rate at the minimum of the smoothed loss. Saves no run.")


def finder_progress(job: Any) -> tuple[float, str]:
    """Progress fraction and line of an LR finder job."""
    if job.status == "running":
        last = job.last or {}
        where = f" · lr {last['lr']:.1e} · loss {last['smoothed']:.3f}" if last else ""
        return job.progress, f"step {job.step}/{job.steps}{where}"
    res = job.result
    n = len(res.lrs) if res is not None else job.step
    why = {"exploded": "stopped: the loss exploded", "end": "reached lr 10", "cancelled": "cancelled"}
    reason = why.get(res.stop_reason, res.stop_reason) if res is not None else job.status
    took = f" in {res.wall_s:.1f} s" if res is not None else ""
    return (1.0 if job.status == "done" else job.progress), f"{n} steps{took} · {reason}"


def finder_summary(res: Any) -> str:
    """The suggestion as a sentence."""
    recipe = f"; the recipe uses {res.recipe_lr:g}" if res.recipe_lr else ""
    return (f"Suggested learning rate **{res.suggestion:.3g}** (a tenth of {res.min_lr:.3g}, where the smoothed "
            f"loss is lowest{recipe}).")


def round_lr(lr: float) -> float:
    """An LR to 2 significant digits (what a person would type)."""
    return float(f"{lr:.2g}")
