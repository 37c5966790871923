"""Take a saved run's model away: standalone PyTorch code with safetensors weights, ONNX, or TorchScript.

`export_run(store, run_id, fmt, out_dir)` writes one of:
- **code**: `model.py` (an `nn.Module` written from the layer spec: named layers, a forward method with
  the output shape of every line as a comment, no import of cnnlab), `weights.safetensors` (loads
  without pickle), `predict.py` (reads 28x28 PNGs and prints the digit) and `README.md`.
- **onnx**: `model.onnx` (input `input` [N,1,28,28] float32, output `logits` [N,10]) and `README.md`.
- **torchscript**: `model.pt` (`torch.jit.load`) and `README.md`.

Every format takes the same input as the lab's model: pixels scaled to [0, 1], then
`(x - mean) / std` (`input_normalization`). The code generator is table-driven: `EMITTERS` maps each
layer type of the layer language (`spec.py`) to a function that writes its `__init__` and `forward` lines; a type without
an emitter fails with an `ExportError` naming the layer (add an emitter there). ONNX and TorchScript
export the lab's own built module, so they need no emitter. The code generator is `codegen.py`.
"""

from __future__ import annotations

import io
import shutil
import tempfile
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from . import data as D
from .codegen import (EMITTERS, PREDICT_PY, ExportError, Generated, code_export_problem,  # noqa: F401
                      generate_code, rename_state)
from .errors import LabError
from .spec import IN_SHAPE

FORMATS = ("code", "onnx", "torchscript")
WEIGHTS = ("best", "last")


def input_normalization(config: dict | None = None) -> tuple[float, float]:
    """(mean, std) the lab applies to [0, 1] pixels before a run's model sees them (`data.to_float`).

    Every run uses MNIST's 0.1307 / 0.3081 today; a per-run option would be read from `config` here.
    """
    return D.MEAN, D.STD


def run_code_problem(store: Any, run_id: str) -> str | None:
    """Why a saved run cannot be exported as code right now (no weights, unreadable config, ...), or None."""
    try:
        handle = store.get(run_id)
        if not any(handle.has_checkpoint(w) for w in WEIGHTS):
            return "no saved weights yet (they are written after each epoch)"
        return code_export_problem(handle.config.get("spec"))
    except LabError as exc:
        return str(exc)



@dataclass
class Source:
    """A run's model ready to export: spec, eval-mode lab model and its weights, and where they came from."""

    run_id: str
    name: str
    which: str
    epoch: int | None
    spec: list[dict]
    model: nn.Module
    state: dict
    mean: float
    std: float
    test_acc: float | None


def load_source(store: Any, run_id: str, which: str | None = None) -> Source:
    """A saved run's model: best.pt (else last.pt) unless `which` says; LabError naming what is missing."""
    from .modelsource import build_eval_model

    handle = store.get(run_id)
    if which is not None and which not in WEIGHTS:
        raise ExportError(f"unknown weights {which!r}; known: {', '.join(WEIGHTS)}")
    options = [which] if which else [w for w in WEIGHTS if handle.has_checkpoint(w)]
    if not options or not handle.has_checkpoint(options[0]):
        raise ExportError(f"run '{run_id}' has no {'/'.join(options or WEIGHTS)}.pt yet: its weights are "
                          "saved after each epoch")
    which = options[0]
    ckpt = handle.load_checkpoint(which)
    state, cfg = ckpt.get("model"), handle.config
    if not isinstance(state, dict) or not state:
        raise ExportError(f"{which}.pt of run '{run_id}' holds no model weights")
    spec = cfg.get("spec")
    model = build_eval_model(spec, state, f"{which}.pt of run '{run_id}'")
    mean, std = input_normalization(cfg)
    try:
        name, test_acc = handle.meta.get("name") or run_id, handle.status.get("test_acc")
    except LabError:
        name, test_acc = run_id, None
    epoch = ckpt.get("epoch") if isinstance(ckpt.get("epoch"), int) else None
    return Source(run_id, str(name), which, epoch, spec, model, state, mean, std,
                  test_acc if isinstance(test_acc, (int, float)) else None)


def _readme(src: Source, fmt: str, files: list[str]) -> str:
    acc = f", test accuracy {src.test_acc:.2%}" if src.test_acc is not None else ""
    ep = f" after epoch {src.epoch}" if src.epoch is not None else ""
    use = {
        "code": "    pip install torch safetensors pillow numpy\n    python predict.py digit.png",
        "onnx": ("    import onnxruntime as ort\n    sess = ort.InferenceSession('model.onnx')\n"
                 "    logits = sess.run(None, {'input': x})[0]   # x: float32 [N, 1, 28, 28], normalized"),
        "torchscript": "    model = torch.jit.load('model.pt')\n    logits = model(x)   # x: float32 [N, 1, 28, 28], normalized",
    }[fmt]
    return (f"# {src.name}\n\nExported from CNN Lab run `{src.run_id}` ({src.which}.pt{ep}{acc}) as {fmt}.\n\n"
            f"Files: {', '.join(files)}.\n\nInput: a 28x28 grayscale digit, white on black like MNIST, pixels "
            f"scaled to [0, 1], then normalized: `(x - {src.mean}) / {src.std}`. Output: 10 scores, one per "
            f"digit (the largest wins).\n\n```\n{use}\n```\n")


def _write_code(src: Source, out: Path) -> list[str]:
    from safetensors.torch import save_file

    gen = generate_code(src.spec, title=f"{src.name} (CNN Lab run {src.run_id})", mean=src.mean, std=src.std)
    (out / "model.py").write_text(gen.source, encoding="utf-8")
    save_file(rename_state(src.state, gen.key_map), str(out / "weights.safetensors"),
              metadata={"run_id": src.run_id, "weights": src.which, "format": "pt"})
    (out / "predict.py").write_text(PREDICT_PY, encoding="utf-8")
    return ["model.py", "weights.safetensors", "predict.py"]


def _example() -> torch.Tensor:
    return torch.zeros(2, *IN_SHAPE)


def _write_onnx(src: Source, out: Path) -> list[str]:
    model = src.model.to(memory_format=torch.contiguous_format)
    try:
        with warnings.catch_warnings():  # the TorchScript-based exporter (no onnxscript needed) warns it is old
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", FutureWarning)
            torch.onnx.export(model, (_example(),), str(out / "model.onnx"), input_names=["input"],
                              output_names=["logits"], dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
                              dynamo=False, opset_version=17)
    except Exception as exc:  # an op the exporter lacks
        raise ExportError(f"ONNX export of run '{src.run_id}' failed: {type(exc).__name__}: {exc}") from exc
    return ["model.onnx"]


def _write_torchscript(src: Source, out: Path) -> list[str]:
    try:
        with warnings.catch_warnings():  # torch >= 2.9 calls TorchScript deprecated; it still loads everywhere
            warnings.simplefilter("ignore", FutureWarning)
            traced = torch.jit.trace(src.model, _example(), check_trace=False)
            traced.save(str(out / "model.pt"))
    except Exception as exc:
        raise ExportError(f"TorchScript export of run '{src.run_id}' failed: {type(exc).__name__}: {exc}") from exc
    return ["model.pt"]


WRITERS: dict[str, Callable[[Source, Path], list[str]]] = {
    "code": _write_code, "onnx": _write_onnx, "torchscript": _write_torchscript}


def export_run(store: Any, run_id: str, fmt: str, out_dir: str | Path, which: str | None = None) -> list[Path]:
    """Write a saved run's model as `fmt` (code | onnx | torchscript) into `out_dir`; the files written.

    The files are written into a temporary folder next to `out_dir` and moved in at the end, so a failed
    export leaves nothing half-written. Existing files of the same names are replaced.
    """
    if fmt not in WRITERS:
        raise ExportError(f"unknown export format {fmt!r}; known: {', '.join(FORMATS)}")
    src = load_source(store, run_id, which)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out, prefix=".export-") as tmp:
        files = WRITERS[fmt](src, Path(tmp))
        (Path(tmp) / "README.md").write_text(_readme(src, fmt, files), encoding="utf-8")
        files.append("README.md")
        for f in files:
            (Path(tmp) / f).replace(out / f)
    return [out / f for f in files]


def export_zip(store: Any, run_id: str, fmt: str = "code", which: str | None = None) -> bytes:
    """The export as a zip (files under a folder named after the run), e.g. for a download button."""
    tmp = Path(tempfile.mkdtemp(prefix="cnnlab-export-"))
    try:
        files = export_run(store, run_id, fmt, tmp, which)
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
            for f in files:
                z.write(f, f"{run_id}-{fmt}/{f.name}")
        return buf.getvalue()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
