"""A training recipe: `TrainConfig`, its fields' rules (ranges in `fields.RANGES`) and its dict form."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from . import data as D
from .errors import ConfigError
from .fields import OPTIMIZERS, SCHEDULERS, check
from .settings import pick_device


@dataclass(frozen=True)
class TrainConfig:
    """A training recipe (frozen: once validated it stays valid). Validate before use (`plan.plan_run`
    does, where a recipe enters); every error names its field."""

    optimizer: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.9  # SGD momentum; Adam/AdamW beta1
    nesterov: bool = False
    weight_decay: float = 0.0
    scheduler: str = "none"
    step_size: int = 15  # StepLR period in epochs
    gamma: float = 0.1  # StepLR factor
    pct_start: float = 0.25  # OneCycle warm-up fraction
    batch_size: int = 64
    epochs: int = 5
    label_smoothing: float = 0.0
    seed: int = 0
    device: str = "auto"
    channels_last: bool = False
    eval_batch_size: int = 1000
    tta_shift: int = 0  # test-time augmentation: 0 = plain; N = mean softmax over the image and 4 N-px shifts
    data: D.DataConfig = field(default_factory=D.DataConfig)

    def validate(self) -> "TrainConfig":
        """Raise ConfigError naming the first bad field; return self."""
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError("optimizer", f"unknown optimizer {self.optimizer!r}; known: {', '.join(OPTIMIZERS)}")
        if self.scheduler not in SCHEDULERS:
            raise ConfigError("scheduler", f"unknown scheduler {self.scheduler!r}; known: {', '.join(SCHEDULERS)}")
        check("lr", self.lr)
        check("momentum", self.momentum)
        if not isinstance(self.nesterov, bool):
            raise ConfigError("nesterov", f"must be true or false, got {self.nesterov!r}")
        if self.nesterov and self.optimizer == "sgd" and self.momentum <= 0:
            raise ConfigError("nesterov", "needs momentum > 0")
        for name in ("weight_decay", "step_size", "gamma", "pct_start", "batch_size", "epochs", "label_smoothing",
                     "seed", "eval_batch_size", "tta_shift"):
            check(name, getattr(self, name))
        if not isinstance(self.channels_last, bool):
            raise ConfigError("channels_last", f"must be true or false, got {self.channels_last!r}")
        if not isinstance(self.data, D.DataConfig):
            raise ConfigError("data", "must be a DataConfig")
        self.data.validate()
        if self.batch_size > self.n_train():
            raise ConfigError("batch_size", f"{self.batch_size} is larger than the {self.n_train()} training images")
        pick_device(self.device)
        return self

    def n_train(self) -> int:
        return self.data.n_train()

    def steps_per_epoch(self) -> int:
        return D.steps_per_epoch(self.n_train(), self.batch_size)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict | None, **overrides: Any) -> "TrainConfig":
        """Build from a dict (unknown keys refused with ConfigError); overrides win (None ignored)."""
        if d is not None and not isinstance(d, dict):
            raise ConfigError("recipe", f"must be a dict of training options, got {type(d).__name__} {str(d)[:40]!r}")
        d = dict(d or {})
        d.update({k: v for k, v in overrides.items() if v is not None})
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ConfigError(sorted(unknown)[0], f"unknown option; known: {', '.join(cls.__dataclass_fields__)}")
        data = d.pop("data", None)
        if isinstance(data, D.DataConfig):
            dc = data
        else:
            if data is not None and not isinstance(data, dict):
                raise ConfigError("data", f"must be a dict of data options ({', '.join(D.DataConfig.__dataclass_fields__)})"
                                          f", got {type(data).__name__} {str(data)[:40]!r}")
            data = dict(data or {})
            bad = set(data) - set(D.DataConfig.__dataclass_fields__)
            if bad:
                raise ConfigError(f"data.{sorted(bad)[0]}", "unknown data option")
            dc = D.DataConfig(**data)
        return cls(data=dc, **d)
