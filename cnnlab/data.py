"""MNIST held once in memory as uint8 tensors; splits, batches by index, batched augmentation."""

from __future__ import annotations

import gzip
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
from .fields import check

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
        if not _raw_present(root):
            if not download:
                raise DataMissingError(_missing_message(root, "files not found, download disabled"))
            from torchvision.datasets import MNIST  # only to download: importing it costs ~3 CPU s

            new_dirs = [d for d in (root / "MNIST" / "raw", root / "MNIST", root) if not d.exists()]
            try:
                root.mkdir(parents=True, exist_ok=True)
                MNIST(str(root), train=True, download=True)
                MNIST(str(root), train=False, download=True)
            except Exception as exc:  # offline, unwritable dir, mirror down...
                _remove_if_empty(new_dirs)  # a failed download leaves no empty folders behind
                raise DataMissingError(_missing_message(root, f"download failed: {exc}".strip())) from exc
        try:
            tx, ty, vx, vy = (read_idx(root / "MNIST" / "raw" / name) for name in RAW_FILES)
        except (OSError, ValueError, EOFError) as exc:  # a wrong or truncated file in place of an MNIST file
            raise DataMissingError(_missing_message(root, f"files unreadable: {exc}")) from exc
        mnist = Mnist(tx, ty.long(), vx, vy.long())
        if mnist.train_x.shape[1:] != (28, 28) or len(mnist.train_x) != len(mnist.train_y):
            raise DataMissingError(_missing_message(root, f"unexpected shape {tuple(mnist.train_x.shape)}"))
        _cache[key] = mnist
        return mnist


def read_idx(path: Path) -> torch.Tensor:
    """An MNIST idx file of unsigned bytes (`path`, else `path`.gz) as a uint8 tensor of its shape.

    Read directly (not through torchvision, whose import would cost more CPU time than the reading).
    Raises ValueError for a file that is not such an idx file, or is truncated.
    """
    if not path.is_file() and path.with_name(path.name + ".gz").is_file():
        path = path.with_name(path.name + ".gz")
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08 or not 1 <= raw[3] <= 3:
        raise ValueError(f"{path.name} is not an MNIST idx file of unsigned bytes")
    ndim, head = raw[3], 4 + 4 * raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    if len(raw) != head + math.prod(dims):
        raise ValueError(f"{path.name}: {len(raw) - head} bytes of data for shape {dims}: truncated or corrupt")
    return torch.frombuffer(bytearray(raw), dtype=torch.uint8, offset=head).reshape(dims)


@dataclass(frozen=True)
class DataConfig:
    """Data options: training subset, validation split, augmentation."""

    subset: int | None = None  # training images used per epoch (None = all of the train split)
    val_size: int = 5000  # held out of the 60k training images; the 10k test set stays apart
    augment: bool = False
    aug_strength: float = 1.0  # 0 = none, 1 = the kind's full strength (see augment_batch)
    split_seed: int = 0
    aug_kind: str = "affine"  # one of AUG_KINDS
    val_source: str = "holdout"  # "holdout": val_size images of the 60k; "test": train on all 60k, validate on the test set

    def validate(self) -> None:
        """Raise ConfigError naming the first bad field."""
        if self.aug_kind not in AUG_KINDS:
            raise ConfigError("aug_kind", f"unknown augmentation {self.aug_kind!r}; known: {', '.join(AUG_KINDS)}")
        if self.val_source not in VAL_SOURCES:
            raise ConfigError("val_source", f"must be one of {', '.join(VAL_SOURCES)}, got {self.val_source!r}")
        check("val_size", self.val_size)
        if self.subset is not None:
            if not isinstance(self.subset, int) or isinstance(self.subset, bool):
                raise ConfigError("subset", f"must be an integer or empty, got {self.subset!r}")
            limit = self.n_train_max()
            if not 1 <= self.subset <= limit:
                why = "all training images" if self.val_source == "test" else "60000 minus validation"
                raise ConfigError("subset", f"must be between 1 and {limit} ({why}), got {self.subset}")
        check("aug_strength", self.aug_strength)
        if not isinstance(self.split_seed, int) or isinstance(self.split_seed, bool):
            raise ConfigError("split_seed", f"must be an integer, got {self.split_seed!r}")

    def n_train_max(self) -> int:
        """Training images available: all 60k when the test set validates, else 60k minus the held-out ones."""
        return N_TRAIN_TOTAL if self.val_source == "test" else N_TRAIN_TOTAL - self.val_size

    def n_train(self) -> int:
        return self.subset if self.subset is not None else self.n_train_max()

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
    """Seeded train/validation split of the 60k training images, then the training subset.

    With val_source "test" every training image trains and `val_idx` is empty: validation reads the
    test set (what the seeds did; see validation_data).
    """
    g = torch.Generator().manual_seed(cfg.split_seed)
    perm = torch.randperm(len(mnist.train_x), generator=g)
    n_val = 0 if cfg.val_source == "test" else cfg.val_size
    val_idx, train_idx = perm[:n_val], perm[n_val:]
    if cfg.subset is not None:
        train_idx = train_idx[: cfg.subset]
    return Splits(train_idx.clone(), val_idx.clone())


def validation_data(mnist: Mnist, cfg: DataConfig, splits: Splits) -> tuple[torch.Tensor, torch.Tensor]:
    """The images and labels a run validates on: its held-out split, or the test set."""
    if cfg.val_source == "test":
        return mnist.test_x, mnist.test_y
    return mnist.train_x[splits.val_idx], mnist.train_y[splits.val_idx]


def to_float(x_u8: torch.Tensor) -> torch.Tensor:
    """uint8 [B,28,28] -> normalized float [B,1,28,28]."""
    return ((x_u8.float() / 255.0) - MEAN).div_(STD).unsqueeze(1)


AUG_KINDS = ("affine", "cropzoom", "brightness")
AUG_LABELS = {
    "affine": "rotate ±15°, zoom 0.9–1.15, shift ±2 px (the lab's own)",
    "cropzoom": "seeds 001/003: 1 in 10 center-cropped to 22 px and resized to 28, rotate ±15°",
    "brightness": "seed 000: brightness ×0.5–1.5 (ColorJitter)",
}
VAL_SOURCES = ("holdout", "test")
CROP_ZOOM = 28 / 22  # CenterCrop(22) then Resize(28)


def augment_batch(x01: torch.Tensor, strength: float, generator: torch.Generator | None = None,
                  kind: str = "affine") -> torch.Tensor:
    """Per-sample random augmentation of a [B,1,28,28] batch in [0,1] (black fill), one of AUG_KINDS.

    "affine", strength 1: rotation ±15°, zoom 0.9–1.15, shift ±2 px. "cropzoom" (seeds 001 and 003):
    with probability 0.1 the central 22x22 is zoomed to 28x28, then a rotation of ±15°; strength scales
    the angle and the zoom. "brightness" (seed 000's ColorJitter(brightness=0.5)): each image times
    U(1 - 0.5 s, 1 + 0.5 s), clipped to [0, 1].
    """
    if strength <= 0:
        return x01
    b = x01.shape[0]
    u = torch.rand(b, 4, generator=generator) * 2 - 1  # U(-1, 1)
    if kind == "brightness":
        factor = (1.0 + u[:, 0] * 0.5 * strength).clamp(min=0).to(x01.dtype)
        return (x01 * factor.view(b, 1, 1, 1)).clamp_(0, 1)
    ang = u[:, 0] * math.radians(15.0) * strength
    if kind == "cropzoom":
        crop = (u[:, 1] + 1) / 2 < 0.1
        zoom = torch.where(crop, 1.0 + (CROP_ZOOM - 1.0) * strength, torch.ones(b))
        shift = torch.zeros(b, 2)
    else:
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
    aug_kind: str = "affine",
) -> torch.Tensor:
    """Gather images by index, augment (optional), normalize: float [B,1,28,28].

    Runs on one intra-op thread: these ops are small and memory-bound, and on a loaded CPU every
    parallel op waited for a descheduled sibling thread (benchmarks/bench_seeds.py: 10-100x slower
    with 2 threads). The values are the same for any thread count (tests/test_data.py).
    """
    with settings.limit_threads(1):
        x = mnist_x.index_select(0, idx).float().div_(255.0).unsqueeze(1)
        if aug_strength > 0:
            x = augment_batch(x, aug_strength, generator, aug_kind)
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
