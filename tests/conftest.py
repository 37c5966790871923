"""Shared test setup: real MNIST from CNNLAB_DATA_DIR (default ../shared/data), a temp run store per test."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if not os.environ.get("CNNLAB_DATA_DIR"):
    os.environ["CNNLAB_DATA_DIR"] = str((ROOT / ".." / "shared" / "data").resolve())
os.environ.setdefault("CNNLAB_DOWNLOAD", "0")  # tests never reach for the network


@pytest.fixture(autouse=True)
def _tmp_store(tmp_path, monkeypatch):
    """Every test writes runs to its own temporary store, never to ./checkpoints."""
    monkeypatch.setenv("CNNLAB_CHECKPOINT_DIR", str(tmp_path / "checkpoints"))
    yield


@pytest.fixture(scope="session")
def mnist():
    """The real MNIST tensors (loaded once per session)."""
    from cnnlab.data import load_mnist

    return load_mnist()
