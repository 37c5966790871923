"""Compare page: the runs table, overlay curves, config diff, test-set evaluation, export and import."""

from __future__ import annotations

import streamlit as st

from cnnlab import compare as C
from cnnlab import fixes

from cnnlab.errors import LabError
from cnnlab.plots import evaluation as P
from cnnlab.plots import why
from cnnlab.spec import summarize
from cnnlab.status import ACTIVE
from cnnlab.textsafe import md_text
from cnnlab.ui import get_lab, pick_one, run_table_columns, show_error, test_map_view

K = "compare_"  # widget-key namespace of this page
SEL = K + "selected"  # the selected run ids (the multiselect's key; the table's ticks feed it)
FIRST_RUN = """**No runs yet.** Make a first one:

- open the **Train** page, pick a preset (e.g. `seed002`) and start it, or
- from a terminal: `python -m cnnlab train --preset seed002 --subset 1000 --epochs 2`

Runs from the app and from the command line land in the same store and show up here alike.
You can also import a run zip (at the bottom of this page)."""

lab = get_lab()
ss = st.session_state
infos = lab.list_runs()
by_id = {i.id: i for i in infos}
names = {i.id: i.name for i in infos}
ss[SEL] = [rid for rid in ss.get(SEL, []) if rid in by_id]  # deleted runs drop out
if not ss.get(K + "url_seen") and st.query_params.get("run") in by_id and not ss[SEL]:
    ss[SEL] = [st.query_params["run"]]  # a link to a run (?run=ID) opens with it selected
ss[K + "url_seen"] = True
ss.setdefault(K + "table_gen", 0)
ss[K + "seen"] = C.listing_signature(infos)  # the fragment reruns the page when this changes

st.title("Compare runs")
if ss.get(K + "flash"):
    kind, text = ss.pop(K + "flash")
    getattr(st, kind)(md_text(text))


def label(rid: str) -> str:
    """A run as shown in pickers: its name, plus the id when names collide."""
    name = names.get(rid, rid)
    return name if list(names.values()).count(name) <= 1 else f"{name} ({rid})"


def pick(title: str, key: str, options: list[str], default: int = 0) -> str | None:
    """A run selectbox whose default follows the selection until the user picks."""
    if not options:
        return None
    auto = options[min(default, len(options) - 1)]
    if ss.get(key + "__id") == ss.get(key + "_auto"):  # not chosen by hand: follow the selection
        ss.pop(key + "__id", None)
    ss[key + "_auto"] = auto
    return pick_one(title, options, key, label, default=auto)  # sticks to the run id across renames


def flash(kind: str, text: str) -> None:
    """Show a message after the rerun that refreshes the table."""
    ss[K + "flash"] = (kind, text)
    st.rerun()


def on_table_select(view_ids: list[str], table_key: str) -> None:
    ss[SEL] = C.merge_selection(ss.get(SEL, []), view_ids, ss[table_key]["selection"]["rows"])


def on_multiselect() -> None:
    ss[K + "table_gen"] += 1  # remount the table so its ticks follow the picker


# ------------------------------------------------------------------ runs table
if not infos:
    st.info(FIRST_RUN)
else:
    rows = C.table_rows(infos)
    f1, f2, f3, f4 = st.columns([2, 1, 1, 1])
    text = f1.text_input("Filter", key=K + "filter", placeholder="name, id, architecture, tag…")
    statuses = f2.multiselect("Status", sorted({r["status"] for r in rows}), key=K + "status_filter", placeholder="any")
    tags = f3.multiselect("Tags", sorted({t for i in infos for t in i.tags}), key=K + "tag_filter", placeholder="any")
    sweep_ids = f4.multiselect("Sweep", sorted({i.sweep for i in infos if i.sweep}, reverse=True), key=K + "sweep_filter",
                               placeholder="any")
    view = C.filter_rows(rows, text, statuses, tags, sweep_ids)
    view_ids = [r["id"] for r in view]
    # the key changes with the rows shown, so the ticks are re-applied from the selection
    table_key = f"{K}table_{ss[K + 'table_gen']}_{C.digest(view_ids)}"
    st.dataframe(
        view, key=table_key, hide_index=True, selection_mode="multi-row",
        on_select=lambda ids=view_ids, key=table_key: on_table_select(ids, key),
        selection_default={"selection": {"rows": [i for i, r in enumerate(view_ids) if r in ss[SEL]]}},
        column_order=C.TABLE_COLUMNS,
        column_config={
            **run_table_columns(view_ids),
            "best val acc": st.column_config.NumberColumn(format="percent"),
            "test acc": st.column_config.NumberColumn(format="percent"),
            "lr": st.column_config.NumberColumn(format="%.4g"),
            "params": st.column_config.NumberColumn(format="localized"),
        },
    )  # fmt: skip
    st.caption(f"{len(view)} of {len(rows)} runs shown. Tick rows (or use the picker) to compare them; "
               "click a column header to sort.")
    st.multiselect("Selected runs", list(by_id), key=SEL, format_func=label, on_change=on_multiselect)

sel = list(ss[SEL])
order = sel + [rid for rid in by_id if rid not in sel]  # pickers: selected runs first


# ------------------------------------------------------------------ live overlay (the page's one fragment)
@st.fragment(run_every=2.0)
def overlay() -> None:
    """Curves of the selected runs, redrawn every 2 s so live runs grow; reruns the page on store changes."""
    fresh = lab.list_runs()
    if C.listing_signature(fresh) != ss.get(K + "seen"):
        st.rerun(scope="app")  # a run appeared, vanished or changed status: refresh the table too
    if not fresh:
        return
    chosen = [i for i in fresh if i.id in ss.get(SEL, [])]
    chosen.sort(key=lambda i: ss[SEL].index(i.id))
    st.subheader("Curves")
    c1, c2 = st.columns([1, 2])
    metric = c1.selectbox("Metric", list(C.METRICS), key=K + "metric")
    xaxis = c2.radio("X axis", C.XAXES, key=K + "xaxis", horizontal=True)
    if not chosen:
        st.caption("Select runs in the table to overlay their curves.")
        return
    curves = lab.curves(chosen, metric, xaxis)
    st.plotly_chart(P.overlay_curves(curves, metric, xaxis), key=K + "overlay")
    notes = []
    if any(c.fork_x is not None for c in curves):
        notes.append("dotted lines are forks, drawn from their fork point (○)")
    if any(c.markers for c in curves):
        notes.append("◆ live hyperparameter change, ✕ divergence, ▮ pause/resume, ■ stop (hover for details)")
    if any(i.status in ACTIVE for i in chosen):
        notes.append("live runs update every 2 s")
    if notes:
        st.caption("; ".join(notes).capitalize() + ".")


overlay()

# ------------------------------------------------------------------ config diff
if len(by_id) >= 2:
    st.subheader("Config diff")
    d1, d2 = st.columns(2)
    with d1:
        a = pick("Run A", K + "diff_a", order, 0)
    with d2:
        b = pick("Run B", K + "diff_b", order, 1)
    try:
        diff = C.config_diff(lab.config(a), lab.config(b))
    except LabError as exc:
        show_error(exc)
    else:
        if a == b:
            st.caption("Pick two different runs.")
        elif not diff:
            st.success("The two configs are identical (apart from id and creation time).")
        else:
            st.dataframe([{"field": r["field"], f"A: {label(a)}": r["a"], f"B: {label(b)}": r["b"]} for r in diff],
                         hide_index=True, key=K + "diff_table")

# ------------------------------------------------------------------ evaluation
if infos:
    st.subheader("Evaluation on the test set")
    e1, e2 = st.columns([2, 1])
    with e1:
        rid = pick("Run to evaluate", K + "eval_run", order)
    info = by_id[rid]
    try:
        weights = lab.available_checkpoints(rid)
    except LabError as exc:
        weights = []
        show_error(exc)
    if info.error:
        st.warning(f"This run's folder has problems: {md_text(info.error)}")
    if not weights:
        st.info("This run has no saved weights yet (they are written after each epoch).")
    else:
        which = e2.radio("Weights", weights, key=K + "eval_which", horizontal=True)
        try:
            with st.spinner("Predicting the 10,000 test images…"):
                ev = lab.evaluate(rid, which)
        except LabError as exc:
            show_error(exc)
            ev = None
        if ev is not None:
            cm = ev.confusion
            if ss.get(K + "cell_for") != (rid, which):  # a new model: start at its biggest confusion
                ss[K + "cell_for"] = (rid, which)
                ss[K + "cell_true"], ss[K + "cell_pred"] = C.worst_cell(cm)
            m1, m2, m3 = st.columns(3)
            m1.metric("Test accuracy", f"{ev.accuracy:.2%}")
            m2.metric("Mistakes", f"{int((ev.preds != ev.labels).sum()):,} of {len(ev.labels):,}")
            m3.metric("Weights from epoch", ev.epoch if ev.epoch is not None else "?")

            def on_cell_click() -> None:
                cell = C.cell_from_selection(ss.get(K + "cm_chart"))
                if cell is not None:
                    ss[K + "cell_true"], ss[K + "cell_pred"] = cell

            left, right = st.columns([3, 2])
            with left:
                cell = (ss[K + "cell_true"], ss[K + "cell_pred"])
                st.plotly_chart(P.confusion_heatmap(cm, selected=cell, title="Confusion matrix (click a cell)"),
                                key=K + "cm_chart", on_select=on_cell_click, selection_mode="points")
            with right:
                st.plotly_chart(P.per_class_bars(ev.per_class_acc, title="Per-class accuracy"),
                                key=K + "per_class")
                s1, s2 = st.columns(2)
                t = s1.selectbox("True digit", list(range(10)), key=K + "cell_true")
                p = s2.selectbox("Predicted digit", list(range(10)), key=K + "cell_pred")
            idx = C.confusion_cell(ev.labels, ev.preds, ev.confidence, t, p)
            shown = idx[:32]
            kind = "correctly classified, least confident first" if t == p else "mistakes, most confident first"
            st.markdown(f"**{len(idx)}** test images of digit **{t}** predicted as **{p}** ({kind}"
                        + (f"; first {len(shown)} shown" if len(idx) > len(shown) else "") + ").")
            if len(shown):
                conf = ev.confidence[shown]
                st.plotly_chart(P.digit_grid(C.test_images(shown), [f"{t}→{p} {c:.0%}" for c in conf]),
                                key=K + "cell_grid")
                with st.expander("These images as a table"):
                    st.dataframe(C.cell_table(ev, shown), hide_index=True, key=K + "cell_table")
            st.markdown("**Most confident mistakes**")
            worst = C.most_confident_mistakes(ev, 16)
            if len(worst):
                st.plotly_chart(P.digit_grid(
                    C.test_images(worst),
                    [f"{ev.labels[i]}→{ev.preds[i]} {ev.confidence[i]:.0%}" for i in worst]), key=K + "worst_grid")
                st.caption("Caption: true → predicted, confidence of the prediction.")
            else:
                st.caption("No mistakes at all.")
    with st.expander("Model summary"):
        try:
            table = [{k: (str(v) if k == "receptive field" else v) for k, v in row.items()}  # ints and "-"
                     for row in summarize(lab.config(rid)["spec"]).table()]
            st.dataframe(table, hide_index=True, key=K + "summary")
        except (LabError, KeyError, TypeError) as exc:
            st.warning(f"No model summary: {md_text(exc)}")

# ------------------------------------------------------------------ which errors a change fixed (cnnlab.fixes)
with_weights = [rid for rid in order if by_id[rid].epochs]  # runs with at least one saved epoch
if len(with_weights) >= 2:
    st.subheader("Which errors did B fix, which did it break?")
if len(with_weights) >= 2 and st.toggle("Compare the test errors of two runs", key=K + "fix_on",
                                        help="Predicts the test set with both models (once per model)"):
    f1, f2, f3 = st.columns([2, 2, 1])
    with f1:
        fa = pick("Run A (before)", K + "fix_a", with_weights, 0)
    with f2:
        fb = pick("Run B (after)", K + "fix_b", with_weights, 1)
    fw = f3.radio("Weights", ["best", "last"], key=K + "fix_which", horizontal=True)
    if fa == fb:
        st.caption("Pick two different runs (a fork and its parent, two sweep trials, any two runs).")
    else:
        try:
            with st.spinner("Predicting the test set with both models…"):
                diff = fixes.error_diff(lab.evaluate(fa, fw), lab.evaluate(fb, fw))
        except LabError as exc:
            show_error(exc)
            diff = None
        if diff is not None:
            nf, nb = len(diff.fixed), len(diff.broken)
            st.markdown(f"**B fixed {nf}** test images A got wrong and **broke {nb}** that A got right "
                        f"(net {nf - nb:+d}; A {diff.a.accuracy:.2%} → B {diff.b.accuracy:.2%}).")
            digit = st.selectbox("True digit", [None, *range(10)], key=K + "fix_digit",
                                 format_func=lambda d: "all digits" if d is None else
                                 f"{d}: fixed {diff.counts('fixed')[d]}, broke {diff.counts('broken')[d]}")
            st.plotly_chart(why.fix_counts(diff.counts("fixed"), diff.counts("broken"), digit), key=K + "fix_bars")
            for which, title in (("fixed", "Fixed by B (A was wrong)"), ("broken", "Broken by B (A was right)")):
                idx = diff.of_digit(which, digit)
                shown = idx[:24]
                st.markdown(f"**{title}**: {len(idx)}" + (f", the {len(shown)} most confident shown" if len(idx) > len(shown)
                                                          else "") + ("" if len(idx) else " — none"))
                if len(shown):
                    st.plotly_chart(P.digit_grid(C.test_images(shown), diff.captions(shown), cols=6),
                                    key=f"{K}fix_grid_{which}")
                    with st.expander(f"{title}: as a table"):
                        st.dataframe(diff.rows(idx), hide_index=True, key=f"{K}fix_table_{which}")
            st.caption("Caption: each model's prediction and its confidence; most confident mistake first.")

# ------------------------------------------------------------------ the test set as a map (cnnlab.testmap)
if with_weights:
    st.subheader("The test set as a map")
    if st.toggle("Show the test set as a map (penultimate features, PCA)", key=K + "map_on"):
        m1, m2 = st.columns([2, 1])
        with m1:
            mrid = pick("Run", K + "map_run", with_weights)
        mwhich = m2.radio("Weights", ["best", "last"], key=K + "map_which", horizontal=True)
        try:
            mloaded = lab.load_model(mrid, mwhich)
            test_map_view(K + "map", (mloaded.ref.key, mloaded.stamp), mloaded.model)
        except LabError as exc:
            show_error(exc)

# ------------------------------------------------------------------ manage: rename, tag, notes, delete
if infos:
    st.subheader("Manage a run")
    rid = pick("Run", K + "manage_run", order)
    info = by_id[rid]
    if info.error or info.message:
        st.caption(f"Status **{info.status}**: {md_text(info.error or info.message)}")
    n1, n2 = st.columns(2)
    with n1:
        new_name = st.text_input("Name", value=info.name, key=f"{K}name_{rid}")
        if st.button("Rename", key=K + "rename"):
            try:
                flash("success", f"Renamed to “{lab.rename(rid, new_name)}”.")
            except LabError as exc:
                show_error(exc)
    with n2:
        new_tags = st.text_input("Tags (comma-separated)", value=", ".join(info.tags), key=f"{K}tags_{rid}")
        if st.button("Save tags", key=K + "save_tags"):
            try:
                saved = lab.set_tags(rid, [t for t in new_tags.split(",")])
                flash("success", f"Tags saved: {', '.join(saved) or '(none)'}.")
            except LabError as exc:
                show_error(exc)
    notes = st.text_area("Notes", value=info.notes, key=f"{K}notes_{rid}", height=80)
    if st.button("Save notes", key=K + "save_notes"):
        try:
            lab.set_notes(rid, notes)
            flash("success", "Notes saved.")
        except LabError as exc:
            show_error(exc)
    if info.status in ACTIVE:
        st.button("Delete run", key=K + "delete", disabled=True,
                  help=f"The run is {info.status}; stop it on the Train page before deleting.")
    elif ss.get(K + "confirm_delete") != rid:
        if st.button("Delete run", key=K + "delete"):
            ss[K + "confirm_delete"] = rid
            st.rerun()
    else:
        st.warning(f"Delete “{md_text(label(rid))}” and all its files ({md_text(info.path)})? This cannot be undone.")
        y, n = st.columns(2)
        if y.button("Yes, delete", key=K + "delete_yes", type="primary"):
            ss.pop(K + "confirm_delete", None)
            try:
                lab.delete(rid)
                flash("success", f"Deleted “{label(rid)}”.")
            except LabError as exc:
                show_error(exc)
        if n.button("Cancel", key=K + "delete_no"):
            ss.pop(K + "confirm_delete", None)
            st.rerun()

# ------------------------------------------------------------------ export / import
st.subheader("Export and import")

def export_buttons(rid: str) -> None:
    """Downloads of one run: metrics, weights, the run folder, the model as code."""
    has = {w: lab.has_checkpoint(rid, w) for w in ("best", "last")}  # RunGone if it vanished meanwhile
    no_code = lab.code_problem(rid)
    x1, x2, x3, x4, x5 = st.columns(5)
    x1.download_button("Metrics (CSV)", lambda: lab.metrics_csv(rid), file_name=f"{rid}-metrics.csv",
                       mime="text/csv", key=K + "dl_csv", on_click="ignore")
    for col, w in ((x2, "best"), (x3, "last")):
        col.download_button(f"Weights ({w}.pt)", lambda w=w: lab.checkpoint_bytes(rid, w),
                            file_name=f"{rid}-{w}.pt", mime="application/octet-stream", key=f"{K}dl_{w}",
                            disabled=not has[w], on_click="ignore")
    x4.download_button("Run folder (zip)", lambda: lab.export_zip(rid), file_name=f"{rid}.zip",
                       mime="application/zip", key=K + "dl_zip", on_click="ignore")
    x5.download_button("Model as code (zip)", lambda: lab.export_code_zip(rid),
                       file_name=f"{rid}-code.zip", mime="application/zip", key=K + "dl_code", on_click="ignore",
                       disabled=no_code is not None,
                       help=no_code or "model.py (plain PyTorch, no CNN Lab), weights.safetensors and predict.py "
                                       "for 28x28 PNGs; `python -m cnnlab export` also writes ONNX and TorchScript")


if infos:
    try:
        export_buttons(pick("Run to export", K + "export_run", order))
    except LabError as exc:
        show_error(exc)
upload = st.file_uploader("Import a run zip (exported from CNN Lab)", type=["zip"], key=K + "import_file")
if st.button("Import run", key=K + "import", disabled=upload is None):
    try:
        new_id, dup, copy = lab.import_zip(upload.getvalue())
        if dup is None:
            ss[K + "import_msg"] = ("success", f"Imported as run “{new_id}”.")
        else:  # a second press (or the same zip again) makes no silent copy under the same name
            ss[K + "import_msg"] = ("warning", f"Already imported as “{label(dup)}” (run {dup}); this copy is "
                                               f"“{copy}” (run {new_id}). Delete it below if it was a mistake.")
        st.rerun()  # the table lists it
    except LabError as exc:
        st.error(md_text(exc))
if ss.get(K + "import_msg"):  # next to the button, not at the top of the page
    kind, text = ss.pop(K + "import_msg")
    getattr(st, kind)(md_text(text))
