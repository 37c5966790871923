"""Server-side time from a new canvas stroke to the updated Draw page, for every preset.

Per stroke the page decodes the canvas PNG, preprocesses it, runs one forward pass recording
every conv layer's maps, computes a saliency map, and builds and serializes the figures of the
default view: 28x28 input, class probabilities, the selected layer's feature maps (one tiled
heatmap), the saliency overlay, and the first-layer filters (built once per model, serialized on
every rerun). "serialize" is what st.plotly_chart does with each figure: `to_dict()`, plotly's
JSON encoding, and hashing the spec into the element id; Streamlit's plotly template is installed
first, as importing Streamlit does in the app. Random (seeded) weights — cost does not depend on
what the weights are — on one torch thread, as the page runs it.

    python benchmarks/bench_draw.py [--repeats 30] [--presets fast seed003] [--method saliency]
    git show HEAD:cnnlab/plots/probe.py > /tmp/probe_old.py
    python benchmarks/bench_draw.py --baseline /tmp/probe_old.py   # old vs new, alternating
    python benchmarks/bench_draw.py --epochs 20 --repeats 20   # the Across-epochs view of a 20-epoch run

Prints a table (median and p90 ms per step), a PASS/FAIL line per preset against the 100 ms
budget (median total), and one JSON line. With --baseline, both builder modules run on the same
strokes in the same process, alternating which goes first, and the table shows both and the ratio.
"""

from __future__ import annotations

import argparse
import base64
import importlib.util
import io
import json
import math
import platform
import statistics
import sys
import time
from pathlib import Path
from types import ModuleType

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cnnlab.inference import attribution, preprocessing, probes  # noqa: E402
from cnnlab.models import build_model  # noqa: E402
from cnnlab.plan import plan_run  # noqa: E402
from cnnlab.plots import probe  # noqa: E402
from cnnlab.presets import get_preset, preset_names  # noqa: E402

STEPS = ["decode", "preprocess", "forward+maps", "saliency", "figures", "serialize"]
BUDGET_MS = 100.0  # the requirement: stroke -> updated prediction and maps, server side


def _streamlit_serializer():
    """st.plotly_chart's work per figure, as a function of the figure; returns the spec's size."""
    import plotly.io
    import plotly.tools

    try:
        from streamlit.elements.lib.utils import _compute_element_id
        from streamlit.elements.plotly_chart import configure_streamlit_plotly_theme

        configure_streamlit_plotly_theme()  # Streamlit's plotly template becomes the default, as in the app
    except ImportError:  # an older / newer Streamlit: the encoding still dominates
        import hashlib

        def _compute_element_id(kind: str, user_key: str | None = None, **kw) -> str:
            return hashlib.md5(str(kw).encode()).hexdigest()

    def serialize(fig) -> int:
        d = plotly.tools.return_figure_from_figure_or_data(fig, validate_figure=True)
        spec = plotly.io.to_json(d, validate=False)
        _compute_element_id("plotly_chart", user_key="k", plotly_spec=spec, plotly_config="{}",
                            selection_mode=("points", "box", "lasso"), is_selection_activated=False,
                            theme="streamlit", width="stretch", height="content", alt=None)  # fmt: skip
        return len(spec)

    return serialize


def seven_canvas(size: int = 280, brush: int = 20) -> np.ndarray:
    """An RGBA canvas with a '7' in white strokes on a transparent background, like the component's."""
    pts = [(88, 66), (192, 66), (124, 226)]
    yy, xx = np.mgrid[0:size, 0:size]
    ink = np.zeros((size, size), bool)
    for (x0, y0), (x1, y1) in zip(pts, pts[1:]):
        n = int(math.dist((x0, y0), (x1, y1)) / 2) + 1
        for t in np.linspace(0, 1, n):
            cx, cy = x0 + t * (x1 - x0), y0 + t * (y1 - y0)
            ink |= (xx - cx) ** 2 + (yy - cy) ** 2 <= (brush / 2) ** 2
    rgba = np.zeros((size, size, 4), np.uint8)
    rgba[ink] = (255, 255, 255, 255)
    return rgba


def png_data_url(rgba: np.ndarray) -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgba).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def decode(url: str) -> np.ndarray:
    """What CanvasResult.image_data does with the component's PNG data URL."""
    from PIL import Image

    _, enc = url.split(";base64,", 1)
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(enc))))


def load_probe(path: str) -> ModuleType:
    """A figure-builder module from a file (e.g. `git show HEAD:cnnlab/plots/probe.py`)."""
    spec = importlib.util.spec_from_file_location("probe_baseline", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def filters_figure(builders: ModuleType, model: torch.nn.Module):
    """The page's first-layer filters figure, built once per model (the grid before the mosaic)."""
    build = getattr(builders, "filters_mosaic", None) or builders.filters_grid
    return build(probes.first_layer_filters(model))


def one_stroke(model, url: str, method: str, builders: ModuleType, filters_fig, serialize) -> dict[str, float]:
    """One page update after a stroke; ms per step and the bytes of figure spec sent."""
    t = [time.perf_counter()]
    canvas = decode(url)
    t.append(time.perf_counter())
    pre = preprocessing.preprocess(canvas)
    t.append(time.perf_counter())
    out, layers = probes._forward_with_maps(model, probes.as_input(model, pre.tensor))
    pred = probes._prediction(probes.softmax_probs(out)[0])
    t.append(time.perf_counter())
    if method == "gradcam":
        attr = attribution.gradcam(model, pre.tensor, pred.top)
    else:
        attr = attribution.saliency(model, pre.tensor, pred.top, method=method)
    t.append(time.perf_counter())
    figs = [
        builders.image_heatmap(pre.image, "what the model sees (28×28)"),
        builders.prob_bars(pred.probs, pred.top, "class probabilities"),
        builders.feature_map_mosaic(layers[0].maps, f"{layers[0].name} ({layers[0].stage})"),
        builders.saliency_overlay(pre.image, attr, title="Saliency for class 7"),
        filters_fig,  # built once per model by the page (weights do not change between strokes)
    ]
    t.append(time.perf_counter())
    nbytes = sum(serialize(f) for f in figs)
    t.append(time.perf_counter())
    ms = {name: (b - a) * 1e3 for name, a, b in zip(STEPS, t, t[1:])}
    ms["total"] = (t[-1] - t[0]) * 1e3
    ms["spec_kb"] = nbytes / 1e3
    return ms


def _summary(runs: list[dict]) -> dict:
    row = {}
    for k in [*STEPS, "total"]:
        vals = sorted(r[k] for r in runs)
        row[k] = round(statistics.median(vals), 2)
    totals = sorted(r["total"] for r in runs)
    row["total_p90"] = round(totals[min(len(totals) - 1, int(0.9 * len(totals)))], 2)
    row["spec_kb"] = round(runs[-1]["spec_kb"], 1)
    return row


def bench(preset: str, url: str, repeats: int, method: str, serialize, baseline: ModuleType | None) -> dict:
    torch.manual_seed(0)
    model = build_model(get_preset(preset).spec).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    variants = {"new": probe} if baseline is None else {"old": baseline, "new": probe}
    filters = {k: filters_figure(m, model) for k, m in variants.items()}
    runs: dict[str, list] = {k: [] for k in variants}
    for k, m in variants.items():  # warm-up: captum import, first-call allocations
        one_stroke(model, url, method, m, filters[k], serialize)
    order = list(variants)
    for i in range(repeats):
        for k in order if i % 2 == 0 else order[::-1]:  # alternate who goes first: load drifts
            runs[k].append(one_stroke(model, url, method, variants[k], filters[k], serialize))
    row: dict = {"preset": preset, "params": sum(p.numel() for p in model.parameters())}
    row.update(_summary(runs["new"]))
    if baseline is not None:
        row["old"] = _summary(runs["old"])
        # Median of per-stroke ratios of adjacent old/new strokes: robust to load drifting over the run.
        row["speedup"] = round(statistics.median(o["total"] / n["total"] for o, n in zip(runs["old"], runs["new"])), 2)
    return row


def bench_epochs(preset: str, n_epochs: int, url: str, repeats: int, serialize) -> dict:
    """The "Across epochs" view: a run with `n_epochs` saved epoch_<k>.pt files (seeded random weights)
    in a temporary store. Cold = the first stroke (loads and builds every epoch's model); warm = each
    later stroke (decode, preprocess, one forward pass per epoch, the heatmap, its serialization)."""
    import tempfile

    from cnnlab import epochs as EP
    from cnnlab.plots import why
    from cnnlab.recipe import TrainConfig
    from cnnlab.recorder import run_config
    from cnnlab.runs import RunStore

    p = get_preset(preset)
    with tempfile.TemporaryDirectory() as tmp:
        store = RunStore(Path(tmp))
        run = store.create(run_config(preset, plan_run(p.spec, TrainConfig.from_dict({**p.recipe, "epochs": n_epochs}))))
        for e in range(1, n_epochs + 1):
            torch.manual_seed(e)
            run.save_checkpoint({"model": build_model(p.spec).state_dict(), "epoch": e}, f"epoch_{e}")
        EP.cache_clear()

        def stroke() -> float:
            t0 = time.perf_counter()
            pre = preprocessing.preprocess(decode(url))
            ep = EP.epoch_probs(store, run.id, pre.tensor)
            serialize(why.epoch_heatmap(ep.epochs, ep.probs))
            return (time.perf_counter() - t0) * 1e3

        def one_model() -> float:  # the page's plain prediction: one model, its probability bars
            t0 = time.perf_counter()
            pre = preprocessing.preprocess(decode(url))
            pred = probes.predict(EP.epoch_model(store, run.id, n_epochs), pre.tensor)
            serialize(probe.prob_bars(pred.probs, pred.top, "class probabilities"))
            return (time.perf_counter() - t0) * 1e3

        cold = stroke()
        warm, single = [], []
        for _ in range(repeats):  # interleaved: load drift hits both
            warm.append(stroke())
            single.append(one_model())
        warm.sort()
        EP.cache_clear()
    med, one = statistics.median(warm), statistics.median(single)
    return {"preset": preset, "epochs": n_epochs, "cold_ms": round(cold, 1), "warm_ms": round(med, 2),
            "warm_p90_ms": round(warm[int(0.9 * (len(warm) - 1))], 2), "one_model_ms": round(one, 2),
            "warm_over_one_model": round(med / one, 2)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--presets", nargs="*", default=None)
    ap.add_argument("--method", default="saliency", choices=["saliency", "gradcam", "integrated_gradients"])
    ap.add_argument("--threads", type=int, default=1, help="torch threads (the page uses 1)")
    ap.add_argument("--baseline", default=None,
                    help="a probe.py to compare against (e.g. saved from `git show HEAD:cnnlab/plots/probe.py`)")
    ap.add_argument("--epochs", type=int, default=0,
                    help="instead: time the Across-epochs view on a run with this many saved epochs")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    serialize = _streamlit_serializer()
    if args.epochs:
        url = png_data_url(seven_canvas())
        rows = [bench_epochs(p, args.epochs, url, args.repeats, serialize) for p in (args.presets or preset_names())]
        print(f"Across-epochs view, {args.epochs} saved epochs, ms per stroke ({args.threads} torch thread(s)):")
        print(f"{'preset':<16}{'cold (loads epochs)':>22}{'warm median':>14}{'warm p90':>10}"
              f"{'one model':>11}{'warm/one':>10}")
        for r in rows:
            print(f"{r['preset']:<16}{r['cold_ms']:>22.1f}{r['warm_ms']:>14.1f}{r['warm_p90_ms']:>10.1f}"
                  f"{r['one_model_ms']:>11.1f}{r['warm_over_one_model']:>10.1f}")
        print(json.dumps({"bench": "draw_epochs", "unit": "ms", "epochs": args.epochs, "rows": rows}))
        return 0
    baseline = load_probe(args.baseline) if args.baseline else None
    url = png_data_url(seven_canvas())
    rows = [bench(p, url, args.repeats, args.method, serialize, baseline) for p in (args.presets or preset_names())]

    print(f"Draw page per-stroke server time, ms (median of {args.repeats}; {args.method}; "
          f"{args.threads} torch thread(s); {platform.processor() or platform.machine()})")
    head = f"{'preset':<18}{'params':>9}" + "".join(f"{s:>13}" for s in STEPS) + f"{'total':>9}{'p90':>8}{'KB':>7}"
    print(head)
    for r in rows:
        for tag, s in ([("old", r["old"])] if "old" in r else []) + [("new" if "old" in r else "", r)]:
            name = f"{r['preset']} {tag}".strip()
            print(f"{name:<18}{r['params']:>9,}" + "".join(f"{s[k]:>13.1f}" for k in STEPS)
                  + f"{s['total']:>9.1f}{s['total_p90']:>8.1f}{s['spec_kb']:>7.0f}")
    if baseline is not None:
        print("\nold -> new median total, ms (speedup = median of paired old/new per-stroke ratios)")
        for r in rows:
            print(f"  {r['preset']:<14}{r['old']['total']:>8.1f} -> {r['total']:>6.1f}   x{r['speedup']:.2f}   "
                  f"figures+serialize {r['old']['figures'] + r['old']['serialize']:.1f} -> "
                  f"{r['figures'] + r['serialize']:.1f}")
    print()
    for r in rows:
        ok = r["total"] < BUDGET_MS
        print(f"{'PASS' if ok else 'FAIL'} {r['preset']}: median {r['total']:.1f} ms "
              f"(p90 {r['total_p90']:.1f}) vs budget {BUDGET_MS:.0f} ms")
    worst = max(r["total"] for r in rows)
    passed = all(r["total"] < BUDGET_MS for r in rows)
    print(f"{'PASS' if passed else 'FAIL'}: worst median total {worst:.1f} ms (budget < {BUDGET_MS:.0f} ms)")
    print(json.dumps({"bench": "draw_stroke", "unit": "ms", "repeats": args.repeats, "method": args.method,
                      "threads": args.threads, "torch": torch.__version__, "budget_ms": BUDGET_MS,
                      "baseline": args.baseline, "rows": rows, "worst_median_total_ms": worst,
                      "under_100ms": passed}))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
