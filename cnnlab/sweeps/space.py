"""Search spaces as data: parse `FIELD=SPEC`, validate against the recipe's own field rules, apply a sample.

A sweep is a base architecture + recipe and a list of `Param`s. Every bound and choice is checked here,
where the space enters (CLI, page), by building the recipe it would give and running the engine's own
`TrainConfig.validate` / `validate_spec` on it, so a bad space is refused with the field named before
Ray starts. The Ray Tune form of the space is made in `to_tune` (Ray imported only there).
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass, field
from typing import Any

from ..errors import ConfigError, SpecError
from ..plan import RunPlan, plan_run
from ..recipe import TrainConfig

KINDS = ("loguniform", "uniform", "int", "choice")
SEARCHES = ("random", "grid", "tpe")
MAX_TRIALS = 1000
GRID_INT_MAX = 50  # int:LO:HI in a grid expands to every integer; more than this is not a grid

# field -> (type, where): "float" | "int" | "str"; "recipe" | "data" | "arch"
FIELDS: dict[str, tuple[str, str]] = {
    "lr": ("float", "recipe"),
    "weight_decay": ("float", "recipe"),
    "momentum": ("float", "recipe"),
    "label_smoothing": ("float", "recipe"),
    "batch_size": ("int", "recipe"),
    "epochs": ("int", "recipe"),
    "seed": ("int", "recipe"),
    "optimizer": ("str", "recipe"),
    "scheduler": ("str", "recipe"),
    "aug_strength": ("float", "data"),  # > 0 turns augmentation on
    "subset": ("int", "data"),
    "width": ("float", "arch"),  # multiplier of every hidden conv layer's `out`
}


@dataclass(frozen=True)
class Param:
    """One axis of a search space: `field` sampled by `kind` from [lo, hi] or from `choices`."""

    field: str
    kind: str
    lo: float | None = None
    hi: float | None = None
    choices: tuple = ()

    def spec_text(self) -> str:
        """The `FIELD=SPEC` text this param was parsed from (normalised)."""
        if self.kind == "choice":
            return f"{self.field}=choice:{','.join(str(c) for c in self.choices)}"
        return f"{self.field}={self.kind}:{_g(self.lo)}:{_g(self.hi)}"

    def probe_values(self) -> list:
        """Values that must each give a valid recipe: the bounds, or every choice."""
        return list(self.choices) if self.kind == "choice" else [self.lo, self.hi]

    def grid_values(self) -> list:
        """Every value of this axis in a grid search (ConfigError for continuous ranges)."""
        if self.kind == "choice":
            return list(self.choices)
        if self.kind == "int" and self.hi - self.lo + 1 <= GRID_INT_MAX:
            return list(range(int(self.lo), int(self.hi) + 1))
        raise ConfigError(self.field, f"a grid search needs a finite list: use choice:A,B,C "
                                      f"(or int:LO:HI with at most {GRID_INT_MAX} values), not {self.kind}")


def _g(x: Any) -> str:
    return f"{x:g}" if isinstance(x, float) else str(x)


def _number(field_name: str, text: str, integer: bool) -> int | float:
    text = text.strip()
    try:
        v = float(text)
    except ValueError:
        raise ConfigError(field_name, f"{text!r} is not a number") from None
    if not math.isfinite(v):
        raise ConfigError(field_name, f"{text!r} is not a finite number")
    if integer:
        if not v.is_integer():
            raise ConfigError(field_name, f"{text!r} is not an integer ({field_name} is a whole number)")
        return int(v)
    return v


def parse_param(text: str) -> Param:
    """`lr=loguniform:0.0003:0.01`, `momentum=uniform:0.8:0.99`, `batch_size=int:32:256`,
    `optimizer=choice:sgd,adam` -> Param (ConfigError naming the field for anything malformed)."""
    if "=" not in str(text):
        raise ConfigError("param", f"{text!r} is not FIELD=SPEC (e.g. lr=loguniform:0.0003:0.01)")
    name, spec = (s.strip() for s in str(text).split("=", 1))
    if name not in FIELDS:
        raise ConfigError(name or "param", f"unknown field {name!r}; a sweep can vary: {', '.join(FIELDS)}")
    ftype = FIELDS[name][0]
    kind, _, rest = spec.partition(":")
    kind = kind.strip().lower()
    if kind not in KINDS:
        raise ConfigError(name, f"unknown kind {kind!r} in {spec!r}; use loguniform:LO:HI, uniform:LO:HI, "
                                "int:LO:HI or choice:A,B,C")
    if kind == "choice":
        items = [s.strip() for s in rest.split(",") if s.strip()]
        if not items:
            raise ConfigError(name, "the choice list is empty; give at least one value: choice:A,B,C")
        values = tuple(items if ftype == "str" else (_number(name, s, ftype == "int") for s in items))
        if len(set(values)) != len(values):
            raise ConfigError(name, f"the choice list {', '.join(items)} repeats a value")
        return Param(name, kind, choices=values)
    if ftype == "str":
        raise ConfigError(name, f"{name} takes names, not a range: use choice:A,B")
    if ftype == "int" and kind != "int":
        raise ConfigError(name, f"{name} is a whole number: use int:LO:HI or choice:A,B,C, not {kind}")
    bounds = rest.split(":")
    if len(bounds) != 2:
        raise ConfigError(name, f"{kind} needs two bounds, {kind}:LO:HI; got {spec!r}")
    lo, hi = (_number(name, b, kind == "int") for b in bounds)
    if lo > hi:
        raise ConfigError(name, f"LO {_g(lo)} is greater than HI {_g(hi)}")
    if kind == "loguniform" and lo <= 0:
        raise ConfigError(name, f"loguniform needs positive bounds, got LO {_g(lo)}")
    return Param(name, kind, lo, hi)


# ------------------------------------------------------------------ applying a sample


def scale_width(spec: list[dict], width: float) -> list[dict]:
    """The spec with every hidden conv layer's `out` (and inception branches) times `width`.

    The last layer with weights is never scaled: it makes the ten classes (seed 001 ends in a conv).
    Linear layers' `in` is dropped so it is inferred from the new widths. SpecError if a layer ends
    up 0 channels wide.
    """
    spec = copy.deepcopy(spec)
    weighted = [i for i, L in enumerate(spec) if str(L.get("type", "")).lower() in ("conv", "linear", "inception")]
    last = weighted[-1] if weighted else -1
    for i, L in enumerate(spec):
        kind = str(L.get("type", "")).lower()
        if kind == "linear":
            L.pop("in", None)
        if i == last:
            continue
        keys = ("out",) if kind == "conv" else ("b1", "b3r", "b3", "b5r", "b5", "pool") if kind == "inception" else ()
        for k in keys:
            if isinstance(L.get(k), int):
                new = int(round(L[k] * width))
                if new < 1:
                    raise ConfigError("width", f"{_g(width)} makes layer {i} ({kind}, {k}={L[k]}) 0 channels wide")
                L[k] = new
    return spec


def apply_sample(spec: list[dict], recipe: dict, sample: dict[str, Any]) -> tuple[list[dict], TrainConfig]:
    """(spec, TrainConfig) of one trial: the base with the sampled values set; raises ConfigError/SpecError."""
    recipe = copy.deepcopy(recipe)
    data = dict(recipe.pop("data", None) or {})
    for name, value in sample.items():
        ftype, where = FIELDS[name]
        if ftype == "int":
            value = int(value)
        elif ftype == "float":
            value = float(value)
        if where == "recipe":
            recipe[name] = value
        elif name == "aug_strength":
            data["augment"], data["aug_strength"] = value > 0, value if value > 0 else 1.0
        elif where == "data":
            data[name] = value
    if "width" in sample:
        spec = scale_width(spec, float(sample["width"]))
    cfg = TrainConfig.from_dict({**recipe, "data": data})
    return spec, cfg


# ------------------------------------------------------------------ the whole definition


@dataclass
class SweepDef:
    """What to sweep: base architecture and recipe, the space, and how to search it."""

    preset: str
    spec: list[dict]
    recipe: dict
    params: list[Param]
    trials: int
    concurrent: int | None = None  # None: as many as the cluster's CPUs allow (capped at trials)
    search: str = "random"
    early_stop: bool = False
    name: str = ""
    extra: dict = field(default_factory=dict)
    # the base architecture and recipe as `validate` checked them (None before): what follows trusts it
    base: RunPlan | None = field(default=None, compare=False, repr=False)

    def validate(self, max_concurrent: int | None = None) -> "SweepDef":
        """Refuse a bad definition with the field named, before anything starts; return self (with `base`).

        Called once, where a definition enters (`make_def`: the page and the CLI's flags; the CLI's
        `--definition` file); the launcher and the driver trust a validated definition.
        """
        if self.search not in SEARCHES:
            raise ConfigError("search", f"unknown search {self.search!r}; known: {', '.join(SEARCHES)}")
        if isinstance(self.trials, bool) or not isinstance(self.trials, int) or not 1 <= self.trials <= MAX_TRIALS:
            raise ConfigError("trials", f"must be a whole number from 1 to {MAX_TRIALS}, got {self.trials!r}")
        seen = set()
        for p in self.params:
            if p.field in seen:
                raise ConfigError(p.field, "appears twice in the search space")
            seen.add(p.field)
        base = plan_run(self.spec, TrainConfig.from_dict(self.recipe))
        for p in self.params:  # each bound / choice alone, on the base recipe
            for v in p.probe_values():
                try:
                    spec, cfg = apply_sample(self.spec, self.recipe, {p.field: v})
                    plan_run(spec, cfg, summary=base.summary if spec is self.spec else None)  # base spec: checked
                except ConfigError as exc:
                    if exc.field in (p.field, "data." + p.field):
                        msg = str(exc).split(": ", 1)[-1]
                        raise ConfigError(p.field, msg if _g(v) in msg else f"{_g(v)}: {msg}") from None
                    raise ConfigError(p.field, f"{_g(v)} gives an invalid recipe: {exc}") from None
                except SpecError as exc:
                    raise ConfigError(p.field, f"{_g(v)} gives an invalid architecture: {exc}") from None
        if self.search == "grid":
            n = self.grid_size()
            if n != self.trials:
                axes = ", ".join(p.field for p in self.params) or "no field"
                raise ConfigError("trials", f"a grid search over {axes} has {n} combinations; ask for {n} trials")
        elif not self.params:
            raise ConfigError("param", "the search space is empty: give at least one FIELD=SPEC")
        if self.concurrent is not None:
            if isinstance(self.concurrent, bool) or not isinstance(self.concurrent, int) or self.concurrent < 1:
                raise ConfigError("concurrent", f"must be a whole number of at least 1, got {self.concurrent!r}")
            if self.concurrent > self.trials:
                raise ConfigError("concurrent", f"{self.concurrent} at once is more than the {self.trials} trials")
            if max_concurrent is not None:
                self.fits(max_concurrent)
        if self.early_stop and base.cfg.epochs < 2 and "epochs" not in seen:
            raise ConfigError("early_stop", "early stopping compares trials between epochs: needs epochs of 2 or more")
        self.base = base
        return self

    def validated_base(self) -> RunPlan:
        """The base plan `validate` made; using a definition that was never validated is a programming error."""
        if self.base is None:
            raise TypeError("a SweepDef is validated where it enters (make_def, SweepDef.validate) before use")
        return self.base

    def fits(self, cpus: int) -> None:
        """ConfigError unless the trials asked to run at once fit the CPUs Ray has (a validated definition)."""
        if self.concurrent is not None and self.concurrent > cpus:
            raise ConfigError("concurrent", f"{self.concurrent} trials at once is more than the {cpus} "
                                            "CPUs available to Ray; each trial needs at least one")

    def grid_size(self) -> int:
        return math.prod(len(p.grid_values()) for p in self.params) if self.params else 1

    def to_dict(self) -> dict:
        """The definition as plain JSON data (stored with the sweep)."""
        return {"preset": self.preset, "spec": self.spec, "recipe": self.recipe,
                "params": [asdict(p) | {"choices": list(p.choices)} for p in self.params],
                "space": [p.spec_text() for p in self.params], "trials": self.trials,
                "concurrent": self.concurrent, "search": self.search, "early_stop": self.early_stop,
                "name": self.name}

    @classmethod
    def from_dict(cls, d: dict) -> "SweepDef":
        params = [Param(p["field"], p["kind"], p.get("lo"), p.get("hi"), tuple(p.get("choices") or ()))
                  for p in d.get("params") or []]
        return cls(preset=d["preset"], spec=d["spec"], recipe=d["recipe"], params=params, trials=d["trials"],
                   concurrent=d.get("concurrent"), search=d.get("search", "random"),
                   early_stop=bool(d.get("early_stop")), name=d.get("name") or "")


def make_def(preset: str, spec: list[dict], recipe: dict, param_texts: list[str], *, trials: int,
             concurrent: int | None = None, search: str = "random", early_stop: bool = False,
             name: str = "") -> SweepDef:
    """Parse every `FIELD=SPEC` and validate the whole definition (ConfigError naming the field)."""
    params = [parse_param(t) for t in param_texts if str(t).strip()]
    return SweepDef(preset, spec, recipe, params, trials, concurrent, search, early_stop, name).validate()


def to_tune(params: list[Param], search: str) -> dict:
    """The Ray Tune param_space of these params (grid: tune.grid_search; else tune's samplers)."""
    from ray import tune

    space = {}
    for p in params:
        if search == "grid":
            space[p.field] = tune.grid_search(p.grid_values())
        elif p.kind == "choice":
            space[p.field] = tune.choice(list(p.choices))
        elif p.kind == "loguniform":
            space[p.field] = tune.loguniform(p.lo, p.hi)
        elif p.kind == "uniform":
            space[p.field] = tune.uniform(p.lo, p.hi)
        else:
            space[p.field] = tune.randint(int(p.lo), int(p.hi) + 1)  # randint's upper bound is exclusive
    return space
