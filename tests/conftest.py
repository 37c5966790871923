"""Shared test setup: real MNIST found where the app finds it, a temp run store per test.

MNIST: CNNLAB_DATA_DIR if set, else ../shared/data where that exists (this workplace), else ./data like
the app; if it is not there the session downloads it once (unless CNNLAB_DOWNLOAD=0) or stops with a
message saying what to put where. The tests themselves never reach for the network.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if not os.environ.get("CNNLAB_DATA_DIR"):
    _shared = (ROOT / ".." / "shared" / "data").resolve()
    os.environ["CNNLAB_DATA_DIR"] = str(_shared if (_shared / "MNIST" / "raw").is_dir() else ROOT / "data")
_MAY_DOWNLOAD = os.environ.get("CNNLAB_DOWNLOAD", "1") != "0"
os.environ["CNNLAB_DOWNLOAD"] = "0"  # tests never reach for the network (the session start may, once)


def pytest_sessionstart(session) -> None:
    """Make sure MNIST is there (download it once where allowed), else stop saying what is needed."""
    from cnnlab import data, datacheck

    root = Path(os.environ["CNNLAB_DATA_DIR"])
    if datacheck.files_present(root) == len(data.RAW_FILES):
        return
    why = "downloading is switched off (CNNLAB_DOWNLOAD=0)"
    if _MAY_DOWNLOAD:
        try:
            data.load_mnist(root, download=True)
            return
        except Exception as exc:  # offline: say so below
            why = f"downloading it failed: {str(exc).splitlines()[0]}"
    files = ", ".join(data.RAW_FILES)
    pytest.exit(f"The tests need MNIST and it is not in {root.resolve() / 'MNIST' / 'raw'} ({why}). Put the four "
                f"files there ({files}; uncompressed or .gz), or set CNNLAB_DATA_DIR to a folder that has "
                "MNIST/raw/ with them.", returncode=4)


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
def manager(_tmp_store, request, monkeypatch):
    """The app's process-wide job manager (cnnlab.ui), fresh on this test's store; its jobs are stopped after.

    Its workers are the app's (training processes); `@pytest.mark.parametrize("manager", ["thread"],
    indirect=True)` asks for thread workers (e.g. to hold back their data loader).
    """
    from cnnlab import ui

    if getattr(request, "param", None):
        monkeypatch.setenv("CNNLAB_JOB_WORKERS", request.param)
    ui.release_managers()  # one an earlier page test made (with its spare training process)
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
    ui.release_managers()  # its spare training process too
