"""Is MNIST there? A cheap check of the four raw files (no loading), and one background download
per data folder where downloading is allowed, with its progress in files.

The app checks this on every page before anything needs the data, so a missing data set is one
clear panel at start (and Launch is disabled), not a failed run after Launch.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path

from . import data, settings

READY, MISSING, DOWNLOADING, FAILED = "ready", "missing", "downloading", "failed"


@dataclass(frozen=True)
class DataState:
    """Where MNIST stands: state is ready | missing | downloading | failed."""

    state: str
    root: Path
    files_present: int  # of the four raw files (uncompressed or .gz)
    error: str = ""  # why the download failed

    @property
    def ready(self) -> bool:
        return self.state == READY

    @property
    def raw_dir(self) -> Path:
        return self.root / "MNIST" / "raw"


def files_present(root: Path) -> int:
    """How many of the four MNIST files are in `root`/MNIST/raw (never creates anything)."""
    raw = root / "MNIST" / "raw"
    return sum((raw / n).is_file() or (raw / f"{n}.gz").is_file() for n in data.RAW_FILES)


def download_allowed() -> bool:
    return os.environ.get("CNNLAB_DOWNLOAD", "1") != "0"


class _Download:
    """One background download of MNIST into a folder (torchvision's, through data.load_mnist)."""

    def __init__(self, root: Path):
        self.root, self.error, self.done = root, "", False
        self.thread = threading.Thread(target=self._run, name="cnnlab-mnist-download", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            data.load_mnist(self.root, download=True)
        except Exception as exc:  # DataMissingError with the paths, or anything torchvision raised
            self.error = str(exc)
        finally:
            self.done = True


_downloads: dict[str, _Download] = {}
_lock = threading.Lock()


def check(root: Path | None = None, download: bool | None = None, retry: bool = False) -> DataState:
    """The data's state; starts (once per folder, or again with `retry`) a download where allowed."""
    root = Path(root) if root is not None else settings.data_dir()
    n = files_present(root)
    if n == len(data.RAW_FILES):
        return DataState(READY, root, n)
    if download is None:
        download = download_allowed()
    if not download:
        return DataState(MISSING, root, n)
    key = str(root.resolve())
    with _lock:
        dl = _downloads.get(key)
        if dl is None or (retry and dl.done):
            dl = _downloads[key] = _Download(root)
    if dl.done and dl.error:
        return DataState(FAILED, root, n, dl.error)
    return DataState(DOWNLOADING, root, n)


def panel_text(s: DataState) -> str:
    """Markdown for the app's data panel: what is missing, where the four files go, what to do."""
    files = ", ".join(f"`{n}`" for n in data.RAW_FILES)
    where = (f"Put the four MNIST files ({files}; uncompressed or `.gz`) in `{s.raw_dir.resolve()}`, or set "
             "`CNNLAB_DATA_DIR` to a folder that has `MNIST/raw/` with them. This panel goes away by itself "
             "once they are there.")
    if s.state == DOWNLOADING:
        return (f"**Downloading MNIST** into `{s.raw_dir.resolve()}`: {s.files_present} of 4 files so far. "
                "Training is possible once it is complete.")
    if s.state == FAILED:
        return f"**MNIST could not be downloaded** ({s.error.splitlines()[0] if s.error else 'unknown error'}). {where}"
    off = " Downloading is switched off (`CNNLAB_DOWNLOAD=0`)." if not download_allowed() else ""
    return (f"**MNIST is not here yet** ({s.files_present} of 4 files found), so nothing can be trained or "
            f"tested.{off} {where}")
