"""The pages' one door (cnnlab.lab): what every page asks about runs goes through a Lab.

Checked here: no page imports the run store or reaches a private name; a rename on the Compare page
reaches the Train page's view of a training job; a run deleted in another tab is a message, never a
traceback.
"""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from cnnlab.lab import Lab, RunGone
from cnnlab.plan import plan_run

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted((ROOT / "app_pages").glob("*.py")) + [ROOT / "app.py"]


def _tiny_job(manager, name: str) -> str:
    """A queued-then-paused job: active (it holds a training slot) but costs no CPU."""
    from cnnlab import trainform as tf

    vals = tf.form_defaults("fast")
    vals.update(subset=512, val_size=500, epochs=1, batch_size=64)
    rid = manager.submit("fast", plan_run(tf.preset_spec("fast")[0], tf.build_config(vals)), name=name)
    manager.pause(rid)
    return rid


@pytest.mark.parametrize("path", PAGES, ids=lambda p: p.name)
def test_no_page_imports_the_store_or_reaches_a_private_name(path):
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    problems = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            names = [a.name for a in node.names]
            if node.module == "cnnlab.runs" and "RunStore" in names:
                problems.append(f"line {node.lineno}: imports RunStore")
            problems += [f"line {node.lineno}: imports private {n}" for n in names if n.startswith("_")]
        elif isinstance(node, ast.Import):
            problems += [f"line {node.lineno}: imports {a.name}" for a in node.names if a.name == "cnnlab.runs"]
        elif isinstance(node, ast.Attribute):
            if node.attr.startswith("_") and not node.attr.startswith("__"):
                problems.append(f"line {node.lineno}: reaches private .{node.attr}")
            if node.attr in ("store", "manager"):  # the lab is the door: not what sits behind it
                problems.append(f"line {node.lineno}: reaches .{node.attr}")
        elif isinstance(node, ast.Name) and node.id == "RunStore":
            problems.append(f"line {node.lineno}: uses RunStore")
    assert not problems, f"{path.name}: " + "; ".join(problems)


def test_the_check_above_catches_what_it_forbids(tmp_path):
    bad = "from cnnlab.runs import RunStore, _effective_status\nx = store._dir('a')\ny = manager.store\n"
    tree = ast.parse(bad)
    attrs = {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
    imports = {a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names}
    assert {"_dir", "store"} <= attrs and {"RunStore", "_effective_status"} <= imports


def test_rename_through_the_lab_reaches_the_jobs_view(manager):
    lab = Lab(manager)
    rid = _tiny_job(manager, "before")
    assert lab.rename(rid, "  after  ") == "after"
    assert manager.get(rid).name == "after"
    assert {i.id: i.name for i in lab.list_runs()}[rid] == "after"


def test_a_vanished_run_is_a_clear_message(manager):
    from cnnlab.runs import RunStore

    lab = Lab(manager)
    handle = RunStore().create({"preset": "x", "spec": [], "recipe": {}}, name="gone soon")
    handle.write_status(status="stopped")
    shutil.rmtree(handle.path)
    for call in (lambda: lab.config(handle.id), lambda: lab.rename(handle.id, "x"),
                 lambda: lab.export_zip(handle.id), lambda: lab.evaluate(handle.id),
                 lambda: lab.set_tags(handle.id, ["t"]), lambda: lab.delete(handle.id)):
        with pytest.raises(RunGone, match="no longer in the store"):
            call()


def test_renaming_on_compare_shows_on_the_train_page(manager):
    rid = _tiny_job(manager, "launch name")
    train = AppTest.from_file(str(ROOT / "app_pages" / "train.py"), default_timeout=90)
    train.query_params["run"] = rid
    train.run()
    assert not train.exception, train.exception
    assert train.text_input(key=f"train_rename_{rid}").value == "launch name"

    compare = AppTest.from_file(str(ROOT / "app_pages" / "compare.py"), default_timeout=90)
    compare.run()
    assert not compare.exception, compare.exception
    compare.selectbox(key="compare_manage_run").set_value(rid).run()
    compare.text_input(key=f"compare_name_{rid}").input("renamed on compare")
    compare.button(key="compare_rename").click().run()
    assert not compare.exception, compare.exception

    train.run()  # the other tab's next poll
    assert not train.exception, train.exception
    assert train.text_input(key=f"train_rename_{rid}").value == "renamed on compare"
    assert "renamed on compare" in train.selectbox(key="train_show").format_func(rid)


def test_a_run_deleted_in_another_tab_is_a_message_on_compare(manager):
    from cnnlab.runs import RunStore

    store = RunStore()
    keep = store.create({"preset": "x", "spec": [], "recipe": {}}, name="kept")
    gone = store.create({"preset": "x", "spec": [], "recipe": {}}, name="deleted elsewhere")
    for h in (keep, gone):
        h.write_status(status="stopped")
    listed = manager.list_runs()
    shutil.rmtree(gone.path)  # another tab deleted it after this page listed the runs
    manager.list_runs = lambda: listed
    at = AppTest.from_file(str(ROOT / "app_pages" / "compare.py"), default_timeout=90)
    at.run()
    for key in ("compare_eval_run", "compare_manage_run", "compare_export_run"):
        at.selectbox(key=key).set_value(gone.id)
    at.run()
    assert not at.exception, at.exception
    assert any("no longer in the store" in e.value for e in at.error), [e.value for e in at.error]


def _live_box(at: AppTest, rid: str, field: str):
    return next(n for n in at.number_input if (n.key or "").startswith(f"train_live_{rid}_{field}_"))


def test_a_stale_tabs_apply_does_not_undo_another_tabs_live_change(manager):
    rid = _tiny_job(manager, "two tabs")
    tabs = []
    for _ in range(2):  # both tabs open on the run before either changes anything
        at = AppTest.from_file(str(ROOT / "app_pages" / "train.py"), default_timeout=90)
        at.query_params["run"] = rid
        at.run()
        assert not at.exception, at.exception
        tabs.append(at)
    tab1, tab2 = tabs
    lr0, m0 = manager.get(rid).live_values()["lr"], manager.get(rid).live_values()["momentum"]
    assert _live_box(tab2, rid, "lr").value == lr0
    _live_box(tab1, rid, "lr").set_value(lr0 / 4)
    tab1.button(key="FormSubmitter:train_live_form-Apply").click().run()
    assert not tab1.exception and not tab1.error, [e.value for e in tab1.error]
    assert manager.get(rid).live_values()["lr"] == pytest.approx(lr0 / 4)
    # tab 2 still shows the old learning rate; its user changes only the momentum
    _live_box(tab2, rid, "momentum").set_value(m0 / 2)
    tab2.button(key="FormSubmitter:train_live_form-Apply").click().run()
    assert not tab2.exception and not tab2.error, [e.value for e in tab2.error]
    live = manager.get(rid).live_values()
    assert live["momentum"] == pytest.approx(m0 / 2)
    assert live["lr"] == pytest.approx(lr0 / 4)  # tab 1's change stays
