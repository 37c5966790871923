"""The builder: specs become modules whose weights come from their own seed."""

import pytest
import torch

from cnnlab.errors import SpecError
from cnnlab.models import build_model
from cnnlab.presets import get_preset
from cnnlab.spec import summarize


def test_pool_past_one_pixel_names_the_shapes():
    spec = [{"type": "conv", "out": 4, "k": 3}] + [{"type": "maxpool", "k": 2}] * 5
    with pytest.raises(SpecError) as err:
        build_model(spec + [{"type": "flatten"}, {"type": "linear", "out": 10}])
    assert "4x1x1" in str(err.value) and "layer 5 (maxpool)" in str(err.value)


def test_gap_and_1x1_head_build():
    spec = [{"type": "conv", "out": 8, "pad": 1}, {"type": "bn"}, {"type": "relu"}, {"type": "avgpool", "k": 2},
            {"type": "conv1x1", "out": 10}, {"type": "gap"}, {"type": "flatten"}, {"type": "logsoftmax"}]
    s = summarize(spec)
    assert s.rows[4].params == 8 * 10 + 10 and s.rows[5].out_shape == (10, 1, 1)
    assert build_model(spec)(torch.randn(2, 1, 28, 28)).shape == (2, 10)


def test_seeded_init_ignores_the_global_rng_and_matches_torch_defaults():
    spec = get_preset("seed004").spec
    torch.manual_seed(1)
    a = build_model(spec, seed=5)
    torch.rand(1000)  # another thread drawing from the global RNG in between
    b = build_model(spec, seed=5)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    c = build_model(spec, seed=6)
    assert not torch.equal(a.state_dict()["0_conv.weight"], c.state_dict()["0_conv.weight"])
    torch.manual_seed(0)
    default = build_model(spec)  # same distribution as torch's own reset_parameters
    for (k, x), y in zip(a.state_dict().items(), default.state_dict().values()):
        if x.dim() > 0 and x.numel() > 100:
            assert abs(x.std().item() - y.std().item()) < 0.15 * y.std().item(), k
            assert x.abs().max() <= y.abs().max() * 1.05 + 1e-6, k
