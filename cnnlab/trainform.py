"""The Train page's logic without Streamlit: form defaults from presets, building and validating a
TrainConfig and a layer spec from widget values, choosing the run to show, progress text, failure
messages, and a per-session incremental cache of a run's curves.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Iterable

from . import models
from .data import DataConfig
from .engine import TrainConfig
from .fields import LIVE_FIELDS, OPTIMIZERS, live_value
from .errors import ConfigError, LabError, SpecError
from .plots.series import Ema
from .status import ACTIVE, RESUMABLE

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
    return models.preset_names()


def preset_caption(name: str) -> str:
    """Markdown: a preset's title, description, parameter count, its seed's reported result and what the
    lab reproduced (docs/reproduction.json)."""
    from .reproduce import load_record, reproduced_line

    p = models.get_preset(name)
    text = (f"**{p.title}** · {p.params():,} parameters\n\n{p.description}\n\n"
            f"*Reported:* {p.reported}")
    line = reproduced_line(load_record().get(name))
    return text + (f"\n\n*{line}*" if line else "")


def val_label(cfg: TrainConfig | None) -> str:
    """How the curves name validation: the test set stands in for it in the seeds' own recipes."""
    return "val (test set)" if cfg is not None and cfg.data.val_source == "test" else "val"


def view_config(view: Any) -> TrainConfig | None:
    """The recipe of a live job or a saved run's view (None when unreadable)."""
    try:
        if hasattr(view, "config"):
            return view.config()
        return TrainConfig.from_dict((view.handle.config or {}).get("recipe"))
    except (LabError, TypeError, ValueError, AttributeError):
        return None


def reference_for(preset: str, steps_per_epoch: int) -> tuple[str, list[float], list[float]] | None:
    """The reproduction run's validation accuracy of a preset, placed at this run's epoch boundaries."""
    from .reproduce import load_record, reference_curve

    curve = reference_curve(load_record().get(preset))
    if not curve or not steps_per_epoch:
        return None
    return (f"reproduced here ({preset})", [e * steps_per_epoch for e, _ in curve], [a for _, a in curve])


def form_defaults(preset: str) -> dict[str, Any]:
    """Widget values for every form field from a preset's recipe (TrainConfig defaults elsewhere).

    `subset` is 0 for "all training images" (a number input cannot hold None).
    """
    p = models.get_preset(preset)
    cfg = TrainConfig.from_dict(p.recipe)
    vals: dict[str, Any] = {f: getattr(cfg, f) for f in CFG_FIELDS}
    vals.update(subset=cfg.data.subset or 0, val_size=cfg.data.val_size, augment=cfg.data.augment,
                aug_strength=cfg.data.aug_strength, aug_kind=cfg.data.aug_kind, val_source=cfg.data.val_source)
    return vals


def _as_int(name: str, v: Any) -> int:
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
    missing = [f for f in FORM_FIELDS if f not in values]
    if missing:
        raise ConfigError(missing[0], "missing from the form")
    kw = {f: values[f] for f in CFG_FIELDS}
    for f in ("step_size", "batch_size", "epochs", "seed", "tta_shift"):
        kw[f] = _as_int(f, kw[f])
    for f in ("lr", "momentum", "weight_decay", "gamma", "pct_start", "label_smoothing"):
        if isinstance(kw[f], int) and not isinstance(kw[f], bool):
            kw[f] = float(kw[f])
    subset = values["subset"]
    subset = None if subset in (None, 0, 0.0, "") else _as_int("subset", subset)
    aug = values["aug_strength"]
    data = DataConfig(subset=subset, val_size=_as_int("val_size", values["val_size"]),
                      augment=bool(values["augment"]),
                      aug_strength=float(aug) if isinstance(aug, int) and not isinstance(aug, bool) else aug,
                      aug_kind=values["aug_kind"], val_source=values["val_source"])
    cfg = TrainConfig(data=data, **kw)
    return cfg.validate()


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
        spec = models.parse_spec_text(text)
        summary = models.summarize(spec)
    except SpecError as exc:
        return SpecResult(None, [], None, _by_line(str(exc), lines))
    rows = [{"line" if lines else "#": lines[r["#"]] if lines else r["#"] + 1, **{k: v for k, v in r.items()
             if k != "#"}} for r in summary.table()]
    return SpecResult(spec, layer_table(rows), summary.total_params, None)


def layer_table(rows: list[dict]) -> list[dict]:
    """Summary rows for display: the receptive field as text (a number, or '-' after flatten)."""
    return [{**r, "receptive field": str(r["receptive field"])} for r in rows]


def preset_spec(preset: str) -> tuple[list[dict], list[dict], int]:
    """A preset's spec, its summary table and parameter count."""
    p = models.get_preset(preset)
    s = models.summarize(p.spec)
    return p.spec, layer_table(s.table()), s.total_params


def preset_spec_text(preset: str) -> str:
    return models.spec_to_text(models.get_preset(preset).spec)


# ----------------------------------------------------------------------------- watching runs

def is_active(status: str | None) -> bool:
    return status in ACTIVE


def pick_run(candidates: Iterable[str | None], jobs: list[Any]) -> str | None:
    """The run to show: the first candidate that is a known job, else the newest active job, else the newest.

    `candidates` in priority order (session state, then the URL's ?run=); `jobs` newest first.
    """
    ids = [j.id for j in jobs]
    for c in candidates:
        if c and c in ids:
            return c
    for j in jobs:
        if is_active(j.status):
            return j.id
    return ids[0] if ids else None


def fmt_duration(s: float | None) -> str:
    """Seconds as '1h 02m', '3m 05s', '12s'; '—' when unknown."""
    if s is None or not math.isfinite(s) or s < 0:
        return "—"
    s = int(round(s))
    if s >= 3600:
        return f"{s // 3600}h {s % 3600 // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m {s % 60:02d}s"
    return f"{s}s"


def progress(view: Any) -> tuple[float, str]:
    """Progress fraction and its line: epoch, step, ETA, images/s."""
    total = getattr(view, "total_steps", 0) or 0
    step = getattr(view, "step", 0) or 0
    frac = min(1.0, max(0.0, step / total)) if total else 0.0
    spe = getattr(view, "steps_per_epoch", 0) or 0
    epochs = getattr(view, "epochs", 0) or 0
    if spe and view.status in ACTIVE:  # the epoch being trained, 1-based
        cur = min(epochs or 10**9, step // spe + 1)
    else:
        cur = getattr(view, "epoch", 0) or 0
    parts = [f"epoch {cur}/{epochs or '?'}", f"step {step}/{total or '?'}"]
    if view.status in ("running",):
        parts.append(f"ETA {fmt_duration(view.eta_s)}")
    if view.ips:
        parts.append(f"{view.ips:,.0f} img/s")
    return frac, " · ".join(parts)


def status_line(view: Any) -> tuple[str, str]:
    """(level, text) for a run's status: level is info | success | warning | error."""
    st, msg = view.status, (view.message or "").strip()
    if st == "done":
        test = f"; test accuracy {view.test_acc:.2%}" if view.test_acc is not None else ""
        best = f"best validation accuracy {view.best_val_acc:.2%}" if view.best_val_acc is not None else "finished"
        return "success", f"Done: {best}{test}."
    if st == "diverged":
        return "error", f"Diverged: {msg or f'the loss became NaN/inf at step {view.step}'}"
    if st == "failed":
        return "error", f"Failed: {short_cause(msg)}"
    if st == "stopped":
        return "warning", msg or f"Stopped at step {view.step}."
    if st == "interrupted":
        return "warning", msg or "Interrupted: the process that trained it ended."
    if st == "paused":
        return "info", "Paused — press Resume to continue."
    phase = getattr(view, "phase", "") if st in ("queued", "running") else ""  # before its first step
    if phase:  # Launch to the first curve point can take seconds: say what happens
        return "info", f"Starting… {phase}; the curve appears with the first step."
    if st == "queued":
        return "info", msg or "Queued: waiting for a free training slot (2 run at once)."
    if not getattr(view, "step", 0):
        return "info", ("Starting… loading MNIST into memory, building the model, then the first steps; the "
                        "curve appears with the first step.")
    return "info", f"Training… {msg}".strip()


def short_cause(message: str, limit: int = 600) -> str:
    """A failure message for display: data-missing messages whole (they list paths), others trimmed."""
    message = (message or "unknown error").strip()
    if message.startswith("MNIST is not available"):
        return message
    first = message.splitlines()[0]
    return first if len(first) <= limit else first[: limit - 1] + "…"


def job_rows(jobs: list[Any], names: dict[str, str] | None = None) -> list[dict]:
    """One table row per job for the run list (`names` overrides display names, e.g. after a rename)."""
    rows = []
    for j in jobs:
        rows.append({
            "name": (names or {}).get(j.id, j.name), "id": j.id, "status": j.status, "preset": j.preset,
            "epoch": f"{j.epoch or 0}/{j.epochs or '?'}",
            "best val acc": f"{j.best_val_acc:.2%}" if j.best_val_acc is not None else "",
        })  # the id second: in a narrow column a last one was cut off
    return rows


LIVE_EPOCHS_HELP = ("More epochs extend the run, fewer end it after the epoch in progress. One-cycle and cosine "
                    "schedules re-stretch over the new total from that step; StepLR keeps its steps.")


def live_changes(current: dict[str, float], wanted: dict[str, Any]) -> dict[str, float]:
    """The live fields whose wanted value differs from the current one (relative tolerance 1e-9)."""
    out = {}
    for k in LIVE_FIELDS:
        if k not in wanted or wanted[k] is None:
            continue
        new, old = wanted[k], current.get(k)
        if isinstance(new, bool) or not isinstance(new, (int, float)):
            raise ConfigError(k, f"must be a number, got {new!r}")
        if old is None or not math.isclose(float(new), float(old), rel_tol=1e-9, abs_tol=0.0):
            out[k] = _as_int(k, new) if k == "epochs" else float(new)
    return out


def check_live(changes: dict[str, float]) -> None:
    """ConfigError naming the first live value out of its range (fields.RANGES, as the engine); nothing applied."""
    for k, v in changes.items():
        live_value(k, v)


# ----------------------------------------------------------------------------- curve cache

REDRAW_EVERY_S = 5.0  # a live figure redraws for new points alone at most this often (the progress line: 1 s)


@dataclass
class Redraw:
    """When a live figure is due for a rebuild: at once when its `marks` change (first points, an epoch, an
    event, another run or quantity), for more points alone at most every `every` seconds.

    Building and drawing a plotly figure every second, and the browser redrawing it, took a visible share
    of the CPU a small net trains on (benchmarks/bench_page_open.py); the status and progress line still
    move every second.
    """

    every: float = REDRAW_EVERY_S
    _key: tuple | None = None
    _t: float = 0.0

    def due(self, points: int, marks: tuple = (), now: float | None = None) -> bool:
        """True if a figure of `points` points with `marks` should be rebuilt now (then it counts as built)."""
        now = time.monotonic() if now is None else now
        key = (bool(points), *marks)
        if self._key is not None and self._key[1:] == key:  # same marks: only points may have changed
            if self._key[0] == points or now - self._t < self.every:
                return False
        self._key, self._t = (points, *key), now
        return True


@dataclass
class CurveCache:
    """A session's columns of one run's curves, fed incrementally by `records_since` (reads only new records).

    The EMA is extended point by point, so a poll costs O(new records) plus the downsampled figure,
    and the figure is rebuilt only when something new arrived.
    """

    run_id: str
    smoothing: float = 0.9
    max_points: int = 500
    k: int = 0
    steps: list[float] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    loss_ema: list[float] = field(default_factory=list)
    acc_ema: list[float] = field(default_factory=list)
    epochs: list[dict] = field(default_factory=list)
    events: list[dict] = field(default_factory=list)
    val_name: str = "val"
    reference: tuple | None = None  # (label, steps, val_acc) of the preset's reproduction run
    redraw: Redraw = field(default_factory=Redraw)
    _fig: Any = None

    @classmethod
    def for_view(cls, run_id: str, view: Any) -> "CurveCache":
        """A cache labelled for this run's validation source, with its preset's reproduction curve."""
        cfg = view_config(view)
        spe = getattr(view, "steps_per_epoch", 0) or (cfg.steps_per_epoch() if cfg else 0)
        return cls(run_id, val_name=val_label(cfg), reference=reference_for(getattr(view, "preset", ""), spe))

    def update(self, view: Any) -> bool:
        """Pull new records from a JobView; True if any arrived."""
        recs, self.k = view.records_since(self.k)
        if recs:
            self.add(recs)
        return bool(recs)

    def __post_init__(self) -> None:
        self._loss_s, self._acc_s = Ema(self.smoothing), Ema(self.smoothing)

    def add(self, recs: Iterable[dict]) -> None:
        for r in recs:
            kind = r.get("kind")
            if kind == "step":
                loss = r.get("loss")
                if loss is None or not math.isfinite(loss):
                    continue
                self.steps.append(r["step"])
                self.loss.append(loss)
                self.loss_ema.append(self._loss_s.add(loss))
                self.acc_ema.append(self._acc_s.add(r.get("acc") or 0.0))
            elif kind == "epoch":
                self.epochs.append(r)
            elif kind == "event":
                self.events.append(r)

    @property
    def n_points(self) -> int:
        return len(self.steps)

    def figure(self, now: float | None = None) -> Any:
        """The (cached) training figure: rebuilt at once for the first points, a new epoch or event; for new
        steps alone at most every `redraw.every` seconds (`Redraw`)."""
        from .plots.curves import series_figure

        if self.redraw.due(len(self.steps), (len(self.epochs), len(self.events)), now) or self._fig is None:
            self._fig = series_figure(self.steps, self.loss, self.loss_ema, self.epochs, self.events,
                                      self.max_points, acc_smooth=self.acc_ema, uirevision=self.run_id,
                                      val_name=self.val_name, reference=self.reference)
        return self._fig


def spec_for_launch(preset: str, custom: bool, text: str) -> tuple[str, list[dict]]:
    """(preset label, spec) to submit: the preset's spec, or the parsed custom text (SpecError if it fails)."""
    if not custom:
        return preset, models.get_preset(preset).spec
    res = check_spec_text(text)
    if res.error:
        raise SpecError(res.error)
    return CUSTOM, res.spec


def require_data() -> None:
    """DataMissingError (with where the four files go) unless MNIST is in place: no run is made for it."""
    from . import datacheck
    from .data import _missing_message
    from .errors import DataMissingError

    state = datacheck.check()
    if not state.ready:
        raise DataMissingError(_missing_message(state.root, state.error or f"{state.state}: "
                                                f"{state.files_present} of 4 files found"))


def launch(manager: Any, preset: str, custom: bool, text: str, values: dict[str, Any],
           name: str | None = None) -> str:
    """Validate everything, then submit to the job manager; returns the run id. Raises LabError subclasses."""
    label, spec = spec_for_launch(preset, custom, text)
    cfg = build_config(values)
    require_data()
    name = (name or "").strip() or None
    return manager.submit(label, spec, cfg, name=name)


__all__ = ["ACTIVE", "CUSTOM", "CurveCache", "LabError", "build_config", "check_spec_text", "form_defaults",
           "launch", "pick_run", "progress", "status_line"]


def augmented_examples(mnist: Any, strength: float, n: int = 8, seed: int = 0, kind: str = "affine") -> Any:
    """n real training digits followed by the same digits augmented at `strength`: float array [2n,28,28] in [0,1]."""
    import torch

    from .data import augment_batch

    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(mnist.train_x), generator=g)[:n]
    x = mnist.train_x.index_select(0, idx).float().div(255.0).unsqueeze(1)
    aug = augment_batch(x, float(strength), g, kind) if strength > 0 else x
    return torch.cat([x, aug]).squeeze(1).numpy()


# ----------------------------------------------------------------------------- saved runs (the store)

SAVED_SHOWN = 50  # rows of the saved-runs table; the Compare page lists everything


def saved_runs(manager: Any) -> list[Any]:
    """Store runs (RunInfo, newest first) that this process is not training right now."""
    live = manager.live_ids()
    return [r for r in manager.list_runs() if r.id not in live]


def has_last_checkpoint(info: Any) -> bool:
    """Whether the run folder holds last.pt (what Resume continues from)."""
    try:
        return (info.path / "last.pt").is_file()
    except OSError:
        return False


def can_resume(info: Any) -> bool:
    """Interrupted / stopped / failed / diverged runs with a last.pt can be resumed."""
    return info.status in RESUMABLE and not info.error and has_last_checkpoint(info)


def _epochs_text(info: Any) -> str:
    n = info.epochs or 0
    return f"{n} epoch{'s' if n != 1 else ''} saved"


def saved_status_line(info: Any) -> tuple[str, str]:
    """(level, text) describing a stored run: interrupted runs say so plainly; damaged ones show their error."""
    st = info.status
    planned = f" of {info.epochs_planned}" if info.epochs_planned else ""
    if st == "error":
        return "error", f"Damaged run folder: {info.error or 'unreadable files'}"
    if st == "interrupted":
        tail = f" ({short_cause(info.message)})" if info.message else ""
        return "warning", (f"interrupted — the app stopped while it trained; {_epochs_text(info)}{planned}"
                           f"{tail}")
    if st == "done":
        test = f"; test accuracy {info.test_acc:.2%}" if info.test_acc is not None else ""
        best = f"best validation accuracy {info.best_val_acc:.2%}" if info.best_val_acc is not None else "finished"
        return "success", f"done: {best}{test}"
    if st in ("failed", "diverged"):
        return "error", f"{st}: {short_cause(info.message)} ({_epochs_text(info)}{planned})"
    if st == "stopped":
        return "warning", f"stopped: {_epochs_text(info)}{planned}"
    return "info", f"{st} in another process (e.g. the CLI) · {_epochs_text(info)}{planned}"


def saved_rows(infos: list[Any]) -> list[dict]:
    """One table row per stored run."""
    rows = []
    for r in infos:
        rows.append({
            "name": r.name, "id": r.id, "status": r.status, "preset": r.preset or "",
            "epochs": f"{r.epochs or 0}/{r.epochs_planned or '?'}",
            "best val acc": f"{r.best_val_acc:.2%}" if isinstance(r.best_val_acc, (int, float)) else "",
            "test acc": f"{r.test_acc:.2%}" if isinstance(r.test_acc, (int, float)) else "",
        })
    return rows


def saved_label(info: Any) -> str:
    return f"{info.name} · {info.status} · {info.id}"


def default_saved(infos: list[Any]) -> int:
    """Index of the saved run to preselect: the newest interrupted one, else the newest."""
    for i, r in enumerate(infos):
        if r.status == "interrupted":
            return i
    return 0


@dataclass
class ForkDefaults:
    """What the fork form offers for one stored run."""

    epochs_available: list[int]
    lr: float
    epochs: int
    optimizer: str


def fork_defaults(manager: Any, run_id: str) -> ForkDefaults:
    """Saved epochs to fork from and the parent's recipe values (epochs at least one past the last saved)."""
    avail = manager.fork_epochs(run_id)
    from .jobs import planned_epochs

    handle = manager.store.get(run_id)
    recipe = handle.config.get("recipe") or {}
    lr = recipe.get("lr")
    planned = planned_epochs(handle)  # a live epochs change counts
    last = avail[-1] if avail else 0
    epochs = planned if isinstance(planned, int) and planned > last else last + 1
    opt = recipe.get("optimizer") if recipe.get("optimizer") in OPTIMIZERS else "sgd"
    return ForkDefaults(avail, float(lr) if isinstance(lr, (int, float)) else 0.01, epochs, opt)


def fork_overrides(epoch: Any, lr: Any, epochs: Any, optimizer: Any) -> tuple[int, dict]:
    """(fork epoch, overrides) from the fork form; ConfigError naming the bad field."""
    epoch = _as_int("epoch", epoch)
    epochs = _as_int("epochs", epochs)
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not math.isfinite(lr) or lr <= 0:
        raise ConfigError("lr", f"must be a positive number, got {lr!r}")
    if epochs <= epoch:
        raise ConfigError("epochs", f"must be more than the fork epoch {epoch} (epochs count like the parent's), "
                                    f"got {epochs}")
    if optimizer not in OPTIMIZERS:
        raise ConfigError("optimizer", f"must be one of {', '.join(OPTIMIZERS)}, got {optimizer!r}")
    return epoch, {"lr": float(lr), "epochs": epochs, "optimizer": optimizer}


def fork_run(manager: Any, run_id: str, epoch: Any, lr: Any, epochs: Any, optimizer: Any,
             name: str | None = None) -> str:
    """Validate the fork form and start the fork; the new run id (LabError subclasses on bad input)."""
    ep, over = fork_overrides(epoch, lr, epochs, optimizer)
    name = (name or "").strip() or None
    return manager.fork(run_id, ep, over, name=name)


class StoredRunView:
    """A JobView look-alike for a run only the store knows (e.g. after a restart): curves and status from disk."""

    ips = None
    eta_s = None
    traceback = ""

    def __init__(self, handle: Any, info: Any):
        from . import records

        self.handle, self.info = handle, info
        self.id, self.preset = handle.id, info.preset or "run"
        self.name, self.status = info.name, info.status
        self.message = info.error if info.status == "error" else info.message
        self._records = records.stored(handle.path)  # shared and incremental: a poll reads only what was appended
        self._records.refresh()
        self.generation = self._records.generation  # changes when the files were rewritten (a resume's rewind)
        try:
            st = handle.status
        except LabError:
            st = {}
        self.epoch = info.epochs or 0
        self.epochs = info.epochs_planned or st.get("epochs_planned") or 0
        self.steps_per_epoch = st.get("steps_per_epoch") or 0
        self.step = st.get("step") or 0
        self.total_steps = self.steps_per_epoch * self.epochs if self.steps_per_epoch else 0
        self.best_val_acc, self.test_acc = info.best_val_acc, info.test_acc
        if self.status == "failed":
            self.traceback = st.get("traceback") or ""

    def records_since(self, k: int) -> tuple[list[dict], int]:
        return self._records.since(k)

    def live_values(self) -> dict:
        return {}


def stored_view(manager: Any, run_id: Any) -> StoredRunView | None:
    """A StoredRunView of a store run, or None if there is no such (valid) run."""
    from .runs import RunNotFound

    try:
        handle = manager.store.get(run_id, live_ids=manager.live_ids())
        info = handle.info(manager.live_ids())
    except (RunNotFound, LabError, OSError, TypeError):
        return None
    return StoredRunView(handle, info)


def is_stored_run(manager: Any, run_id: Any) -> bool:
    """Whether `run_id` is a valid id of a run folder in the store (never raises)."""
    try:
        return bool(run_id) and manager.store.exists(run_id)
    except (LabError, OSError, TypeError):
        return False


def choose_run(candidates: Iterable[str | None], jobs: list[Any], is_stored: Any) -> str | None:
    """Like pick_run, but a candidate that is only in the store (e.g. ?run= after a restart) counts too."""
    ids = {j.id for j in jobs}
    for c in candidates:
        if c and (c in ids or is_stored(c)):
            return c
    return pick_run([], jobs)


def stored_key(manager: Any, run_id: str) -> tuple:
    """Changes when a stored run's files change (size/mtime), so a cached StoredRunView can be reused."""
    from .runs import validate_run_id

    out: list[Any] = [validate_run_id(run_id)]
    for f in ("status.json", "metrics.jsonl", "events.jsonl", "meta.json"):
        try:
            s = (manager.store.root / run_id / f).stat()
            out.append((s.st_size, s.st_mtime_ns))
        except OSError:
            out.append(None)
    return tuple(out)


def limits_caption() -> str:
    """The size limits of a custom architecture, stated next to the editor."""
    return (f"Limits: at most {models.MAX_PARAMS:,} parameters and {models.MAX_ACT_BYTES // 2**20} MiB of "
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

