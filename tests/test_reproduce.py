"""`reproduce`: a shortened recipe trains for real and reports; the record renders into REPRODUCTION.md and
the Train page's 'Reproduced here' line and reference curve."""

import json
import os
import subprocess
import sys
from pathlib import Path

from cnnlab import reproduce as R
from cnnlab import trainform as tf
from cnnlab.plan import plan_run

ROOT = Path(__file__).resolve().parents[1]


def _entry(preset="seed002", accs=(0.9901, 0.9911)):
    runs = [{"seed": i, "status": "done", "test_acc": a, "wall_s": 100.0 + i, "images_per_s": 5000.0,
             "run_id": f"r{i}", "val_curve": [[1, 0.98], [2, a]]} for i, a in enumerate(accs)]
    return {"preset": preset, "title": "t", "params": 30840, "reported": "99.49% train", "reported_test_acc": None,
            "source": "github.com/x/y", "epochs": 2, "batch_size": 32, "validation": "test",
            "machine": {"label": "2-core CPU (test)", "torch": "2.x"}, "date": "2026-12-02", "runs": runs,
            "test_acc_mean": sum(accs) / len(accs), "test_acc_min": min(accs), "test_acc_max": max(accs),
            "wall_s_mean": 100.5, "images_per_s": 5000.0, "extrapolated": False,
            "timing": {"step_s": 0.01, "steps_timed": 10, "batch_size": 32}}


def test_record_merges_by_preset_and_renders_the_page(tmp_path):
    rec, page = tmp_path / "r.json", tmp_path / "R.md"
    R.save_entries([_entry("seed002")], rec, page)
    R.save_entries([_entry("seed004", (0.99,)) | {"validation": "holdout"}], rec, page)
    data = json.loads(rec.read_text())
    assert set(data) == {"seed002", "seed004"}
    md = page.read_text()
    assert "| `seed002` | 30,840 | 99.49% train | 99.06% (99.01%–99.11%) | — | 2 |" in md
    assert "r0, r1" in md and "2-core CPU (test)" in md
    line = R.reproduced_line(data["seed002"])
    assert line.startswith("Reproduced here: 99.06% test (2 seeds, 99.01%–99.11%) in 2 epochs")
    assert R.reference_curve(data["seed002"]) == [[1, 0.98], [2, 0.9901]]  # the run closest to the mean
    partial = _entry() | {"partial": True, "epochs_done": 3, "epochs": 20, "partial_val_acc": 0.981,
                          "partial_wall_s": 7200, "test_acc_mean": None}
    assert "98.10% test after 3 of 20 epochs" in R.reproduced_line(partial)


def test_train_page_shows_the_reproduced_line_and_overlays_the_reference(tmp_path, monkeypatch):
    monkeypatch.setattr(R, "RECORD", tmp_path / "r.json")
    R.save_entries([_entry("seed002")], page=tmp_path / "R.md")
    assert "Reproduced here: 99.06%" in tf.preset_caption("seed002")
    assert "Reproduced here" not in tf.preset_caption("fast")
    ref = tf.reference_for("seed002", 1875)
    assert ref[1] == [1875, 3750] and ref[2] == [0.98, 0.9901]
    cache = tf.CurveCache("x", val_name=tf.val_label(tf.TrainConfig.from_dict({"data": {"val_source": "test"}})),
                          reference=ref)
    names = [t.name for t in cache.figure().data]
    assert "reproduced here (seed002)" in names


def test_reproduce_cli_smoke_trains_for_real_and_writes_no_record(tmp_path):
    record = tmp_path / "reproduction.json"
    env = {**os.environ, "CNNLAB_REPRODUCTION_RECORD": str(record)}
    out = subprocess.run([sys.executable, "-m", "cnnlab", "reproduce", "seed002", "--seeds", "1", "--epochs", "1",
                          "--subset", "1500", "--time-steps", "4", "--json"], cwd=ROOT, capture_output=True,
                         text=True, timeout=600, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    res = json.loads(out.stdout.strip().splitlines()[-1])["presets"]["seed002"]
    assert res["epochs"] == 1 and 0.5 < res["test_acc_mean"] <= 1 and len(res["run_ids"]) == 1
    assert not record.exists()  # a shortened recipe is a check, not a reproduction


def test_entry_from_runs_reads_stored_runs_back(mnist):
    from cnnlab.engine import Trainer
    from cnnlab.presets import get_preset
    from cnnlab.recorder import RunRecorder, create_run
    from cnnlab.runs import RunStore

    p = get_preset("fast")
    cfg = R.recipe_config("fast", 0, subset=512)
    run = create_run(RunStore(), "fast", plan_run(p.spec, cfg), name="from-runs")
    result = Trainer(plan_run(p.spec, cfg), mnist, callbacks=[RunRecorder(run)]).run()
    entry = R.entry_from_runs("fast", [run.id])
    assert entry["from_store"] and entry["runs"][0]["run_id"] == run.id
    assert entry["test_acc_mean"] == result.test_acc and entry["runs"][0]["epochs"] == 1
