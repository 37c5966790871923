"""The torch side of the layer language: the modules a spec's layers become and `build_model`.

A spec is checked by `spec.validate_spec` before anything is built; `init_weights` and `use_generator`
give a model its own random streams (initial weights, dropout masks), so jobs running side by side
never draw from each other's RNG.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Any

import torch
import torch.nn as nn

from .data import MEAN, STD
from .spec import Summary, normalize_layer, validate_spec


class Inception(nn.Module):
    """GoogLeNet-style block: 1x1, 1x1→3x3, 1x1→5x5 and pool→1x1 branches, concatenated."""

    def __init__(self, cin: int, b1: int, b3r: int, b3: int, b5r: int, b5: int, pool: int):
        super().__init__()
        relu = lambda: nn.ReLU(inplace=True)  # noqa: E731
        self.b1 = nn.Sequential(nn.Conv2d(cin, b1, 1), relu()) if b1 else None
        self.b3 = nn.Sequential(nn.Conv2d(cin, b3r, 1), relu(), nn.Conv2d(b3r, b3, 3, padding=1), relu()) if b3 else None
        self.b5 = nn.Sequential(nn.Conv2d(cin, b5r, 1), relu(), nn.Conv2d(b5r, b5, 5, padding=2), relu()) if b5 else None
        self.pool = nn.Sequential(nn.MaxPool2d(3, 1, 1), nn.Conv2d(cin, pool, 1), relu()) if pool else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([b(x) for b in (self.b1, self.b3, self.b5, self.pool) if b is not None], 1)


class SharedInception(nn.Module):
    """Seed 000's inception block: a 1x1 conv, 3x3 and 5x5 convs on its output, and the same 1x1 conv on a
    zero-padded 3x3/1 max-pool of the input; four `out`-channel branches concatenated, each after a ReLU."""

    def __init__(self, cin: int, out: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, out, 1)
        self.conv3 = nn.Conv2d(out, out, 3, padding=1)
        self.conv5 = nn.Conv2d(out, out, 5, padding=2)
        self.pool = nn.Sequential(nn.ZeroPad2d(1), nn.MaxPool2d(3, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        o1 = torch.relu(self.conv1(x))
        o2 = torch.relu(self.conv3(o1))
        o3 = torch.relu(self.conv5(o1))
        o4 = torch.relu(self.conv1(self.pool(x)))
        return torch.cat([o1, o2, o3, o4], 1)


class Pixels(nn.Module):
    """Undo the lab's input normalization: the model then reads pixel values in [0, max], as its seed did.

    The lab feeds every model (x/255 - 0.1307) / 0.3081; a seed that trained on raw 0-255 or [0, 1]
    pixels is reproduced exactly by this fixed affine map as its first layer.
    """

    def __init__(self, max_value: float):
        super().__init__()
        self.max_value = float(max_value)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x * STD + MEAN) * self.max_value

    def extra_repr(self) -> str:
        return f"max={self.max_value:g}"


class Resize(nn.Module):
    """Bilinear resize to size x size (seed 000 trains on MNIST upscaled to 224x224)."""

    def __init__(self, size: int):
        super().__init__()
        self.size = int(size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)

    def extra_repr(self) -> str:
        return f"size={self.size}"


class _OwnRng:
    """Dropout whose masks come from `generator` when one is set (the Trainer's own), else torch's global RNG.

    torch's global RNG is shared by every thread, so a job starting (or drawing) at the same time would
    change this one's masks; a Trainer therefore gives its model a generator of its own (`use_generator`).
    Same mask rule as torch's: keep with probability 1 - p, scale the kept by 1 / (1 - p).
    """

    p: float
    generator: torch.Generator | None = None

    def _drop(self, x: torch.Tensor, noise_shape: tuple[int, ...]) -> torch.Tensor:
        keep = torch.empty(noise_shape, device=x.device, dtype=x.dtype)
        keep.bernoulli_(1 - self.p, generator=self.generator).div_(1 - self.p)
        return x * keep


class Dropout(_OwnRng, nn.Dropout):
    """nn.Dropout drawing from the layer's own generator when set (see _OwnRng)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0 or self.generator is None:
            return nn.Dropout.forward(self, x)
        return self._drop(x, tuple(x.shape))


class Dropout2d(_OwnRng, nn.Dropout2d):
    """nn.Dropout2d (whole channels of a [N, C, H, W] batch) drawing from its own generator when set."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0 or self.generator is None or x.dim() != 4:
            return nn.Dropout2d.forward(self, x)
        return self._drop(x, (x.shape[0], x.shape[1], 1, 1))


def use_generator(model: nn.Module, generator: torch.Generator | None) -> None:
    """Make every dropout layer of `model` draw its masks from `generator` (None: torch's global RNG)."""
    for m in model.modules():
        if isinstance(m, _OwnRng):
            m.generator = generator


class Tied(nn.Module):
    """A second use of an earlier layer: no weights of its own, calls that layer's module."""

    def __init__(self, target: nn.Module, target_name: str):
        super().__init__()
        object.__setattr__(self, "target", target)  # not registered: the weights stay counted once
        self.target_name = target_name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.target(x)

    def extra_repr(self) -> str:
        return f"same as {self.target_name}"


def init_weights(model: nn.Module, seed: int) -> nn.Module:
    """PyTorch's default initialization, drawn from a private generator seeded with `seed`.

    torch's global RNG is shared by every thread: a second job starting at the same moment would
    otherwise change this model's initial weights, and the same seed would not give the same curves.
    """
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            # nn.Conv2d/nn.Linear.reset_parameters: kaiming_uniform(a=sqrt(5)), bias U(-1/sqrt(fan_in), ..)
            nn.init.kaiming_uniform_(m.weight, a=math.sqrt(5), generator=g)
            if m.bias is not None:
                fan_in = m.weight[0].numel()
                bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
                with torch.no_grad():
                    m.bias.uniform_(-bound, bound, generator=g)
    return model


def build_model(spec: Any, seed: int | None = None, *, summary: Summary | None = None) -> nn.Sequential:
    """Validate then build an nn.Sequential with children named '<index>_<type>'.

    With `seed`, the initial weights depend on it alone (see init_weights). `summary`: the spec's
    `validate_spec` result where it was already checked (a `plan.RunPlan`'s): the spec is trusted, not
    checked again. Without it (a raw spec: a stored run, a test) the spec is validated here first.
    """
    if summary is None:
        summary = validate_spec(spec)
    layers = spec["layers"] if isinstance(spec, dict) else spec
    mods: OrderedDict[str, nn.Module] = OrderedDict()
    tied: dict[int, str] = {}  # tie group -> name of the layer that owns the weights
    for i, (raw, row) in enumerate(zip(layers, summary.rows)):
        L = normalize_layer(i, raw)
        t, cin = L["type"], row.in_shape[0]
        if L.get("tie") is not None and L["tie"] in tied:
            owner = tied[L["tie"]]
            mods[row.name] = Tied(mods[owner], owner)
            continue
        if L.get("tie") is not None:
            tied[L["tie"]] = row.name
        if t == "pixels":
            m: nn.Module = Pixels(L["max"])
        elif t == "resize":
            m = Resize(L["size"])
        elif t == "pad":
            m = nn.ZeroPad2d((L["l"], L["r"], L["t"], L["b"]))
        elif t == "inception_shared":
            m = SharedInception(cin, L["out"])
        elif t == "dropout2d":
            m = Dropout2d(L["p"])
        elif t == "conv":
            m: nn.Module = nn.Conv2d(cin, L["out"], L["k"], L["stride"], L["pad"], bias=L["bias"])
        elif t == "bn":
            m = nn.BatchNorm2d(cin)
        elif t == "relu":
            m = nn.ReLU(inplace=True)
        elif t == "dropout":
            m = Dropout(L["p"])
        elif t == "maxpool":
            m = nn.MaxPool2d(L["k"], L["stride"] or L["k"], L["pad"])
        elif t == "avgpool":
            m = nn.AvgPool2d(L["k"], L["stride"] or L["k"], L["pad"])
        elif t == "gap":
            m = nn.AdaptiveAvgPool2d(1)
        elif t == "flatten":
            m = nn.Flatten()
        elif t == "linear":
            m = nn.Linear(cin, L["out"], bias=L["bias"])
        elif t == "inception":
            m = Inception(cin, L["b1"], L["b3r"], L["b3"], L["b5r"], L["b5"], L["pool"])
        else:  # logsoftmax
            m = nn.LogSoftmax(dim=1)
        mods[row.name] = m
    model = nn.Sequential(mods)
    return init_weights(model, seed) if seed is not None else model

