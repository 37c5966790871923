"""MNIST tensors, splits, batches and batched augmentation."""

import shutil

import pytest
import torch

from cnnlab import data as D
from cnnlab.errors import ConfigError, DataMissingError


def test_whole_set_in_memory_as_uint8(mnist):
    assert mnist.train_x.shape == (60000, 28, 28) and mnist.train_x.dtype == torch.uint8
    assert mnist.test_x.shape == (10000, 28, 28) and mnist.test_y.dtype == torch.int64
    assert mnist.train_x.element_size() * mnist.train_x.nelement() == 47_040_000
    assert set(mnist.test_y.tolist()) == set(range(10))
    assert D.load_mnist() is mnist  # cached per directory


def test_missing_files_name_the_directory_and_the_four_files(tmp_path):
    with pytest.raises(DataMissingError) as err:
        D.load_mnist(tmp_path / "nowhere", download=False)
    msg = str(err.value)
    assert str((tmp_path / "nowhere").resolve()) in msg
    for name in D.RAW_FILES:
        assert name in msg
    assert "CNNLAB_DATA_DIR" in msg


def test_wrong_file_in_place_is_a_clear_error(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in D.RAW_FILES:
        shutil.copy(D.settings.data_dir() / "MNIST" / "raw" / name, raw / name)
    (raw / "train-images-idx3-ubyte").write_bytes(b"this is not an idx file")
    with pytest.raises(DataMissingError, match="unreadable"):
        D.load_mnist(tmp_path, download=False)


def test_idx_reader_gives_torchvisions_tensors_and_reads_gz(mnist, tmp_path):
    import gzip

    from torchvision.datasets import MNIST

    tv = MNIST(str(D.settings.data_dir()), train=False, download=False)
    assert torch.equal(mnist.test_x, tv.data) and torch.equal(mnist.test_y, tv.targets.long())
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    src = D.settings.data_dir() / "MNIST" / "raw"
    for name in D.RAW_FILES:
        (raw / f"{name}.gz").write_bytes(gzip.compress((src / name).read_bytes(), compresslevel=1))
    assert torch.equal(D.read_idx(raw / "t10k-labels-idx1-ubyte"), tv.targets.to(torch.uint8))
    assert torch.equal(D.load_mnist(tmp_path, download=False).train_x, mnist.train_x)


def test_truncated_file_is_a_clear_error(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in D.RAW_FILES:
        shutil.copy(D.settings.data_dir() / "MNIST" / "raw" / name, raw / name)
    with open(raw / "t10k-images-idx3-ubyte", "r+b") as f:
        f.truncate(5000)
    with pytest.raises(DataMissingError, match="unreadable.*truncated"):
        D.load_mnist(tmp_path, download=False)


def test_splits_are_seeded_disjoint_and_keep_test_apart(mnist):
    cfg = D.DataConfig(val_size=5000, split_seed=3)
    s1, s2 = D.make_splits(mnist, cfg), D.make_splits(mnist, cfg)
    assert len(s1.train_idx) == 55000 and len(s1.val_idx) == 5000
    assert torch.equal(s1.val_idx, s2.val_idx)
    assert not set(s1.train_idx.tolist()) & set(s1.val_idx.tolist())
    other = D.make_splits(mnist, D.DataConfig(val_size=5000, split_seed=4))
    assert not torch.equal(s1.val_idx, other.val_idx)
    sub = D.make_splits(mnist, D.DataConfig(subset=18000, split_seed=3))
    assert len(sub.train_idx) == 18000 and torch.equal(sub.val_idx, s1.val_idx)


@pytest.mark.parametrize("field,value", [
    ("subset", 0), ("subset", 56000), ("subset", 1.5), ("val_size", 10), ("val_size", "5000"),
    ("aug_strength", -1), ("aug_strength", float("nan")), ("aug_strength", 99),
])
def test_bad_data_options_name_the_field(field, value):
    cfg = D.DataConfig(**{field: value})
    with pytest.raises(ConfigError) as err:
        cfg.validate()
    assert err.value.field == field


def test_make_batch_normalizes(mnist):
    idx = torch.arange(2000)
    x = D.make_batch(mnist.train_x, idx)
    assert x.shape == (2000, 1, 28, 28) and x.dtype == torch.float32
    assert abs(x.mean().item()) < 0.1 and abs(x.std().item() - 1) < 0.1
    assert torch.allclose(x, D.to_float(mnist.train_x[:2000]))


def test_augmentation_is_per_sample_and_strength_scaled(mnist):
    one = mnist.train_x[:1].float().div(255).unsqueeze(1)
    batch = one.repeat(16, 1, 1, 1)
    g = torch.Generator().manual_seed(0)
    out = D.augment_batch(batch, 1.0, g)
    assert out.shape == batch.shape
    # same digit, different transform per sample (torchvision v2 would draw one per batch)
    diffs = [(out[i] - out[0]).abs().sum().item() for i in range(1, 16)]
    assert min(diffs) > 1.0
    assert torch.equal(D.augment_batch(batch, 0.0, g), batch)
    mild = (D.augment_batch(batch, 0.2, torch.Generator().manual_seed(0)) - batch).abs().mean()
    strong = (D.augment_batch(batch, 2.0, torch.Generator().manual_seed(0)) - batch).abs().mean()
    assert mild < strong
    assert out.min() >= 0 and out.max() <= 1.0001  # black fill, no overshoot


def test_batches_cover_the_split_once(mnist):
    idx = torch.arange(1000)
    seen = torch.cat(list(D.iterate_indices(idx, 64, True, torch.Generator().manual_seed(1))))
    assert sorted(seen.tolist()) == list(range(1000))
    assert D.steps_per_epoch(1000, 64) == 16
    assert D.steps_per_epoch(129, 64) == 2  # a final batch of 1 is dropped (BatchNorm)
    assert len(list(D.iterate_indices(torch.arange(129), 64, False))) == 2


def test_val_source_test_trains_on_all_60k_and_validates_on_the_test_set(mnist):
    cfg = D.DataConfig(val_source="test")
    cfg.validate()
    s = D.make_splits(mnist, cfg)
    assert len(s.train_idx) == 60_000 and len(s.val_idx) == 0 and cfg.n_train() == 60_000
    vx, vy = D.validation_data(mnist, cfg, s)
    assert vx is mnist.test_x and vy is mnist.test_y
    hold = D.DataConfig()
    hs = D.make_splits(mnist, hold)
    assert len(D.validation_data(mnist, hold, hs)[0]) == 5000 and hold.n_train() == 55_000
    with pytest.raises(ConfigError, match="val_source"):
        D.DataConfig(val_source="train").validate()
    with pytest.raises(ConfigError, match="between 1 and 60000"):
        D.DataConfig(val_source="test", subset=60_001).validate()


def test_cropzoom_zooms_one_in_ten_and_brightness_scales_each_image(mnist):
    x = mnist.train_x[:2000].float().div(255).unsqueeze(1)
    g = torch.Generator().manual_seed(0)
    out = D.augment_batch(x, 1.0, g, "cropzoom")
    assert out.shape == x.shape and out.min() >= 0
    ink_in, ink_out = (x > 0.5).flatten(1).sum(1).float(), (out > 0.5).flatten(1).sum(1).float()
    zoomed = (ink_out > ink_in * 1.35).float().mean().item()  # area grows by (28/22)^2 = 1.62 when zoomed
    assert 0.05 < zoomed < 0.16
    b = D.augment_batch(x, 1.0, torch.Generator().manual_seed(1), "brightness")
    ratio = (b.flatten(1).sum(1) / x.flatten(1).sum(1).clamp(min=1e-6))
    assert b.max() <= 1.0 and ratio.min() >= 0.49 and ratio.max() <= 1.5 and ratio.std() > 0.1
    with pytest.raises(ConfigError, match="aug_kind"):
        D.DataConfig(aug_kind="mixup").validate()


@pytest.mark.parametrize("kind,strength", [("affine", 0.0), ("affine", 1.0), ("cropzoom", 1.0), ("brightness", 1.0)])
def test_make_batch_on_one_thread_gives_the_multithreaded_values(mnist, kind, strength):
    """make_batch runs on one intra-op thread (fast on a loaded CPU): same values as on several threads,
    and the caller's thread count is left as it was."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        idx = torch.arange(512) * 7  # 512 x 784 values: big enough for torch to split ops across threads
        got = D.make_batch(mnist.train_x, idx, strength, torch.Generator().manual_seed(5), kind)
        assert torch.get_num_threads() == 2
        x = mnist.train_x.index_select(0, idx).float().div_(255.0).unsqueeze(1)  # make_batch's ops, 2 threads
        if strength:
            x = D.augment_batch(x, strength, torch.Generator().manual_seed(5), kind)
        want = x.sub_(D.MEAN).div_(D.STD)
    finally:
        torch.set_num_threads(before)
    assert torch.equal(got, want)
