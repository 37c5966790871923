"""Settings read from the environment: data directory, run store, device."""

from __future__ import annotations

import os
from pathlib import Path

import torch


def data_dir() -> Path:
    """Where MNIST lives: CNNLAB_DATA_DIR, default ./data (torchvision layout: <dir>/MNIST/raw)."""
    return Path(os.environ.get("CNNLAB_DATA_DIR") or "./data").expanduser()


def checkpoint_dir() -> Path:
    """Where runs are stored: CNNLAB_CHECKPOINT_DIR, default ./checkpoints."""
    return Path(os.environ.get("CNNLAB_CHECKPOINT_DIR") or "./checkpoints").expanduser()


def pick_device(name: str = "auto") -> torch.device:
    """CUDA, then MPS, then CPU; `name` ('cpu', 'cuda', 'mps', 'cuda:1') overrides."""
    from .errors import ConfigError

    name = (name or "auto").strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("device", f"'{name}' requested but CUDA is not available; use 'auto' or 'cpu'")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ConfigError("device", "'mps' requested but MPS is not available; use 'auto' or 'cpu'")
    try:
        return torch.device(name)
    except RuntimeError as exc:
        raise ConfigError("device", f"unknown device '{name}'; use auto, cpu, cuda or mps") from exc
