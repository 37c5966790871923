"""Compare page through streamlit.testing.v1.AppTest, on a temporary store with a few real runs."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

from streamlit.testing.v1 import AppTest

from test_compare import _evil_pickle, runs_template, store  # noqa: F401  (fixtures)

PAGE = str(Path(__file__).resolve().parents[1] / "app_pages" / "compare.py")
K = "compare_"


def _app() -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=120)
    at.run()
    assert not at.exception, at.exception
    return at


def _run(at: AppTest) -> AppTest:
    at.run()
    assert not at.exception, at.exception
    return at


def _table(at: AppTest, column: str):
    """The first st.dataframe with `column` (display-only tables carry no key in AppTest)."""
    for df in at.dataframe:
        if column in df.value.columns:
            return df.value
    raise AssertionError(f"no table with column {column!r}")


def _texts(at: AppTest) -> str:
    parts = [e.value for kind in ("error", "warning", "info", "success", "markdown", "caption")
             for e in getattr(at, kind)]
    return "\n".join(str(p) for p in parts)


def test_empty_store_shows_how_to_make_a_first_run(manager):
    at = _app()
    assert "No runs yet" in _texts(at) and "python -m cnnlab train" in _texts(at)
    assert at.file_uploader(key=K + "import_file")  # importing works from an empty store too


def test_table_selection_curves_diff_and_evaluation(manager, store):
    ids = store.ids
    at = _app()
    table = at.dataframe[0].value
    assert set(table["id"]) == set(ids.values())
    assert table.set_index("id").loc[ids["broken"], "status"] == "error"
    assert table.set_index("id").loc[ids["fork"], "parent"] == "alpha @ epoch 1"
    # select two runs: the overlay draws both, the diff compares them
    at.multiselect(key=K + "selected").set_value([ids["alpha"], ids["fork"]])
    _run(at)
    charts = [c for c in at.get("plotly_chart")]
    assert charts, "no charts"
    overlay = json.loads(charts[0].proto.spec)
    names = {t.get("name") for t in overlay["data"] if t.get("showlegend", True) is not False}
    assert {"alpha", "alpha fork"} <= names
    assert "Dotted lines are forks" in _texts(at)
    diff = _table(at, "field")
    assert "recipe.epochs" in set(diff["field"]) and "spec.0.type" not in set(diff["field"])
    # metric and axis switches
    at.selectbox(key=K + "metric").set_value("validation accuracy")
    at.radio(key=K + "xaxis").set_value("time (s)")
    _run(at)
    # evaluation: confusion matrix, cell drill-down through the selectbox fallback
    assert at.selectbox(key=K + "eval_run").value == ids["alpha"]
    at.radio(key=K + "eval_which").set_value("last")
    _run(at)
    assert any(m.label == "Test accuracy" for m in at.metric)
    at.selectbox(key=K + "cell_true").set_value(4)
    at.selectbox(key=K + "cell_pred").set_value(9)
    _run(at)
    assert "test images of digit **4** predicted as **9**" in _texts(at)
    if "**0** test images" not in _texts(at):
        cells = _table(at, "test index")
        assert set(cells["true"]) == {4} and set(cells["predicted"]) == {9}
    assert _table(at, "layer")["layer"].tolist()[:2] == ["pixels", "conv"]  # seed002 reads raw pixels


def test_rename_tag_and_delete_with_confirmation(manager, store):
    ids = store.ids
    at = _app()
    at.selectbox(key=K + "manage_run").set_value(ids["diverged"])
    _run(at)
    at.text_input(key=f"{K}name_{ids['diverged']}").set_value("exploded")
    at.button(key=K + "rename").click()
    _run(at)
    assert "Renamed to “exploded”" in _texts(at)
    assert store.get(ids["diverged"]).meta["name"] == "exploded"
    at.text_input(key=f"{K}tags_{ids['diverged']}").set_value("bad lr, , bad lr, x")
    at.button(key=K + "save_tags").click()
    _run(at)
    assert store.get(ids["diverged"]).meta["tags"] == ["bad lr", "x"]
    assert "exploded" in set(at.dataframe[0].value["name"])
    # delete asks first; cancel keeps the run
    at.button(key=K + "delete").click()
    _run(at)
    assert "This cannot be undone" in _texts(at)
    at.button(key=K + "delete_no").click()
    _run(at)
    assert store.exists(ids["diverged"])
    at.button(key=K + "delete").click()
    _run(at)
    at.button(key=K + "delete_yes").click()
    _run(at)
    assert not (store.root / ids["diverged"]).exists()
    assert ids["diverged"] not in set(at.dataframe[0].value["id"])
    assert "Deleted" in _texts(at)


def test_delete_refuses_an_active_run(manager, store):
    rid = store.ids["alpha"]
    store.get(rid).write_status(status="running")  # this process's pid: alive
    manager.list_runs = lambda: store.list_runs(live_ids={rid})
    at = _app()
    at.selectbox(key=K + "manage_run").set_value(rid)
    _run(at)
    assert at.button(key=K + "delete").disabled
    assert store.exists(rid)


def test_import_refuses_a_malicious_zip_and_accepts_an_export(manager, store, tmp_path):
    before = sorted(p.name for p in store.root.iterdir())
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("r/config.json", "{}")
        zf.writestr("r/last.pt", _evil_pickle())
        zf.writestr("../outside.txt", "x")
    at = _app()
    at.file_uploader(key=K + "import_file").set_value(("evil.zip", buf.getvalue(), "application/zip"))
    _run(at)
    at.button(key=K + "import").click()
    _run(at)
    assert any("import refused" in e.value for e in at.error)
    assert sorted(p.name for p in store.root.iterdir()) == before
    assert not (store.root.parent / "outside.txt").exists()
    good = store.export_zip(store.ids["alpha"])
    at.file_uploader(key=K + "import_file").set_value(("run.zip", good, "application/zip"))
    _run(at)
    at.button(key=K + "import").click()
    _run(at)
    # the store already holds this run: the copy gets a distinct name and the message says so
    assert "Already imported as “alpha”" in _texts(at) and "“alpha (copy 2)”" in _texts(at)
    assert len(at.dataframe[0].value) == len(before) + 1
    at.button(key=K + "import").click()  # pressing Import again: a third, distinctly named copy
    _run(at)
    assert "“alpha (copy 3)”" in _texts(at)
    names = [i.name for i in store.list_runs()]
    assert names.count("alpha") == 1 and names.count("alpha (copy 2)") == 1


def test_run_tables_show_whole_ids_beside_the_name(manager, store):
    """Issue 12: ids were the last column, cut off or out of view at 1024 px. In every runs table (Compare's,
    the Train page's saved runs) the id comes right after the name, in a column as wide as the longest id."""
    train = AppTest.from_file(str(Path(PAGE).with_name("train.py")), default_timeout=120)
    _run(train)
    ids = [i.id for i in store.list_runs()]
    for at in (_app(), train):
        (df,) = [d for d in at.dataframe if "id" in d.value.columns and "name" in d.value.columns]
        order = list(df.proto.column_order) or list(df.value.columns)
        assert order.index("id") == order.index("name") + 1, order
        config = json.loads(df.proto.columns)
        assert config["id"]["width"] >= 7.5 * max(len(i) for i in ids) + 12, config["id"]  # digits ~7.3 px
