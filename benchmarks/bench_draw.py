"""Server-side time from a new canvas stroke to the updated Draw page, for every preset.

Per stroke the page decodes the canvas PNG, preprocesses it, runs one forward pass recording
every conv layer's maps, computes a saliency map, and builds (and serializes, as st.plotly_chart
does) the figures of the default view: 28x28 input, class probabilities, the selected layer's
feature maps (one tiled heatmap), the saliency overlay, and the first-layer filters (built once
per model, serialized each time). This times exactly that, with
random (seeded) weights — cost does not depend on what the weights are — on one torch thread,
as the page runs it.

    python benchmarks/bench_draw.py [--repeats 30] [--presets fast seed003] [--method saliency]

Prints a table (median and p90 ms per step) and one JSON line.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import math
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cnnlab import inference as inf  # noqa: E402
from cnnlab.models import build_model, get_preset, preset_names  # noqa: E402
from cnnlab.plots import probe  # noqa: E402

STEPS = ["decode", "preprocess", "forward+maps", "saliency", "figures", "serialize"]


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


def one_stroke(model: torch.nn.Module, url: str, method: str, filters_fig) -> dict[str, float]:
    """One page update after a stroke; ms per step."""
    t = [time.perf_counter()]
    canvas = decode(url)
    t.append(time.perf_counter())
    pre = inf.preprocess(canvas)
    t.append(time.perf_counter())
    out, layers = inf._forward_with_maps(model, inf.as_input(model, pre.tensor))
    pred = inf._prediction(inf._probs(out)[0])
    t.append(time.perf_counter())
    if method == "gradcam":
        attr = inf.gradcam(model, pre.tensor, pred.top)
    else:
        attr = inf.saliency(model, pre.tensor, pred.top, method=method)
    t.append(time.perf_counter())
    figs = [
        probe.image_heatmap(pre.image, "what the model sees (28×28)"),
        probe.prob_bars(pred.probs, pred.top, "class probabilities"),
        probe.feature_map_mosaic(layers[0].maps, layers[0].name),
        probe.saliency_overlay(pre.image, attr, title="saliency"),
        filters_fig,  # built once per model by the page (weights do not change between strokes)
    ]
    t.append(time.perf_counter())
    for f in figs:
        f.to_json()  # st.plotly_chart serializes each figure
    t.append(time.perf_counter())
    ms = {name: (b - a) * 1e3 for name, a, b in zip(STEPS, t, t[1:])}
    ms["total"] = (t[-1] - t[0]) * 1e3
    return ms


def bench(preset: str, url: str, repeats: int, method: str) -> dict:
    torch.manual_seed(0)
    spec = get_preset(preset).spec
    model = build_model(spec).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    filters_fig = probe.filters_grid(inf.first_layer_filters(model))
    one_stroke(model, url, method, filters_fig)  # warm-up: captum import, first-call allocations
    runs = [one_stroke(model, url, method, filters_fig) for _ in range(repeats)]
    row: dict = {"preset": preset, "params": sum(p.numel() for p in model.parameters())}
    for k in [*STEPS, "total"]:
        vals = sorted(r[k] for r in runs)
        row[k] = round(statistics.median(vals), 2)
        if k == "total":
            row["total_p90"] = round(vals[min(len(vals) - 1, int(0.9 * len(vals)))], 2)
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--presets", nargs="*", default=None)
    ap.add_argument("--method", default="saliency", choices=["saliency", "gradcam", "integrated_gradients"])
    ap.add_argument("--threads", type=int, default=1, help="torch threads (the page uses 1)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    url = png_data_url(seven_canvas())
    rows = [bench(p, url, args.repeats, args.method) for p in (args.presets or preset_names())]
    head = f"{'preset':<14}{'params':>9}" + "".join(f"{s:>14}" for s in STEPS) + f"{'total':>9}{'p90':>8}"
    print(f"Draw page per-stroke server time, ms (median of {args.repeats}; {args.method}; "
          f"{args.threads} torch thread(s); {platform.processor() or platform.machine()})")
    print(head)
    for r in rows:
        print(f"{r['preset']:<14}{r['params']:>9,}" + "".join(f"{r[s]:>14.1f}" for s in STEPS)
              + f"{r['total']:>9.1f}{r['total_p90']:>8.1f}")
    worst = max(r["total"] for r in rows)
    print(f"worst median total: {worst:.1f} ms (target < 100 ms)")
    print(json.dumps({"bench": "draw_stroke", "unit": "ms", "repeats": args.repeats, "method": args.method,
                      "threads": args.threads, "torch": torch.__version__, "rows": rows,
                      "worst_median_total_ms": worst, "under_100ms": worst < 100}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
