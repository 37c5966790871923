"""What the training command line imports: no UI libraries (Streamlit, plotly, captum), no torchvision."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
UI_LIBS = ("streamlit", "plotly", "captum")


def imported_modules(args: list[str], env_extra: dict | None = None) -> set[str]:
    """Module names `python -X importtime -m cnnlab ARGS` imported (parsed from its stderr)."""
    env = {**os.environ, **(env_extra or {})}
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "cnnlab", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    names = {m.group(1) for m in re.finditer(r"^import time:\s*\d+\s*\|\s*\d+\s*\|\s*([\w.]+)\s*$",
                                             proc.stderr, re.M)}
    assert "cnnlab.cli" in names and "argparse" in names, "importtime's output was not parsed"
    return names


def _top(names: set[str]) -> set[str]:
    return {n.split(".")[0] for n in names}


def test_train_help_imports_no_ui_library():
    tops = _top(imported_modules(["train", "--help"]))
    assert not tops & set(UI_LIBS), sorted(tops & set(UI_LIBS))


def test_a_saved_training_run_imports_no_ui_library_nor_torchvision(tmp_path):
    names = imported_modules(["train", "--preset", "fast", "--subset", "256", "--val-size", "100", "--quiet",
                              "--json"], {"CNNLAB_CHECKPOINT_DIR": str(tmp_path / "checkpoints")})
    assert {"cnnlab.engine", "cnnlab.recorder", "cnnlab.health", "torch"} <= names  # it really trained and saved
    bad = _top(names) & {*UI_LIBS, "torchvision"}
    assert not bad, f"imported {sorted(bad)}: lazy-import them where they are used"
