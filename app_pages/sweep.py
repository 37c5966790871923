"""Sweep page: define a sweep (base architecture + recipe, search space, search, trials), start it on Ray
Tune (local Ray or a cluster address), and watch it live: trial table, parallel coordinates, overlaid
validation curves, the best trial; stop one trial or the whole sweep.

Thin: the sweep runs in its own process (cnnlab.sweeps.launcher); the page only reads the run store.
"""

import streamlit as st

from cnnlab import trainform as tf
from cnnlab import ui
from cnnlab.errors import LabError
from cnnlab.textsafe import md_text
from cnnlab.plots import sweep as P
from cnnlab.sweeps import view as V
from cnnlab.sweeps.space import FIELDS, SEARCHES
from cnnlab.sweeps.store import trial_rows

K = "sweep_"  # widget-key namespace of this page
SEL = K + "selected"
ss = st.session_state
launcher = ui.get_sweep_launcher()
sweeps = launcher.sweeps

st.title("Sweeps")
st.caption("Many runs at once on Ray Tune: a local Ray sized to this machine, or a Ray cluster by address. "
           "Every trial is a run in the store (Compare, Draw and `runs` see it).")

# ----------------------------------------------------------------------------- define
with st.expander("New sweep", expanded=not sweeps.list()):
    c1, c2 = st.columns(2)
    preset = c1.selectbox("Base preset", tf.preset_choices(), index=tf.preset_choices().index("seed002"),
                          key=K + "preset")
    custom = c1.toggle("Custom layers", key=K + "custom")
    spec_text = ""
    if custom:
        spec_text = c1.text_area("Layers", value=tf.preset_spec_text(preset), key=K + f"spec_{preset}", height=200)
    params_text = c2.text_area(
        "Search space (one FIELD=SPEC a line)", value="lr=loguniform:0.0003:0.01", key=K + "space", height=120,
        help="SPEC: loguniform:LO:HI, uniform:LO:HI, int:LO:HI or choice:A,B,C. Fields: " + ", ".join(FIELDS)
             + ". width multiplies every hidden conv layer's channels.")
    n1, n2, n3, n4 = st.columns(4)
    trials = n1.number_input("Trials", min_value=1, max_value=1000, value=4, step=1, key=K + "trials")
    concurrent = n2.number_input("At once (0 = one per CPU)", min_value=0, max_value=64, value=0, step=1,
                                 key=K + "concurrent")
    epochs = n3.number_input("Epochs", min_value=1, max_value=1000, value=1, step=1, key=K + "epochs")
    subset = n4.number_input("Training subset (0 = all)", min_value=0, max_value=55000, value=2000, step=500,
                             key=K + "subset")
    s1, s2, s3 = st.columns(3)
    search = s1.selectbox("Search", list(SEARCHES), key=K + "search",
                          help="random sampling, grid (every combination of choice values), or Optuna's TPE")
    early = s2.checkbox("Early stopping (ASHA)", key=K + "early", help="stop trials whose validation accuracy "
                        "falls behind the others' at the same epoch")
    name = s3.text_input("Name", key=K + "name", placeholder="optional")
    address = st.text_input("Ray cluster address", key=K + "address", placeholder="empty: a local Ray on this machine "
                            "(or RAY_ADDRESS); else HOST:PORT of `ray start --head`")
    if st.button("Start sweep", key=K + "start", type="primary"):
        try:
            defn = V.definition_from_form(preset, custom, spec_text, params_text, trials=trials,
                                          concurrent=concurrent, search=search, early_stop=early, epochs=epochs,
                                          subset=subset, name=name)
            ss[SEL] = launcher.start(defn, address=address or None)
        except LabError as exc:
            ui.show_error(exc)

# ----------------------------------------------------------------------------- pick a sweep
records = sweeps.list()
ids = [r["id"] for r in records]
labels = {r["id"]: V.sweep_label(r) for r in records}
if not ss.get(SEL) and ids:
    ss[SEL] = ids[0]
if ids:
    if ss.get(SEL) in ids:
        ss[K + "pick"] = ss[SEL]

    def _on_pick() -> None:
        ss[SEL] = ss[K + "pick"]

    st.selectbox("Sweep", ids, key=K + "pick", on_change=_on_pick, format_func=lambda i: labels.get(i, i))

# ----------------------------------------------------------------------------- watch (the page's one fragment)
@st.fragment(run_every=2.0)
def watch() -> None:
    """The selected sweep, redrawn every 2 s from the run store."""
    sid = ss.get(SEL)
    if not sid:
        st.info("No sweeps yet: define one above. From a terminal: `python -m cnnlab sweep --preset seed002 "
                "--trials 4 --epochs 1 --subset 2000 --param lr=loguniform:0.0003:0.01`")
        return
    err = launcher.startup_error(sid)
    if err:
        st.error(f"The sweep did not start: {md_text(err)}")
        return
    if launcher.starting(sid):
        st.info("Starting Ray and the sweep…")
        return
    try:
        rec = sweeps.get(sid)
    except LabError as exc:
        ui.show_error(exc)
        return
    if sid not in ids:
        st.rerun(scope="app")  # a new sweep appeared: refresh the picker
    d = rec.get("definition") or {}
    fields = [p["field"] for p in d.get("params") or []]
    rows = trial_rows(sweeps, sid)
    where = rec.get("address") or "a local Ray"
    st.markdown(f"**{md_text(d.get('name') or sid)}** · status **{rec.get('status')}** · {d.get('search')} search over "
                f"`{' '.join(d.get('space') or [])}` · {len(rows)} of {d.get('trials')} trials · "
                f"{rec.get('concurrent')} at once on {where}"
                + (" · ASHA early stopping" if d.get("early_stop") else ""))
    if rec.get("message"):
        st.caption(md_text(rec["message"]))
    scored = [r for r in rows if isinstance(r["best_val_acc"], (int, float))]
    best = max(scored, key=lambda r: r["best_val_acc"]) if scored else None
    if best:
        b1, b2, b3 = st.columns([1, 1, 3])
        b1.metric("Best trial", f"#{best['trial']}")
        b2.metric("Best val acc", f"{best['best_val_acc']:.2%}")
        b3.markdown("**Its hyperparameters**  \n" + ", ".join(f"`{k}={v:.4g}`" if isinstance(v, float) else f"`{k}={v}`"
                                                          for k, v in best["params"].items())
                    + (f"  \ntest acc {best['test_acc']:.2%}" if isinstance(best["test_acc"], float) else "")
                    + f"  \nrun `{best['run_id']}`")
    st.dataframe(V.table(rows, fields), hide_index=True, key=K + "trials_table",
                 column_config={"best val acc": st.column_config.NumberColumn(format="percent"),
                                "test acc": st.column_config.NumberColumn(format="percent")})
    left, right = st.columns(2)
    left.plotly_chart(P.parcoords(rows, d.get("params") or []), key=K + "parcoords")
    right.plotly_chart(P.val_curves(launcher.trial_curves(rows), best and best["run_id"]), key=K + "curves")
    if rec.get("status") == "running":
        active = V.active_trials(rows)
        t1, t2, t3 = st.columns([2, 1, 1])
        # keyed by the running trials: a key kept across option changes kept a stale None value
        pick_key = K + "stop_pick_" + "_".join(str(r["trial"]) for r in active)
        target = t1.selectbox("Trial to stop", [r["run_id"] for r in active], key=pick_key,
                              format_func=lambda rid: next(f"#{r['trial']} ({rid})" for r in active
                                                           if r["run_id"] == rid))
        if t2.button("Stop trial", key=K + "stop_trial", disabled=not active) and target:
            launcher.stop(sid, target)
            st.toast(f"Stopping trial {target}")
        if t3.button("Stop sweep", key=K + "stop_sweep"):
            launcher.stop(sid)
            st.toast("Stopping the sweep")


watch()
