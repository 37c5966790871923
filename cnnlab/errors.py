"""Errors a user should see as a message (never as a traceback)."""

from __future__ import annotations


class LabError(Exception):
    """Base of every error that the UI and CLI show as a plain message."""


class ConfigError(LabError, ValueError):
    """A hyperparameter or data option is invalid; `field` names it."""

    def __init__(self, field: str, message: str):
        self.field = field
        super().__init__(f"{field}: {message}")


class SpecError(LabError, ValueError):
    """A layer spec is malformed or its shapes do not fit."""


class DataMissingError(LabError, FileNotFoundError):
    """MNIST files are not where the lab looks for them."""


class CheckpointError(LabError):
    """A weights file is missing, corrupt, or belongs to another architecture."""


class DiskFullError(LabError, OSError):
    """The disk filled up while a run file was written; the previous complete file is still there."""
