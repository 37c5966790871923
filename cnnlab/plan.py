"""What a run trains: an architecture and a recipe, parsed and validated once, where they enter the lab.

The entries are the Train form (`trainform.plan_for_launch`), the CLI (`train`, `lr-find`, `reproduce`),
a stored run's config.json (resume; an imported zip, `plan_from_config`), a fork's changed recipe and a
sweep trial's sample. Each makes a `RunPlan` with `plan_run`; the job manager, the run store
(`recorder.create_run`, `run_config`) and the `Trainer` take the plan and trust it: they never check the
spec or the recipe again. A `TrainConfig` is frozen, so a validated recipe stays as it was checked.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .errors import LabError
from .spec import Summary, validate_spec
from .recipe import TrainConfig


@dataclass(frozen=True)
class RunPlan:
    """A validated architecture (`spec`, with its `summary`) and recipe (`cfg`). Made by `plan_run`."""

    spec: list[dict]
    cfg: TrainConfig
    summary: Summary

    @property
    def params(self) -> int:
        """Trainable parameters of the architecture."""
        return self.summary.total_params


def plan_run(spec: Any, cfg: TrainConfig, *, summary: Summary | None = None) -> RunPlan:
    """Validate the recipe (ConfigError naming the field), then the architecture (SpecError naming the layer).

    `summary`: the spec's `validate_spec` result when this same entry has just made it (the Train form
    checks a custom text as it is typed), so it is not computed twice.
    """
    cfg.validate()
    return RunPlan(spec, cfg, summary if summary is not None else validate_spec(spec))


def plan_from_config(config: dict) -> RunPlan:
    """The plan of a run's config.json, or a LabError saying what is wrong with it ("config.json: ...").

    Where stored runs enter from outside (an imported zip), so that resume and fork can use them.
    """
    spec = config.get("spec")
    if not isinstance(spec, list):
        raise LabError(f"config.json spec must be a list of layers, got {type(spec).__name__}")
    try:
        return plan_run(spec, TrainConfig.from_dict(config.get("recipe")))
    except LabError as exc:
        raise LabError(f"config.json: {exc}") from None
