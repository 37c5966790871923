"""Shift test-time augmentation: the views, the mean softmax, and where a run's test accuracy uses it."""

import pytest
import torch
import torch.nn.functional as F

from cnnlab import data as D
from cnnlab import engine as E
from cnnlab import tta
from cnnlab.errors import ConfigError
from cnnlab.evaluation import evaluate
from cnnlab.models import build_model
from cnnlab.plan import plan_run
from cnnlab.presets import get_preset
from cnnlab.recipe import TrainConfig

SPEC = get_preset("fast").spec


def _shift_by_padding(x: torch.Tensor, dx: int, dy: int) -> torch.Tensor:
    """The same shift written another way: zero-pad every side by 4, then crop a moved window."""
    p = F.pad(x, (4, 4, 4, 4))
    h, w = x.shape[-2:]
    return p[..., 4 - dy : 4 - dy + h, 4 - dx : 4 - dx + w]


def test_shift_moves_pixels_and_fills_black():
    x = torch.zeros(1, 28, 28, dtype=torch.uint8)
    x[0, 10, 12] = 200
    right = tta.shift_images(x, 3, 0)
    assert right[0, 10, 15] == 200 and right.sum() == 200
    up = tta.shift_images(x, 0, -2)
    assert up[0, 8, 12] == 200 and up.sum() == 200
    edge = torch.full((1, 28, 28), 7, dtype=torch.uint8)
    assert (tta.shift_images(edge, -2, 0)[0, :, -2:] == 0).all()
    for dx, dy in [(2, 0), (-2, 0), (0, 2), (0, -2), (1, -3)]:
        assert torch.equal(tta.shift_images(x, dx, dy), _shift_by_padding(x, dx, dy))


def test_tta_probs_are_the_mean_softmax_over_the_shifted_images(mnist):
    torch.manual_seed(0)
    model = build_model(SPEC, seed=1)
    model.train()
    for _ in range(3):  # a few steps, so BN's running statistics are not the identity
        model(D.to_float(mnist.train_x[:64]))
    model.eval()
    x = mnist.test_x[:50]
    with torch.no_grad():
        expected = torch.stack([torch.softmax(model(D.to_float(_shift_by_padding(x, dx, dy))), 1)
                                for dx, dy in [(0, 0), (2, 0), (-2, 0), (0, 2), (0, -2)]]).mean(0)
        plain = torch.softmax(model(D.to_float(x)), 1)
    got = tta.tta_probs(model, x, 2, batch=16)  # batches that do not divide 50
    assert torch.allclose(got, expected, atol=1e-6)
    assert not torch.allclose(got, plain, atol=1e-3)  # the shifts change the answer
    assert torch.allclose(tta.tta_probs(model, x, 0), plain, atol=1e-6)


def test_evaluate_with_tta_reports_the_mean_softmax_prediction(mnist):
    model = build_model(SPEC, seed=2).eval()
    x, y = mnist.test_x[:300], mnist.test_y[:300]
    probs = tta.tta_probs(model, x, 1)
    loss, acc, preds = evaluate(model, x, y, torch.device("cpu"), batch=128, tta_shift=1)
    assert torch.equal(preds, probs.argmax(1))
    assert acc == pytest.approx((probs.argmax(1) == y).float().mean().item())
    assert loss == pytest.approx(F.nll_loss(probs.log(), y).item(), rel=1e-5)
    plain_loss, plain_acc, plain_preds = evaluate(model, x, y, torch.device("cpu"), batch=128)
    assert torch.equal(plain_preds, tta.tta_probs(model, x, 0).argmax(1))


def test_a_runs_test_accuracy_uses_its_recipe_shift_and_compare_agrees(mnist, tmp_path):
    from cnnlab.compare import evaluate_run
    from cnnlab.recorder import RunRecorder, create_run
    from cnnlab.runs import RunStore

    store = RunStore(tmp_path)
    cfg = TrainConfig.from_dict({"optimizer": "sgd", "lr": 0.05, "batch_size": 64, "epochs": 1,
                                   "tta_shift": 2, "data": {"subset": 1024, "val_size": 500}})
    run = create_run(store, "fast", plan_run(SPEC, cfg), name="tta")
    trainer = E.Trainer(plan_run(SPEC, cfg), mnist, callbacks=[RunRecorder(run)])
    result = trainer.run()
    assert result.status == "done"
    plain = evaluate(trainer.model, mnist.test_x, mnist.test_y, trainer.device)[1]
    shifted = evaluate(trainer.model, mnist.test_x, mnist.test_y, trainer.device, tta_shift=2)[1]
    assert result.test_acc == pytest.approx(shifted) and shifted != plain
    ev = evaluate_run(store, run.id, "last", mnist)
    assert (ev.preds == ev.labels).mean() == pytest.approx(result.test_acc)


def test_recipe_shift_reads_old_runs_and_refuses_bad_values():
    assert tta.recipe_shift({"lr": 0.1}) == 0
    assert tta.recipe_shift({"tta_shift": 3}) == 3
    for bad in (-1, 9, "2", 1.0, True):
        with pytest.raises(ConfigError, match="tta_shift"):
            tta.recipe_shift({"tta_shift": bad})
