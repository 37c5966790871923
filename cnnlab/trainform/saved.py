"""The Train page's saved runs: the list, resume, and the fork form."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError
from ..fields import OPTIMIZERS
from ..status import RESUMABLE
from .form import as_int
from .watch import short_cause


SAVED_SHOWN = 50  # rows of the saved-runs table; the Compare page lists everything


def saved_runs(manager: Any) -> list[Any]:
    """Store runs (RunInfo, newest first) that this process is not training right now."""
    live = manager.live_ids()
    return [r for r in manager.list_runs() if r.id not in live]


def has_last_checkpoint(info: Any) -> bool:
    """Whether the run folder holds last.pt (what Resume continues from)."""
    try:
        return (info.path / "last.pt").is_file()
    except OSError:
        return False


def can_resume(info: Any) -> bool:
    """Interrupted / stopped / failed / diverged runs with a last.pt can be resumed."""
    return info.status in RESUMABLE and not info.error and has_last_checkpoint(info)


def _epochs_text(info: Any) -> str:
    n = info.epochs or 0
    return f"{n} epoch{'s' if n != 1 else ''} saved"


def saved_status_line(info: Any) -> tuple[str, str]:
    """(level, text) describing a stored run: interrupted runs say so plainly; damaged ones show their error."""
    st = info.status
    planned = f" of {info.epochs_planned}" if info.epochs_planned else ""
    if st == "error":
        return "error", f"Damaged run folder: {info.error or 'unreadable files'}"
    if st == "interrupted":
        tail = f" ({short_cause(info.message)})" if info.message else ""
        return "warning", (f"interrupted — the app stopped while it trained; {_epochs_text(info)}{planned}"
                           f"{tail}")
    if st == "done":
        test = f"; test accuracy {info.test_acc:.2%}" if info.test_acc is not None else ""
        best = f"best validation accuracy {info.best_val_acc:.2%}" if info.best_val_acc is not None else "finished"
        return "success", f"done: {best}{test}"
    if st in ("failed", "diverged"):
        return "error", f"{st}: {short_cause(info.message)} ({_epochs_text(info)}{planned})"
    if st == "stopped":
        return "warning", f"stopped: {_epochs_text(info)}{planned}"
    return "info", f"{st} in another process (e.g. the CLI) · {_epochs_text(info)}{planned}"


def saved_rows(infos: list[Any]) -> list[dict]:
    """One table row per stored run."""
    rows = []
    for r in infos:
        rows.append({
            "name": r.name, "id": r.id, "status": r.status, "preset": r.preset or "",
            "epochs": f"{r.epochs or 0}/{r.epochs_planned or '?'}",
            "best val acc": f"{r.best_val_acc:.2%}" if isinstance(r.best_val_acc, (int, float)) else "",
            "test acc": f"{r.test_acc:.2%}" if isinstance(r.test_acc, (int, float)) else "",
        })
    return rows


def saved_label(info: Any) -> str:
    return f"{info.name} · {info.status} · {info.id}"


def default_saved(infos: list[Any]) -> int:
    """Index of the saved run to preselect: the newest interrupted one, else the newest."""
    for i, r in enumerate(infos):
        if r.status == "interrupted":
            return i
    return 0


@dataclass
class ForkDefaults:
    """What the fork form offers for one stored run."""

    epochs_available: list[int]
    lr: float
    epochs: int
    optimizer: str


def fork_defaults(manager: Any, run_id: str) -> ForkDefaults:
    """Saved epochs to fork from and the parent's recipe values (epochs at least one past the last saved)."""
    avail = manager.fork_epochs(run_id)
    handle = manager.store.get(run_id)
    recipe = handle.config.get("recipe") or {}
    lr = recipe.get("lr")
    planned = handle.planned_epochs()  # a live epochs change counts
    last = avail[-1] if avail else 0
    epochs = planned if isinstance(planned, int) and planned > last else last + 1
    opt = recipe.get("optimizer") if recipe.get("optimizer") in OPTIMIZERS else "sgd"
    return ForkDefaults(avail, float(lr) if isinstance(lr, (int, float)) else 0.01, epochs, opt)


def fork_overrides(epoch: Any, lr: Any, epochs: Any, optimizer: Any) -> tuple[int, dict]:
    """(fork epoch, overrides) from the fork form; ConfigError naming the bad field."""
    epoch = as_int("epoch", epoch)
    epochs = as_int("epochs", epochs)
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not math.isfinite(lr) or lr <= 0:
        raise ConfigError("lr", f"must be a positive number, got {lr!r}")
    if epochs <= epoch:
        raise ConfigError("epochs", f"must be more than the fork epoch {epoch} (epochs count like the parent's), "
                                    f"got {epochs}")
    if optimizer not in OPTIMIZERS:
        raise ConfigError("optimizer", f"must be one of {', '.join(OPTIMIZERS)}, got {optimizer!r}")
    return epoch, {"lr": float(lr), "epochs": epochs, "optimizer": optimizer}


def fork_run(manager: Any, run_id: str, epoch: Any, lr: Any, epochs: Any, optimizer: Any,
             name: str | None = None) -> str:
    """Validate the fork form and start the fork; the new run id (LabError subclasses on bad input)."""
    ep, over = fork_overrides(epoch, lr, epochs, optimizer)
    name = (name or "").strip() or None
    return manager.fork(run_id, ep, over, name=name)
