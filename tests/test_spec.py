"""The layer language: misfit specs fail with a message naming the layer and shapes; the text format."""

import subprocess
import sys
from pathlib import Path

import pytest

from cnnlab.errors import SpecError
from cnnlab.presets import get_preset
from cnnlab.spec import parse_spec_text, spec_to_text, validate_spec


@pytest.mark.parametrize("spec,needle", [
    ([], "empty"),
    ([{"type": "conv", "out": 8}, {"type": "maxpool", "k": 2}] * 4 + [{"type": "flatten"}, {"type": "linear", "out": 10}],
     "layer 6 (conv): kernel 3x3 does not fit the 8x1x1 input"),
    ([{"type": "flatten"}, {"type": "linear", "in": 100, "out": 10}], "in=100 but the previous layer gives 784"),
    ([{"type": "linear", "out": 10}], "add a flatten"),
    ([{"type": "flatten"}, {"type": "conv", "out": 4}], "flat vector"),
    ([{"type": "conv", "out": 4, "k": 27}, {"type": "conv", "out": 4}], "layer 1 (conv): kernel 3x3 does not fit the 4x2x2"),
    ([{"type": "conv", "out": 4, "k": 31}], "'k' must be between 1 and 28"),
    ([{"type": "flatten"}, {"type": "linear", "out": 7}], "exactly 10"),
    ([{"type": "convolution", "out": 4}], "unknown type"),
    ([{"type": "conv", "out": 4, "kernel": 3}], "unknown option"),
    ([{"type": "conv", "out": -4}], "'out' must be between"),
    ([{"type": "conv", "out": "16"}], "must be an integer"),
    ([{"type": "dropout", "p": 1.5}], "'p' must be between"),
    ([{"type": "flatten"}, {"type": "linear", "out": 100_000}, {"type": "linear", "out": 1000}], "over the limit"),
    ([{"type": "resize", "size": 512}, {"type": "conv", "out": 64, "pad": 1}, {"type": "gap"}, {"type": "flatten"},
      {"type": "linear", "out": 10}], "MiB for a batch of 64"),
    ([{"type": "conv", "out": 8, "tie": 1}, {"type": "conv", "out": 8, "k": 5, "tie": 1}, {"type": "flatten"},
      {"type": "linear", "out": 10}], "tie=1 shares weights with layer 0, so it needs the same"),
    ([{"type": "conv", "out": 8, "tie": 1}, {"type": "conv", "out": 8, "tie": 1}, {"type": "flatten"},
      {"type": "linear", "out": 10}], "takes 1 channels, but this one gets 8"),
    ([{"type": "conv", "out": 8}, {"type": "pixels", "max": 255}], "must be the first layer"),
    ([{"type": "flatten"}, {"type": "dropout2d"}], "flat vector"),
    ("conv", "must be a list of layer dicts"),
])
def test_misfit_specs_raise_a_message_naming_layer_and_shapes(spec, needle):
    with pytest.raises(SpecError) as err:
        validate_spec(spec)
    assert needle in str(err.value)


def test_text_format_round_trips_and_never_evaluates():
    spec = get_preset("seed000").spec
    assert parse_spec_text(spec_to_text(spec)) == spec
    assert parse_spec_text('[{"type": "flatten"}, {"type": "linear", "out": 10}]')[1]["out"] == 10
    with pytest.raises(SpecError, match="must be a number"):
        parse_spec_text("conv out=__import__('os').system('true')")
    with pytest.raises(SpecError, match="key=value"):
        parse_spec_text("conv 16")
    with pytest.raises(SpecError, match="not valid JSON"):
        parse_spec_text("[{'type': 'conv'}")


def test_the_layer_language_and_the_presets_load_without_torch():
    code = "import sys, cnnlab.spec, cnnlab.presets; print(sorted(m for m in sys.modules if m.split('.')[0] == 'torch'))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1]).stdout
    assert out.strip() == "[]"
