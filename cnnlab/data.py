"""MNIST held once in memory as uint8 tensors; splits, batches by index, batched augmentation."""

from __future__ import annotations

import math
import os
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator, NamedTuple

import torch
import torch.nn.functional as F

from . import settings
from .errors import ConfigError, DataMissingError

MEAN, STD = 0.1307, 0.3081
RAW_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
N_TRAIN_TOTAL = 60_000


class Mnist(NamedTuple):
    """The whole data set as tensors: images uint8 [N,28,28], labels int64 [N]."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor


_cache: dict[str, Mnist] = {}
_cache_lock = threading.Lock()


def _missing_message(root: Path, reason: str) -> str:
    raw = root / "MNIST" / "raw"
    files = "\n".join(f"  - {raw / name}" for name in RAW_FILES)
    return (
        f"MNIST is not available in {root.resolve()} ({reason}).\n"
        f"Put the four MNIST files (uncompressed, or as .gz) here:\n{files}\n"
        "or point CNNLAB_DATA_DIR at a directory that has MNIST/raw/ with them. "
        "Where a network exists the lab downloads them itself (set CNNLAB_DOWNLOAD=0 to forbid that)."
    )


def _raw_present(root: Path) -> bool:
    raw = root / "MNIST" / "raw"
    return all((raw / n).is_file() or (raw / f"{n}.gz").is_file() for n in RAW_FILES)


def _remove_if_empty(dirs: list[Path]) -> None:
    """Remove the folders in `dirs` (innermost first) that are empty."""
    for d in dirs:
        try:
            d.rmdir()
        except OSError:  # not empty, or already gone
            pass


def load_mnist(root: str | Path | None = None, download: bool | None = None) -> Mnist:
    """Load MNIST through torchvision from `root` (default: CNNLAB_DATA_DIR), cached per process.

    Downloads where a network exists (unless CNNLAB_DOWNLOAD=0); otherwise raises DataMissingError
    naming the directory and the four files.
    """
    root = Path(root) if root is not None else settings.data_dir()
    key = str(root.resolve())
    with _cache_lock:
        if key in _cache:
            return _cache[key]
        if download is None:
            download = os.environ.get("CNNLAB_DOWNLOAD", "1") != "0"
        from torchvision.datasets import MNIST

        if not _raw_present(root):
            if not download:
                raise DataMissingError(_missing_message(root, "files not found, download disabled"))
            new_dirs = [d for d in (root / "MNIST" / "raw", root / "MNIST", root) if not d.exists()]
            try:
                root.mkdir(parents=True, exist_ok=True)
                MNIST(str(root), train=True, download=True)
                MNIST(str(root), train=False, download=True)
            except Exception as exc:  # offline, unwritable dir, mirror down...
                _remove_if_empty(new_dirs)  # a failed download leaves no empty folders behind
                raise DataMissingError(_missing_message(root, f"download failed: {exc}".strip())) from exc
        try:
            train = MNIST(str(root), train=True, download=False)
            test = MNIST(str(root), train=False, download=False)
        except Exception as exc:  # a wrong or truncated file in place of an MNIST file
            raise DataMissingError(_missing_message(root, f"files unreadable: {exc}")) from exc
        mnist = Mnist(
            train.data.contiguous(), train.targets.long(), test.data.contiguous(), test.targets.long()
        )
        if mnist.train_x.shape[1:] != (28, 28) or len(mnist.train_x) != len(mnist.train_y):
            raise DataMissingError(_missing_message(root, f"unexpected shape {tuple(mnist.train_x.shape)}"))
        _cache[key] = mnist
        return mnist


@dataclass
class DataConfig:
    """Data options: training subset, validation split, augmentation."""

    subset: int | None = None  # training images used per epoch (None = all of the train split)
    val_size: int = 5000  # held out of the 60k training images; the 10k test set stays apart
    augment: bool = False
    aug_strength: float = 1.0  # 0 = none, 1 = seed 001's strength (±15°, zoom, ±2 px)
    split_seed: int = 0

    def validate(self) -> None:
        """Raise ConfigError naming the first bad field."""
        if not isinstance(self.val_size, int) or isinstance(self.val_size, bool):
            raise ConfigError("val_size", f"must be an integer, got {self.val_size!r}")
        if not 100 <= self.val_size <= 30_000:
            raise ConfigError("val_size", f"must be between 100 and 30000, got {self.val_size}")
        if self.subset is not None:
            if not isinstance(self.subset, int) or isinstance(self.subset, bool):
                raise ConfigError("subset", f"must be an integer or empty, got {self.subset!r}")
            limit = N_TRAIN_TOTAL - self.val_size
            if not 1 <= self.subset <= limit:
                raise ConfigError("subset", f"must be between 1 and {limit} (60000 minus validation), got {self.subset}")
        s = self.aug_strength
        if not isinstance(s, (int, float)) or isinstance(s, bool) or not math.isfinite(s) or not 0 <= s <= 3:
            raise ConfigError("aug_strength", f"must be a number between 0 and 3, got {s!r}")
        if not isinstance(self.split_seed, int) or isinstance(self.split_seed, bool):
            raise ConfigError("split_seed", f"must be an integer, got {self.split_seed!r}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "DataConfig":
        known = {k: v for k, v in (d or {}).items() if k in cls.__dataclass_fields__}
        return cls(**known)


class Splits(NamedTuple):
    train_idx: torch.Tensor
    val_idx: torch.Tensor


def make_splits(mnist: Mnist, cfg: DataConfig) -> Splits:
    """Seeded train/validation split of the 60k training images, then the training subset."""
    g = torch.Generator().manual_seed(cfg.split_seed)
    perm = torch.randperm(len(mnist.train_x), generator=g)
    val_idx, train_idx = perm[: cfg.val_size], perm[cfg.val_size :]
    if cfg.subset is not None:
        train_idx = train_idx[: cfg.subset]
    return Splits(train_idx.clone(), val_idx.clone())


def to_float(x_u8: torch.Tensor) -> torch.Tensor:
    """uint8 [B,28,28] -> normalized float [B,1,28,28]."""
    return ((x_u8.float() / 255.0) - MEAN).div_(STD).unsqueeze(1)


def augment_batch(x01: torch.Tensor, strength: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Per-sample random rotation, zoom and shift of a [B,1,28,28] batch in [0,1] (black fill).

    Strength 1 approximates seed 001's recipe: rotation ±15°, zoom 0.9–1.15 (its occasional
    center-crop-22-and-resize is a zoom of up to 1.27), shift ±2 px.
    """
    if strength <= 0:
        return x01
    b = x01.shape[0]
    u = torch.rand(b, 4, generator=generator) * 2 - 1  # U(-1, 1)
    ang = u[:, 0] * math.radians(15.0) * strength
    zoom = 1.0 + torch.where(u[:, 1] > 0, u[:, 1] * 0.15, u[:, 1] * 0.10) * strength
    shift = u[:, 2:] * (2.0 / 14.0) * strength  # normalized coords: 14 px per unit
    cos, sin = torch.cos(ang) / zoom, torch.sin(ang) / zoom
    theta = torch.stack(
        [torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1
    ).to(x01.dtype)
    grid = F.affine_grid(theta, list(x01.shape), align_corners=False)
    return F.grid_sample(x01, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def make_batch(
    mnist_x: torch.Tensor,
    idx: torch.Tensor,
    aug_strength: float = 0.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Gather images by index, augment (optional), normalize: float [B,1,28,28]."""
    x = mnist_x.index_select(0, idx).float().div_(255.0).unsqueeze(1)
    if aug_strength > 0:
        x = augment_batch(x, aug_strength, generator)
    return x.sub_(MEAN).div_(STD)


def iterate_indices(
    idx: torch.Tensor, batch_size: int, shuffle: bool, generator: torch.Generator | None = None
) -> Iterator[torch.Tensor]:
    """Batches of indices; a final batch of size 1 is dropped (BatchNorm cannot train on it)."""
    order = idx[torch.randperm(len(idx), generator=generator)] if shuffle else idx
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        if len(chunk) == 1 and start > 0:
            break
        yield chunk


def steps_per_epoch(n: int, batch_size: int) -> int:
    """Number of batches iterate_indices yields for n indices."""
    full, rem = divmod(n, batch_size)
    return full + (1 if rem > 1 or (rem == 1 and full == 0) else 0)
