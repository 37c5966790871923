"""Settings read from the environment: data directory, run store, device; intra-op threads."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator

import torch


def data_dir() -> Path:
    """Where MNIST lives: CNNLAB_DATA_DIR, default ./data (torchvision layout: <dir>/MNIST/raw)."""
    return Path(os.environ.get("CNNLAB_DATA_DIR") or "./data").expanduser()


def checkpoint_dir() -> Path:
    """Where runs are stored: CNNLAB_CHECKPOINT_DIR, default ./checkpoints."""
    return Path(os.environ.get("CNNLAB_CHECKPOINT_DIR") or "./checkpoints").expanduser()


def job_threads() -> int | None:
    """CNNLAB_THREADS: intra-op threads of each training job and of `train` (unset: the cores shared out).

    For a machine shared with other work, where two OpenMP threads per job wait for each other's core.
    """
    from .errors import ConfigError

    raw = (os.environ.get("CNNLAB_THREADS") or "").strip()
    if not raw:
        return None
    if not raw.isdigit() or int(raw) < 1:
        raise ConfigError("CNNLAB_THREADS", f"must be a whole number of threads (1 or more), got {raw!r}")
    return int(raw)


def job_workers() -> str:
    """CNNLAB_JOB_WORKERS: where the app trains its jobs, "process" (default: a training process each, as
    fast as the CLI whatever the pages do) or "thread" (threads of the app's own process)."""
    from .errors import ConfigError

    raw = (os.environ.get("CNNLAB_JOB_WORKERS") or "process").strip().lower()
    if raw not in ("process", "thread"):
        raise ConfigError("CNNLAB_JOB_WORKERS", f"must be process or thread, got {raw!r}")
    return raw


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


@contextlib.contextmanager
def limit_threads(n: int = 1) -> Iterator[None]:
    """Run the block with at most `n` intra-op threads in the calling thread, then restore.

    A single 28x28 image, or a batch of them, gains little from more threads, and on a small CPU
    shared with other work extra threads only contend: each parallel op waits for a sibling thread
    the OS has descheduled (measured on the busy 2-core box: a batch's preparation 10-100x slower). With OpenMP the setting is per thread (a trainer already
    running keeps its own), but torch also uses the last value as the default for threads created
    later, hence the restore.
    """
    before = torch.get_num_threads()
    if before <= n:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
