"""Standalone PyTorch code from a layer spec: the generator behind the `code` export format.

`generate_code(spec)` writes an `nn.Module` with named layers and a forward method carrying the output
shape of every line as a comment, importing nothing of cnnlab. It is table-driven: `EMITTERS` maps each
layer type of the layer language (`spec.py`) to a function that writes its `__init__` and `forward` lines; a type without
an emitter fails with an `ExportError` naming the layer (add an emitter here). `rename_state` maps the
lab's weights to the generated names; `PREDICT_PY` is the exported predict script.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import nn

from . import data as D
from .errors import LabError
from .spec import IN_SHAPE, validate_spec


class ExportError(LabError):
    """A run or layer that cannot be exported, with what to do about it."""


@dataclass
class Layer:
    """What an emitter gets: one row of the model summary and the lab's built module for it."""

    index: int
    type: str
    module: nn.Module
    in_shape: tuple
    out_shape: tuple


@dataclass
class Emitted:
    """An emitter's output: attribute lines for __init__, lines for forward, and how weights are renamed."""

    init: list[str] = field(default_factory=list)  # e.g. "self.conv1 = nn.Conv2d(1, 32, 3, padding=1)"
    forward: list[str] = field(default_factory=list)  # e.g. "x = self.conv1(x)"
    keys: dict[str, str] = field(default_factory=dict)  # lab sub-path ("" = the layer) -> exported name
    helpers: tuple[str, ...] = ()  # helper classes model.py must define (HELPERS)


class Names:
    """Readable, numbered attribute names: conv1, conv2, bn1, fc1, ..."""

    def __init__(self) -> None:
        self._n: dict[str, int] = {}

    def new(self, base: str) -> str:
        self._n[base] = self._n.get(base, 0) + 1
        return f"{base}{self._n[base]}"


def _args(*pos: Any, **kw: Any) -> str:
    """Call arguments: positional ones, then keyword ones that differ from their default (value, default)."""
    parts = [repr(p) for p in pos]
    parts += [f"{k}={v!r}" for k, (v, default) in kw.items() if v != default]
    return ", ".join(parts)


def _one(v: Any) -> Any:
    """(3, 3) -> 3 for square kernels/strides/paddings."""
    return v[0] if isinstance(v, tuple) and len(set(v)) == 1 else v


def _module(base: str, ctor: str) -> Callable[[Layer, Names], Emitted]:
    def emit(layer: Layer, names: Names) -> Emitted:
        name = names.new(base)
        return Emitted([f"self.{name} = {ctor.format(m=layer.module, layer=layer)}"], [f"x = self.{name}(x)"],
                       {"": name})
    return emit


def _conv(layer: Layer, names: Names) -> Emitted:
    m: nn.Conv2d = layer.module  # type: ignore[assignment]
    name = names.new("conv")
    args = _args(m.in_channels, m.out_channels, _one(m.kernel_size), stride=(_one(m.stride), 1),
                 padding=(_one(m.padding), 0), bias=(m.bias is not None, True))
    return Emitted([f"self.{name} = nn.Conv2d({args})"], [f"x = self.{name}(x)"], {"": name})


def _bn(layer: Layer, names: Names) -> Emitted:
    m: nn.BatchNorm2d = layer.module  # type: ignore[assignment]
    name = names.new("bn")
    args = _args(m.num_features, eps=(m.eps, 1e-5), momentum=(m.momentum, 0.1))
    return Emitted([f"self.{name} = nn.BatchNorm2d({args})"], [f"x = self.{name}(x)"], {"": name})


def _linear(layer: Layer, names: Names) -> Emitted:
    m: nn.Linear = layer.module  # type: ignore[assignment]
    name = names.new("fc")
    args = _args(m.in_features, m.out_features, bias=(m.bias is not None, True))
    return Emitted([f"self.{name} = nn.Linear({args})"], [f"x = self.{name}(x)"], {"": name})


def _pool(fn: str) -> Callable[[Layer, Names], Emitted]:
    def emit(layer: Layer, names: Names) -> Emitted:
        m = layer.module
        k, s, p = _one(m.kernel_size), _one(m.stride), _one(m.padding)
        return Emitted([], [f"x = F.{fn}(x, {_args(k, stride=(s, k), padding=(p, 0))})"])
    return emit


def _functional(line: str) -> Callable[[Layer, Names], Emitted]:
    return lambda layer, names: Emitted([], [line])


def _inception(layer: Layer, names: Names) -> Emitted:
    m = layer.module
    name = names.new("inception")
    out = lambda seq, i: seq[i].out_channels if seq is not None else 0  # noqa: E731
    b1, b3r, b3, b5r, b5, pool = out(m.b1, 0), out(m.b3, 0), out(m.b3, 2), out(m.b5, 0), out(m.b5, 2), out(m.pool, 1)
    cin = layer.in_shape[0]
    keys = {"b1.0": f"{name}.branch1", "b3.0": f"{name}.branch3_reduce", "b3.2": f"{name}.branch3",
            "b5.0": f"{name}.branch5_reduce", "b5.2": f"{name}.branch5", "pool.1": f"{name}.pool_proj"}
    return Emitted([f"self.{name} = Inception({cin}, b1={b1}, b3r={b3r}, b3={b3}, b5r={b5r}, b5={b5}, pool={pool})"],
                   [f"x = self.{name}(x)"], keys, ("Inception",))


def _shared_inception(layer: Layer, names: Names) -> Emitted:
    m = layer.module
    name = names.new("inception")
    keys = {"conv1": f"{name}.conv1", "conv3": f"{name}.conv3", "conv5": f"{name}.conv5"}
    return Emitted([f"self.{name} = SharedInception({layer.in_shape[0]}, {m.conv1.out_channels})"],
                   [f"x = self.{name}(x)"], keys, ("SharedInception",))


def _pixels(layer: Layer, names: Names) -> Emitted:
    return Emitted([], [f"x = (x * INPUT_STD + INPUT_MEAN) * {layer.module.max_value!r}  # pixel values, as trained"])


def _resize(layer: Layer, names: Names) -> Emitted:
    n = layer.module.size
    return Emitted([], [f'x = F.interpolate(x, size=({n}, {n}), mode="bilinear", align_corners=False)'])


def _pad(layer: Layer, names: Names) -> Emitted:
    return Emitted([], [f"x = F.pad(x, {tuple(layer.module.padding)!r})  # (left, right, top, bottom) zeros"])


# layer type (spec.py) -> emitter. A new layer type needs one line here (and a helper class if any).
EMITTERS: dict[str, Callable[[Layer, Names], Emitted]] = {
    "conv": _conv,
    "bn": _bn,
    "relu": _functional("x = F.relu(x)"),
    "dropout": _module("dropout", "nn.Dropout({m.p!r})"),
    "maxpool": _pool("max_pool2d"),
    "avgpool": _pool("avg_pool2d"),
    "gap": _functional("x = F.adaptive_avg_pool2d(x, 1)"),
    "flatten": _functional("x = torch.flatten(x, 1)"),
    "linear": _linear,
    "inception": _inception,
    "inception_shared": _shared_inception,
    "dropout2d": _module("dropout", "nn.Dropout2d({m.p!r})"),
    "pixels": _pixels,
    "resize": _resize,
    "pad": _pad,
    "logsoftmax": _functional("x = F.log_softmax(x, dim=1)"),
}

HELPERS = {
    "SharedInception": '''
class SharedInception(nn.Module):
    """Seed 000's inception block: a 1x1 conv; 3x3 and 5x5 convs on its output; the same 1x1 conv on a
    zero-padded 3x3/1 max-pool of the input. Four branches after ReLU, concatenated."""

    def __init__(self, cin: int, out: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, out, 1)
        self.conv3 = nn.Conv2d(out, out, 3, padding=1)
        self.conv5 = nn.Conv2d(out, out, 5, padding=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        o1 = F.relu(self.conv1(x))
        pooled = F.max_pool2d(F.pad(x, (1, 1, 1, 1)), 3, stride=1)
        return torch.cat([o1, F.relu(self.conv3(o1)), F.relu(self.conv5(o1)), F.relu(self.conv1(pooled))], 1)
''',
    "Inception": '''
class Inception(nn.Module):
    """GoogLeNet-style block: 1x1, 1x1->3x3, 1x1->5x5 and 3x3-max-pool->1x1 branches, concatenated.

    A branch with 0 output channels is left out.
    """

    def __init__(self, cin: int, b1: int, b3r: int, b3: int, b5r: int, b5: int, pool: int):
        super().__init__()
        self.branch1 = nn.Conv2d(cin, b1, 1) if b1 else None
        self.branch3_reduce = nn.Conv2d(cin, b3r, 1) if b3 else None
        self.branch3 = nn.Conv2d(b3r, b3, 3, padding=1) if b3 else None
        self.branch5_reduce = nn.Conv2d(cin, b5r, 1) if b5 else None
        self.branch5 = nn.Conv2d(b5r, b5, 5, padding=2) if b5 else None
        self.pool_proj = nn.Conv2d(cin, pool, 1) if pool else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = []
        if self.branch1 is not None:
            outs.append(F.relu(self.branch1(x)))
        if self.branch3 is not None:
            outs.append(F.relu(self.branch3(F.relu(self.branch3_reduce(x)))))
        if self.branch5 is not None:
            outs.append(F.relu(self.branch5(F.relu(self.branch5_reduce(x)))))
        if self.pool_proj is not None:
            outs.append(F.relu(self.pool_proj(F.max_pool2d(x, 3, stride=1, padding=1))))
        return torch.cat(outs, 1)
''',
}


def _shape(shape: tuple) -> str:
    return "x".join(map(str, shape))


@dataclass
class Generated:
    """model.py's text and the map from the lab's state-dict keys to the exported ones."""

    source: str
    key_map: dict[str, str]
    log_probs: bool


def generate_code(spec: list[dict], *, title: str = "", mean: float = D.MEAN, std: float = D.STD) -> Generated:
    """model.py for a layer spec (see the module docstring); ExportError on a layer type without an emitter."""
    from .models import Tied, build_model

    summary = validate_spec(spec)
    built = build_model(spec, summary=summary)
    children = dict(built.named_children())
    names = Names()
    init: list[str] = []
    fwd: list[tuple[str, str]] = []  # (line, output shape)
    key_map: dict[str, str] = {}
    helpers: list[str] = []
    for row in summary.rows:
        module = children[row.name]
        if isinstance(module, Tied):  # a second use of an earlier layer: call its module again
            fwd.append((f"x = self.{key_map[module.target_name]}(x)  # shared weights", _shape(row.out_shape)))
            continue
        emitter = EMITTERS.get(row.type)
        if emitter is None:
            raise ExportError(f"cannot export layer {row.index} ({row.type}) as code: the code generator knows "
                              f"{', '.join(EMITTERS)}; add an emitter for '{row.type}' to cnnlab/codegen.py "
                              "EMITTERS (ONNX and TorchScript export work without one)")
        e = emitter(Layer(row.index, row.type, module, tuple(row.in_shape), tuple(row.out_shape)),
                    names)
        init += e.init
        fwd += [(line, _shape(row.out_shape) if j == len(e.forward) - 1 else "") for j, line in enumerate(e.forward)]
        helpers += [h for h in e.helpers if h not in helpers]
        for sub, new in e.keys.items():
            key_map[f"{row.name}.{sub}" if sub else row.name] = new
    log_probs = summary.rows[-1].type == "logsoftmax"
    out = "log-probabilities" if log_probs else "logits (unnormalized scores)"
    head = f'''"""{title or 'A CNN exported from CNN Lab'}.

Generated by CNN Lab from the run's layer spec; plain PyTorch, no CNN Lab needed.
{summary.total_params:,} parameters. Input: float tensor [N, 1, 28, 28], white digit on black, pixels
scaled to [0, 1] and then normalized: (x - INPUT_MEAN) / INPUT_STD. Output: [N, 10] {out}.
Weights: weights.safetensors (`model.load_state_dict(safetensors.torch.load_file(...))`).
"""

import torch
import torch.nn.functional as F
from torch import nn

INPUT_MEAN = {mean!r}
INPUT_STD = {std!r}

'''
    body = "\n".join(HELPERS[h] for h in helpers)
    cls = ["", "", "class Net(nn.Module):", "    def __init__(self) -> None:", "        super().__init__()"]
    cls += [f"        {line}" for line in init] or ["        pass"]
    cls += ["", "    def forward(self, x: torch.Tensor) -> torch.Tensor:"]
    split = [(*line.split("  # ", 1), "")[:2] + (shape,) for line, shape in fwd]  # (code, note, shape)
    width = max(len(code) for code, _, shape in split if shape)
    cls += [f"        # x: [N, {', '.join(map(str, IN_SHAPE))}] normalized pixels; comments: output shape per image"]
    cls += [f"        {code:<{width}}  # {shape}" + (f" · {note}" if note else "") if shape
            else f"        {code}" + (f"  # {note}" if note else "") for code, note, shape in split]
    cls += ["        return x", ""]
    return Generated(head + body + "\n".join(cls), key_map, log_probs)


def code_export_problem(spec: Any) -> str | None:
    """Why a spec cannot be exported as code (a layer type without an emitter), or None."""
    try:
        rows = validate_spec(spec).rows
    except LabError as exc:
        return str(exc)
    missing = sorted({r.type for r in rows if r.type not in EMITTERS})
    return f"no code generator for layer type(s) {', '.join(missing)} yet (ONNX/TorchScript work)" if missing else None


def rename_state(state: dict[str, torch.Tensor], key_map: dict[str, str]) -> dict[str, torch.Tensor]:
    """The lab's state dict under the exported names (contiguous CPU tensors, as safetensors wants)."""
    out = {}
    for key, t in state.items():
        prefix = max((p for p in key_map if key == p or key.startswith(p + ".")), key=len, default=None)
        if prefix is None:
            raise ExportError(f"weight '{key}' belongs to no exported layer")
        out[key_map[prefix] + key[len(prefix):]] = t.detach().to("cpu").contiguous()
    return out


PREDICT_PY = '''"""Predict the digit in 28x28 PNG images with the exported model.

    python predict.py digit.png [more.png ...] [--invert] [--json]

Images are read as grayscale, resized to 28x28 if needed, and fed like MNIST: a white digit on a black
background (--invert for dark ink on light paper), pixels scaled to [0, 1], then (x - mean) / std.
"""

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file

from model import INPUT_MEAN, INPUT_STD, Net

HERE = Path(__file__).resolve().parent


def load_image(path: str, invert: bool = False) -> torch.Tensor:
    """A PNG as the model's input: [1, 1, 28, 28], normalized."""
    img = Image.open(path).convert("L")
    if img.size != (28, 28):
        img = img.resize((28, 28), Image.BILINEAR)
    x = torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).float() / 255.0
    if invert:
        x = 1.0 - x
    return ((x - INPUT_MEAN) / INPUT_STD).reshape(1, 1, 28, 28)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("images", nargs="+")
    ap.add_argument("--invert", action="store_true", help="dark digit on a light background")
    ap.add_argument("--json", action="store_true", help="one JSON line per image with all probabilities")
    args = ap.parse_args()
    model = Net()
    model.load_state_dict(load_file(str(HERE / "weights.safetensors")))
    model.eval()
    x = torch.cat([load_image(p, args.invert) for p in args.images])
    with torch.no_grad():
        probs = torch.softmax(model(x), dim=1)  # softmax of log-probabilities is the same distribution
    for path, p in zip(args.images, probs):
        digit = int(p.argmax())
        if args.json:
            print(json.dumps({"image": path, "digit": digit, "probs": [float(v) for v in p]}))
        else:
            print(f"{path}: {digit} ({float(p[digit]):.1%})")


if __name__ == "__main__":
    main()
'''
