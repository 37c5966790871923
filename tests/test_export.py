"""Export: standalone code (run in a fresh interpreter without cnnlab), ONNX (onnxruntime), TorchScript, CLI."""

from __future__ import annotations

import importlib.util
import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from cnnlab import cli
from cnnlab import data as D
from cnnlab import export as E
from cnnlab.engine import Trainer
from cnnlab.models import build_model
from cnnlab.modelsource import build_eval_model
from cnnlab.plan import plan_run
from cnnlab.presets import get_preset, preset_names
from cnnlab.recipe import TrainConfig
from cnnlab.recorder import RunRecorder, create_run
from cnnlab.runs import RunStore
from cnnlab.spec import LAYER_TYPES

# every layer type the code generator knows, in one small net
ALL_TYPES = [
    {"type": "pixels", "max": 255.0}, {"type": "pad", "l": 1, "r": 1, "t": 1, "b": 1}, {"type": "resize", "size": 28},
    {"type": "conv", "out": 8, "k": 3, "pad": 1, "bias": False},
    {"type": "conv", "out": 8, "k": 3, "pad": 1, "bias": False, "tie": 1}, {"type": "bn", "tie": 2}, {"type": "relu"},
    {"type": "conv", "out": 8, "k": 3, "pad": 1, "bias": False, "tie": 1}, {"type": "bn", "tie": 2}, {"type": "relu"},
    {"type": "maxpool", "k": 2},
    {"type": "inception", "b1": 4, "b3r": 4, "b3": 8, "b5r": 2, "b5": 4, "pool": 4},
    {"type": "inception_shared", "out": 4}, {"type": "dropout2d", "p": 0.1}, {"type": "dropout", "p": 0.1},
    {"type": "conv", "out": 32, "k": 3, "stride": 2}, {"type": "avgpool", "k": 2, "stride": 1},
    {"type": "relu"}, {"type": "gap"}, {"type": "flatten"}, {"type": "linear", "out": 10},
    {"type": "logsoftmax"},
]
# the layers the seeds' original nets needed (seed 000, 001, 002), tied weights included
SEED_LAYERS = [
    {"type": "pixels", "max": 255.0}, {"type": "resize", "size": 32}, {"type": "pad", "l": 1, "r": 2, "t": 1, "b": 2},
    {"type": "conv", "out": 8, "k": 3, "pad": 1}, {"type": "bn", "tie": 2}, {"type": "relu"},
    {"type": "conv", "out": 8, "k": 3, "pad": 1, "tie": 3}, {"type": "bn", "tie": 2}, {"type": "relu"},
    {"type": "conv", "out": 8, "k": 3, "pad": 1, "tie": 3}, {"type": "relu"}, {"type": "maxpool", "k": 2},
    {"type": "dropout2d", "p": 0.1}, {"type": "inception_shared", "out": 4}, {"type": "gap"}, {"type": "flatten"},
    {"type": "linear", "out": 10},
]
N_IMAGES = 10


@pytest.fixture(scope="module")
def trained(tmp_path_factory, mnist):
    """(store, run id): the `fast` preset trained for one epoch on 4,000 images, saved like any run."""
    store = RunStore(tmp_path_factory.mktemp("export") / "runs")
    p = get_preset("fast")
    cfg = TrainConfig.from_dict({**p.recipe, "device": "cpu", "data": {"subset": 4000, "val_size": 1000}})
    run = create_run(store, "fast", plan_run(p.spec, cfg), name="fast on 4k")
    result = Trainer(plan_run(p.spec, cfg), mnist, callbacks=[RunRecorder(run)]).run()
    assert result.status == "done", result.message
    assert result.test_acc > 0.8  # a real, if small, model
    return store, run.id


def _lab_outputs(store: RunStore, rid: str, x_u8: torch.Tensor) -> torch.Tensor:
    """What the lab computes for these test images: the run's best weights on `data.to_float` input."""
    handle = store.get(rid)
    model = build_eval_model(handle.config["spec"], handle.load_checkpoint("best")["model"], "best.pt")
    with torch.no_grad():
        return model(D.to_float(x_u8))


def _pngs(folder: Path, images: torch.Tensor) -> list[str]:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, img in enumerate(images):
        p = folder / f"digit_{i}.png"
        Image.fromarray(img.numpy(), mode="L").save(p)
        paths.append(str(p))
    return paths


def test_every_layer_type_has_a_code_emitter() -> None:
    missing = set(LAYER_TYPES) - set(E.EMITTERS)
    assert not missing, f"add emitters for {sorted(missing)} to cnnlab/codegen.py EMITTERS"
    assert {L["type"] for L in ALL_TYPES + SEED_LAYERS} == set(LAYER_TYPES)  # the two specs cover them all


def test_code_export_runs_without_cnnlab_and_predicts_like_the_lab(trained, mnist, tmp_path) -> None:
    store, rid = trained
    out = tmp_path / "exported"
    files = E.export_run(store, rid, "code", out)
    assert sorted(f.name for f in files) == ["README.md", "model.py", "predict.py", "weights.safetensors"]
    source = (out / "model.py").read_text()
    assert "cnnlab" not in source.replace("CNN Lab", "") and "import cnnlab" not in (out / "predict.py").read_text()
    for expected in ("class Net(nn.Module)", "self.conv1 = nn.Conv2d(1, 16, 3, padding=1, bias=False)",
                     "self.bn1 = nn.BatchNorm2d(16)", "x = F.max_pool2d(x, 2)", "# 16x14x14",
                     "self.fc1 = nn.Linear(384, 10)", "# 10", "INPUT_MEAN = 0.1307"):
        assert expected in source, expected
    images = mnist.test_x[:N_IMAGES]
    pngs = _pngs(tmp_path / "pngs", images)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    # a fresh interpreter in the export folder: no PYTHONPATH, no user site, and cnnlab is not importable there
    probe = subprocess.run([sys.executable, "-E", "-s", "-c", "import cnnlab"], cwd=out, env=env,
                           capture_output=True, text=True)
    assert probe.returncode != 0 and "No module named 'cnnlab'" in probe.stderr
    done = subprocess.run([sys.executable, "-E", "-s", "predict.py", *pngs, "--json"], cwd=out, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    lab = torch.softmax(_lab_outputs(store, rid, images), 1).numpy()
    assert [r["digit"] for r in rows] == lab.argmax(1).tolist()
    np.testing.assert_allclose(np.array([r["probs"] for r in rows]), lab, atol=1e-5)
    plain = subprocess.run([sys.executable, "-E", "-s", "predict.py", pngs[0]], cwd=out, env=env,
                           capture_output=True, text=True, timeout=300)
    assert plain.stdout.startswith(f"{pngs[0]}: {lab[0].argmax()} (")


def test_onnx_matches_the_lab_within_1e_4(trained, mnist, tmp_path) -> None:
    ort = pytest.importorskip("onnxruntime")
    store, rid = trained
    E.export_run(store, rid, "onnx", tmp_path)
    sess = ort.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    images = mnist.test_x[:N_IMAGES]
    got = sess.run(["logits"], {"input": D.to_float(images).numpy()})[0]
    lab = _lab_outputs(store, rid, images).numpy()
    assert got.shape == (N_IMAGES, 10)
    assert np.abs(got - lab).max() <= 1e-4
    assert (got.argmax(1) == lab.argmax(1)).all()


def test_torchscript_matches_the_lab(trained, mnist, tmp_path) -> None:
    store, rid = trained
    E.export_run(store, rid, "torchscript", tmp_path)
    model = torch.jit.load(str(tmp_path / "model.pt"))
    images = mnist.test_x[:N_IMAGES]
    with torch.no_grad():
        got = model(D.to_float(images))
    torch.testing.assert_close(got, _lab_outputs(store, rid, images), atol=1e-5, rtol=1e-5)


def test_generated_code_reads_like_the_spec() -> None:
    source = E.generate_code(ALL_TYPES).source
    for expected in ("self.conv1 = nn.Conv2d(1, 8, 3, padding=1, bias=False)", "self.bn1 = nn.BatchNorm2d(8)",
                     "self.inception1 = Inception(8, b1=4, b3r=4, b3=8, b5r=2, b5=4, pool=4)", "class Inception",
                     "self.inception2 = SharedInception(20, 4)", "class SharedInception",
                     "self.dropout1 = nn.Dropout2d(0.1)", "self.dropout2 = nn.Dropout(0.1)",
                     "self.conv3 = nn.Conv2d(16, 32, 3, stride=2)", "x = F.avg_pool2d(x, 2, stride=1)",
                     "x = F.adaptive_avg_pool2d(x, 1)", "x = torch.flatten(x, 1)", "x = F.log_softmax(x, dim=1)",
                     "log-probabilities", "x = F.pad(x, (1, 1, 1, 1))", "x = F.interpolate(x, size=(28, 28)"):
        assert expected in source, expected
    forward = [line.strip() for line in source.split("def forward(self, x: torch.Tensor)")[-1].splitlines()
               if line.strip().startswith("x = ")]
    shapes = [line.split("# ")[1].split(" ")[0] for line in forward]
    assert shapes[:4] == ["1x28x28", "1x30x30", "1x28x28", "8x28x28"] and shapes[-1] == "10"
    assert forward[7].startswith("x = self.conv2(x)") and forward[7].endswith("# 8x28x28 · shared weights")
    assert source.count("nn.Conv2d(8, 8, 3") == 1  # a tied layer is one module, called twice


@pytest.mark.parametrize("preset", [*preset_names(), "all_types", "seed_layers"])
def test_generated_code_of_every_preset_computes_what_the_lab_model_does(preset, tmp_path) -> None:
    spec = {"all_types": ALL_TYPES, "seed_layers": SEED_LAYERS}.get(preset) or get_preset(preset).spec
    lab = build_model(spec, seed=3).eval()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():  # BatchNorm statistics away from their defaults, so a mix-up would show
        for name, buf in lab.named_buffers():
            if buf.is_floating_point():
                buf.copy_(torch.rand(buf.shape, generator=g) + 0.5)
    gen = E.generate_code(spec, title=preset)
    (tmp_path / "model.py").write_text(gen.source)
    mod_spec = importlib.util.spec_from_file_location(f"exported_{preset}", tmp_path / "model.py")
    mod = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(mod)
    net = mod.Net().eval()
    net.load_state_dict(E.rename_state(lab.state_dict(), gen.key_map))  # strict: every name maps
    x = torch.randn(4, 1, 28, 28, generator=g)
    with torch.no_grad():
        torch.testing.assert_close(net(x), lab(x), atol=1e-6, rtol=1e-6)
    assert (mod.INPUT_MEAN, mod.INPUT_STD) == (D.MEAN, D.STD)


def test_a_layer_type_without_an_emitter_is_named(monkeypatch) -> None:
    monkeypatch.delitem(E.EMITTERS, "bn")
    spec = get_preset("fast").spec
    with pytest.raises(E.ExportError) as exc:
        E.generate_code(spec)
    assert "layer 2 (bn)" in str(exc.value) and "EMITTERS" in str(exc.value)
    assert "bn" in E.code_export_problem(spec)
    assert E.code_export_problem(get_preset("seed004").spec) is None


def test_zip_cli_and_errors(trained, tmp_path, monkeypatch, capsys) -> None:
    store, rid = trained
    names = zipfile.ZipFile(io.BytesIO(E.export_zip(store, rid))).namelist()
    assert sorted(names) == sorted(f"{rid}-code/{n}" for n in ("README.md", "model.py", "predict.py",
                                                                 "weights.safetensors"))
    monkeypatch.setenv("CNNLAB_CHECKPOINT_DIR", str(store.root))
    assert cli.main(["export", rid, "--format", "onnx", "--out", str(tmp_path / "o"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert {Path(f).name for f in out["files"]} == {"model.onnx", "README.md"}
    assert "(x - 0.1307) / 0.3081" in (tmp_path / "o" / "README.md").read_text()
    assert cli.main(["export", rid, "--format", "torchscript", "--out", str(tmp_path / "t")]) == 0
    assert (tmp_path / "t" / "model.pt").is_file()
    empty = create_run(store, "custom", plan_run(ALL_TYPES, TrainConfig(device="cpu")))
    assert cli.main(["export", empty.id, "--out", str(tmp_path / "e")]) == 2
    assert "no best/last.pt yet" in capsys.readouterr().err
    assert E.run_code_problem(store, empty.id).startswith("no saved weights")
    assert E.run_code_problem(store, rid) is None
    assert not (tmp_path / "e").exists() or not any((tmp_path / "e").iterdir())


def test_compare_page_offers_the_model_as_code(manager, tmp_path) -> None:
    """The Compare page's export row has a code-zip button, enabled for a run with weights and off without."""
    from streamlit.testing.v1 import AppTest

    from test_jobs import TINY, cfg

    store = manager.store
    with_weights = manager.submit("tiny", plan_run(TINY, cfg(epochs=1)), name="trained")
    assert manager.wait(with_weights, timeout=300).status == "done"
    bare = create_run(store, "tiny", plan_run(TINY, cfg()), name="no weights yet").id
    page = str(Path(__file__).resolve().parents[1] / "app_pages" / "compare.py")
    at = AppTest.from_file(page, default_timeout=120)
    at.run()
    for rid, enabled in ((with_weights, True), (bare, False)):
        at.selectbox(key="compare_export_run").set_value(rid).run()
        assert not at.exception, at.exception
        (button,) = [b for b in at.get("download_button") if b.proto.label == "Model as code (zip)"]
        assert button.proto.disabled is (not enabled)
    names = zipfile.ZipFile(io.BytesIO(E.export_zip(store, with_weights))).namelist()
    assert f"{with_weights}-code/predict.py" in names
