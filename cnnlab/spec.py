"""The layer language: a model is a list of layer dicts (`{"type": "conv", "out": 16}`), checked here end
to end without building it (`validate_spec` -> `Summary` of shapes, parameters, receptive fields and
multiply-adds), and read from or written to the text a user edits (`parse_spec_text`, `spec_to_text`).

No torch here: the builder (`models.build_model`) and the presets (`presets`) take specs this module accepted.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from .errors import SpecError

IN_SHAPE = (1, 28, 28)
N_CLASSES = 10
MAX_PARAMS = 50_000_000  # refuse bigger nets before building (seed 000's original, 39.9M, is the largest preset)
MAX_ACT_BYTES = 2 * 1024**3  # activation memory per batch of 64 images (forward, float32)
MAX_LAYERS = 200
MAX_CHANNELS = 4096

# type -> {key: (kind, default, lo, hi)}; kind "int" | "float" | "bool"
_LAYER_KEYS: dict[str, dict[str, tuple]] = {
    "conv": {
        "out": ("int", None, 1, MAX_CHANNELS),
        "k": ("int", 3, 1, 28),
        "stride": ("int", 1, 1, 28),
        "pad": ("int", 0, 0, 14),
        "bias": ("bool", True, None, None),
        "tie": ("int", None, 1, 999),
    },
    "bn": {"tie": ("int", None, 1, 999)},
    "relu": {},
    "dropout": {"p": ("float", 0.1, 0.0, 0.99)},
    "dropout2d": {"p": ("float", 0.1, 0.0, 0.99)},
    "pixels": {"max": ("float", 1.0, 1.0, 255.0)},
    "resize": {"size": ("int", None, 4, 512)},
    "pad": {"l": ("int", 0, 0, 14), "r": ("int", 0, 0, 14), "t": ("int", 0, 0, 14), "b": ("int", 0, 0, 14)},
    "maxpool": {"k": ("int", 2, 1, 28), "stride": ("int", None, 1, 28), "pad": ("int", 0, 0, 14)},
    "avgpool": {"k": ("int", 2, 1, 28), "stride": ("int", None, 1, 28), "pad": ("int", 0, 0, 14)},
    "gap": {},
    "flatten": {},
    "linear": {"out": ("int", None, 1, 1_000_000), "in": ("int", None, 1, 100_000_000), "bias": ("bool", True, None, None)},
    "inception": {
        "b1": ("int", 8, 0, MAX_CHANNELS),
        "b3r": ("int", 8, 1, MAX_CHANNELS),
        "b3": ("int", 16, 0, MAX_CHANNELS),
        "b5r": ("int", 4, 1, MAX_CHANNELS),
        "b5": ("int", 8, 0, MAX_CHANNELS),
        "pool": ("int", 8, 0, MAX_CHANNELS),
    },
    "inception_shared": {"out": ("int", None, 1, MAX_CHANNELS)},
    "logsoftmax": {},
}
# Layers that map a CxHxW map to a CxHxW map and need one.
_SPATIAL = ("conv", "maxpool", "avgpool", "inception", "inception_shared", "bn", "gap", "dropout2d", "resize", "pad")
LAYER_TYPES = tuple(_LAYER_KEYS)
_ALIASES = {"batchnorm": "bn", "pool": "maxpool", "fc": "linear", "dense": "linear",
            "globalavgpool": "gap", "global_avg_pool": "gap", "conv1x1": "conv"}


@dataclass
class LayerInfo:
    """One row of a model summary."""

    index: int
    type: str
    name: str
    in_shape: tuple
    out_shape: tuple
    params: int
    rf: int | None  # receptive field in input pixels (None once the map is flattened)
    macs: int  # multiply-accumulates per image
    detail: str = ""


@dataclass
class Summary:
    rows: list[LayerInfo]
    total_params: int
    total_macs: int
    act_bytes_per_image: int
    out_shape: tuple

    def table(self) -> list[dict]:
        """Rows as plain dicts (for a DataFrame or JSON)."""
        return [
            {"#": r.index, "layer": r.type, "detail": r.detail, "output": "x".join(map(str, r.out_shape)),
             "params": r.params, "receptive field": r.rf if r.rf is not None else "-"}
            for r in self.rows
        ]


def _fmt(shape: tuple) -> str:
    return "x".join(str(s) for s in shape)


def normalize_layer(i: int, layer: Any) -> dict:
    """Check keys and value types of one layer dict; return it with defaults filled."""
    if not isinstance(layer, dict):
        raise SpecError(f"layer {i}: must be a dict like {{'type': 'conv', 'out': 16}}, got {type(layer).__name__}")
    t = str(layer.get("type", "")).strip().lower()
    t = _ALIASES.get(t, t)
    if t not in _LAYER_KEYS:
        raise SpecError(f"layer {i}: unknown type {layer.get('type')!r}; known: {', '.join(LAYER_TYPES)}")
    keys = _LAYER_KEYS[t]
    extra = set(layer) - set(keys) - {"type"}
    if extra:
        raise SpecError(f"layer {i} ({t}): unknown option(s) {sorted(extra)}; allowed: {sorted(keys) or 'none'}")
    out: dict = {"type": t}
    if layer.get("type") == "conv1x1":
        out["k"] = 1
    for key, (kind, default, lo, hi) in keys.items():
        v = layer.get(key, out.get(key, default))
        if v is None:
            if default is None and key in ("out", "size"):
                raise SpecError(f"layer {i} ({t}): '{key}' is required")
            out[key] = None
            continue
        if kind == "bool":
            if not isinstance(v, bool):
                raise SpecError(f"layer {i} ({t}): '{key}' must be true or false, got {v!r}")
        elif kind == "int":
            if isinstance(v, bool) or not isinstance(v, int):
                if isinstance(v, float) and v.is_integer():
                    v = int(v)
                else:
                    raise SpecError(f"layer {i} ({t}): '{key}' must be an integer, got {v!r}")
            if not lo <= v <= hi:
                raise SpecError(f"layer {i} ({t}): '{key}' must be between {lo} and {hi}, got {v}")
        else:
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise SpecError(f"layer {i} ({t}): '{key}' must be a number, got {v!r}")
            if not lo <= v <= hi:
                raise SpecError(f"layer {i} ({t}): '{key}' must be between {lo} and {hi}, got {v}")
            v = float(v)
        out[key] = v
    return out


def _check_tie(i: int, L: dict, shape: tuple, ties: dict) -> int | None:
    """For a layer with `tie=g`: the index of group g's first layer (None if this is the first).

    Layers of one group share one module (seed 000 applies one conv twice and one BN three times),
    so they must have the same options and the same number of input channels.
    """
    g = L.get("tie")
    if g is None:
        return None
    if g not in ties:
        ties[g] = (i, {k: v for k, v in L.items()}, shape[0])
        return None
    first, opts, cin = ties[g]
    if opts != L:
        raise SpecError(f"layer {i} ({L['type']}): tie={g} shares weights with layer {first}, so it needs the same "
                        f"type and options ({_options_text(opts)}), got {_options_text(L)}")
    if cin != shape[0]:
        raise SpecError(f"layer {i} ({L['type']}): tie={g} shares weights with layer {first}, which takes {cin} "
                        f"channels, but this one gets {shape[0]} ({_fmt(shape)})")
    return first


def _options_text(L: dict) -> str:
    return " ".join([L["type"]] + [f"{k}={v}" for k, v in L.items() if k != "type" and v is not None])


def _pool_out(size: int, k: int, s: int, p: int) -> int:
    return (size + 2 * p - k) // s + 1


def validate_spec(spec: Any, in_shape: tuple = IN_SHAPE) -> Summary:
    """Check a layer spec end to end without building it; raise SpecError naming the layer and shapes."""
    if isinstance(spec, dict) and "layers" in spec:
        spec = spec["layers"]
    if not isinstance(spec, list):
        raise SpecError(f"the architecture must be a list of layer dicts like {{'type': 'conv', 'out': 16}}, "
                        f"got {type(spec).__name__} {str(spec)[:40]!r}")
    if not spec:
        raise SpecError("the architecture is empty: add layers, e.g. conv, relu, maxpool, flatten, linear(10)")
    if len(spec) > MAX_LAYERS:
        raise SpecError(f"{len(spec)} layers is more than the limit of {MAX_LAYERS}")
    shape: tuple = tuple(in_shape)
    rf, jump = 1, 1
    rows: list[LayerInfo] = []
    total_params = total_macs = 0
    act = 4 * math.prod(shape)
    ties: dict[int, tuple[int, dict, int]] = {}  # tie group -> (first layer, its options, its in-channels)
    for i, raw in enumerate(spec):
        L = normalize_layer(i, raw)
        t = L["type"]
        where = f"layer {i} ({t})"
        params = macs = 0
        detail = ""
        spatial = len(shape) == 3
        if t in _SPATIAL and not spatial:
            raise SpecError(f"{where}: needs a CxHxW feature map but gets a flat vector of {shape[0]} "
                            "(it comes after flatten/linear; move it before them)")
        tied_to = _check_tie(i, L, shape, ties)
        if t == "pixels":
            if i != 0:
                raise SpecError(f"{where}: sets how the model reads its input, so it must be the first layer")
            detail = f"input as pixel values 0–{L['max']:g}"
        elif t == "resize":
            c, h, w = shape
            shape = (c, L["size"], L["size"])
            jump_scale = L["size"] / max(h, w)
            rf = max(1, round(rf * jump_scale))
            detail = f"bilinear {h}x{w}→{L['size']}x{L['size']}"
        elif t == "pad":
            c, h, w = shape
            shape = (c, h + L["t"] + L["b"], w + L["l"] + L["r"])
            detail = f"zeros l{L['l']} r{L['r']} t{L['t']} b{L['b']}"
        elif t == "inception_shared":
            c, h, w = shape
            o = L["out"]
            params = (c * o + o) + (o * o * 9 + o) + (o * o * 25 + o)
            macs = (2 * c * o + o * o * 9 + o * o * 25) * h * w  # the 1x1 runs twice (input and pooled input)
            rf = rf + 4 * jump
            shape = (4 * o, h, w)
            detail = f"{c}→{4 * o} (1x1 {o}; 3x3 and 5x5 on the 1x1's output; the same 1x1 on a 3x3 max-pool)"
        elif t == "dropout2d":
            detail = f"p={L['p']:g}, whole channels"
        elif t == "conv":
            c, h, w = shape
            k, s, p = L["k"], L["stride"], L["pad"]
            if h + 2 * p < k or w + 2 * p < k:
                raise SpecError(f"{where}: kernel {k}x{k} does not fit the {_fmt(shape)} input "
                                f"(padding {p}); use a smaller kernel, more padding, or fewer pools before it")
            oh, ow = _pool_out(h, k, s, p), _pool_out(w, k, s, p)
            params = c * L["out"] * k * k + (L["out"] if L["bias"] else 0)
            macs = c * L["out"] * k * k * oh * ow
            rf, jump = rf + (k - 1) * jump, jump * s
            shape = (L["out"], oh, ow)
            detail = f"{c}→{L['out']}, k{k}" + (f" s{s}" if s != 1 else "") + (f" p{p}" if p else "")
        elif t in ("maxpool", "avgpool"):
            c, h, w = shape
            k, p = L["k"], L["pad"]
            s = L["stride"] or k
            if p * 2 > k:
                raise SpecError(f"{where}: padding {p} must be at most half the kernel {k}")
            if h + 2 * p < k or w + 2 * p < k:
                raise SpecError(f"{where}: pooling {k}x{k} on a {_fmt(shape)} input would give an empty "
                                f"(0x0) map; remove this pool or an earlier one")
            shape = (c, _pool_out(h, k, s, p), _pool_out(w, k, s, p))
            rf, jump = rf + (k - 1) * jump, jump * s
            detail = f"k{k}" + (f" s{s}" if s != k else "")
        elif t == "inception":
            c, h, w = shape
            if h < 5 and w < 5 and L["b5"]:
                pass  # 5x5 branch is padded, fits any size
            outs = L["b1"] + L["b3"] + L["b5"] + L["pool"]
            if outs == 0:
                raise SpecError(f"{where}: all branches have 0 channels")
            params = (c * L["b1"] + L["b1"] if L["b1"] else 0)
            params += (c * L["b3r"] + L["b3r"] + L["b3r"] * L["b3"] * 9 + L["b3"]) if L["b3"] else 0
            params += (c * L["b5r"] + L["b5r"] + L["b5r"] * L["b5"] * 25 + L["b5"]) if L["b5"] else 0
            params += (c * L["pool"] + L["pool"]) if L["pool"] else 0
            macs = (params) * h * w  # each weight is used once per output position
            rf = rf + (4 if L["b5"] else 2) * jump
            shape = (outs, h, w)
            detail = f"{c}→{outs} (1x1 {L['b1']}, 3x3 {L['b3']}, 5x5 {L['b5']}, pool {L['pool']})"
        elif t == "bn":
            params = 2 * shape[0]
            detail = f"{shape[0]}"
        if tied_to is not None:
            params = 0  # the weights belong to the first layer of the group
            detail += f" · same weights as layer {tied_to}"
        elif t == "gap":
            c, h, w = shape
            rf = rf + (max(h, w) - 1) * jump
            shape = (c, 1, 1)
        elif t == "flatten":
            shape = (math.prod(shape),)
            rf = None
        elif t == "linear":
            if spatial:
                raise SpecError(f"{where}: gets a {_fmt(shape)} feature map; add a flatten (or gap) before it")
            fin = shape[0]
            if L["in"] is not None and L["in"] != fin:
                raise SpecError(f"{where}: declares in={L['in']} but the previous layer gives {fin} features "
                                f"(shape {_fmt(shape)}); use in={fin} or drop 'in'")
            params = fin * L["out"] + (L["out"] if L["bias"] else 0)
            macs = fin * L["out"]
            shape = (L["out"],)
            detail = f"{fin}→{L['out']}"
        elif t == "dropout":
            detail = f"p={L['p']:g}"
        total_params += params
        total_macs += macs
        act += 4 * math.prod(shape)
        if total_params > MAX_PARAMS:
            raise SpecError(f"{where}: the model has {total_params:,} parameters so far, over the limit of "
                            f"{MAX_PARAMS:,}; use fewer channels or units")
        rows.append(LayerInfo(i, t, f"{i}_{t}", tuple(rows[-1].out_shape) if rows else tuple(in_shape), shape,
                              params, rf if rf is not None else None, macs, detail))
    if act * 64 > MAX_ACT_BYTES:
        raise SpecError(f"activations need {act * 64 / 2**20:.0f} MiB for a batch of 64, over the limit of "
                        f"{MAX_ACT_BYTES // 2**20} MiB; use fewer channels or pool earlier")
    if shape != (N_CLASSES,):
        raise SpecError(f"the last layer outputs {_fmt(shape)}, but the classifier needs exactly {N_CLASSES} "
                        "outputs: end with flatten and linear(out=10) (or a 10-channel 1x1 map and flatten)")
    return Summary(rows, total_params, total_macs, act, shape)


def summarize(spec: Any) -> Summary:
    """Per-layer output shape, parameters and receptive field, plus totals."""
    return validate_spec(spec)


def parse_spec_text(text: str) -> list[dict]:
    """Parse a user's layer text: JSON (a list of dicts) or one layer per line, `conv out=16 k=3`.

    Never evaluates code: values are parsed as JSON scalars (numbers, true/false) only.
    """
    text = (text or "").strip()
    if not text:
        raise SpecError("the architecture is empty: add layers, e.g. conv out=16 k=3")
    if text.startswith(("[", "{")):
        expected = 'a JSON architecture is one flat list of layer objects, e.g. [{"type": "conv", "out": 16}, ...]'
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SpecError(f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}; {expected}") from None
        except RecursionError:  # [[[[... nested past the parser's depth
            raise SpecError(f"JSON nested too deeply: {expected}") from None
        if isinstance(data, dict):
            raise SpecError(f"got one JSON object: {expected} (wrap layers in [ ])")
        if not isinstance(data, list):
            raise SpecError(f"got a JSON {type(data).__name__}: {expected}")
        return data
    layers = []
    for n, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.replace(",", " ").split()
        layer: dict = {"type": parts[0]}
        for p in parts[1:]:
            if "=" not in p:
                raise SpecError(f"line {n}: expected key=value, got {p!r} (e.g. conv out=16 k=3)")
            k, v = p.split("=", 1)
            try:
                val = json.loads(v.lower() if v.lower() in ("true", "false") else v)
            except json.JSONDecodeError:
                raise SpecError(f"line {n}: value of {k!r} must be a number or true/false, got {v!r}") from None
            if not isinstance(val, (int, float, bool)):
                raise SpecError(f"line {n}: value of {k!r} must be a number or true/false, got {v!r}")
            layer[k.strip()] = val
        layers.append(layer)
    return layers


def spec_to_text(spec: list[dict]) -> str:
    """The line format of parse_spec_text, for editing."""
    lines = []
    for L in spec:
        opts = " ".join(f"{k}={json.dumps(v)}" for k, v in L.items() if k != "type")
        lines.append(f"{L['type']} {opts}".strip())
    return "\n".join(lines)

