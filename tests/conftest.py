"""Shared test setup: real MNIST from CNNLAB_DATA_DIR (default ../shared/data), a temp run store per test."""

from __future__ import annotations

import os
import time
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


@pytest.fixture
def manager(_tmp_store):
    """The app's process-wide job manager (cnnlab.ui), fresh on this test's store; its jobs are stopped after."""
    from cnnlab import ui

    ui.get_manager.clear()
    m = ui.get_manager()
    yield m
    for j in m.jobs():
        try:
            m.stop(j.id)
        except Exception:  # already final
            pass
    deadline = time.time() + 30
    while m.live_ids() and time.time() < deadline:
        time.sleep(0.1)
    ui.get_manager.clear()
