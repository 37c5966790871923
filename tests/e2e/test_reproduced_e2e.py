"""Train page in a real browser: a preset shows what the lab reproduced of its seed, and a live run of the
preset draws that reproduction's validation curve faintly beside its own (labelled 'val (test set)')."""

from __future__ import annotations

import json
import os
import re

from .conftest import REPO_ROOT
from .harness import click_button, expect_text, fill_number, goto, select_option


def _record(path) -> None:
    curve = [[e, 0.97 + 0.004 * e] for e in range(1, 11)]
    entry = {"preset": "seed002", "title": "t", "params": 30840, "reported": "r", "epochs": 10, "batch_size": 32,
             "validation": "test", "machine": {"label": "2-core CPU (e2e)"}, "extrapolated": False,
             "runs": [{"seed": 0, "status": "done", "test_acc": 0.9912, "wall_s": 480, "images_per_s": 5000,
                       "run_id": "x", "val_curve": curve}],
             "test_acc_mean": 0.9912, "test_acc_min": 0.9912, "test_acc_max": 0.9912, "wall_s_mean": 480}
    path.write_text(json.dumps({"seed002": entry}))


def test_preset_shows_reproduced_figure_and_reference_curve(streamlit_server, page, tmp_path):
    record = tmp_path / "reproduction.json"
    _record(record)
    env = {"CNNLAB_CHECKPOINT_DIR": str(tmp_path / "checkpoints"), "CNNLAB_DOWNLOAD": "0",
           "CNNLAB_REPRODUCTION_RECORD": str(record),
           "CNNLAB_DATA_DIR": os.environ.get("CNNLAB_DATA_DIR") or str(REPO_ROOT.parent / "shared" / "data")}
    server = streamlit_server(REPO_ROOT / "app.py", env=env)
    goto(page, server.url)
    select_option(page, "Preset", "seed002")
    expect_text(page, re.compile(r"Reproduced here: 99\.12% test \(1 seed\) in 10 epochs, 8\.0 min on a 2-core CPU"))
    fill_number(page, "Training subset (0 = all)", 600)
    fill_number(page, "Epochs", 30)
    fill_number(page, "Batch size", 50)
    click_button(page, "Launch")
    expect_text(page, "reproduced here (seed002)", timeout=60_000)  # the reference trace's legend entry
    expect_text(page, re.compile(r"val \(test set\) acc \(epoch\)"), timeout=90_000)  # after the first epoch
    click_button(page, "Stop")
