"""Run ids and the text a person gives a run (names, tags, notes): safe folder names, cleaned text."""

from __future__ import annotations

import re
import secrets
import time
import unicodedata
from typing import Any, Iterable

from cnnlab.errors import LabError

ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
NAME_MAX = 200
TAG_MAX, TAGS_MAX = 50, 50
NOTES_MAX = 20_000


class InvalidRunId(LabError, ValueError):
    """An id that is not a safe folder name (path traversal, control characters, too long...)."""


def validate_run_id(run_id: Any) -> str:
    """Return `run_id` if it is a safe folder name, else raise InvalidRunId."""
    if not isinstance(run_id, str) or not ID_RE.match(run_id) or ".." in run_id:
        shown = repr(run_id)[:60]
        raise InvalidRunId(
            f"invalid run id {shown}: use 1-100 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit, without '..'"
        )
    return run_id


def _slug(text: str) -> str:
    slug = re.sub(r"[^a-z0-9_]+", "-", str(text).lower()).strip("-_")
    return slug[:40].strip("-_") or "run"


def new_run_id(preset: str = "run") -> str:
    """A fresh id like `20261122-010203-seed004-a1b2` (local time, preset slug, 4 random hex)."""
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{_slug(preset)}-{secrets.token_hex(2)}"


_WS = "\t\n\r\v\f\x1c\x1d\x1e\x1f\x85\u2028\u2029"


def _strip_controls(text: str, keep: str = "") -> str:
    # Cc = control chars, Cf = invisible format chars (bidi overrides), Zl/Zp = line separators
    return "".join(
        ch for ch in text if ch in keep or unicodedata.category(ch) not in ("Cc", "Cf", "Zl", "Zp")
    )


def clean_name(name: Any, fallback: str) -> str:
    """A display name: control characters removed, whitespace collapsed, <= 200 chars, never empty."""
    # whitespace controls (tab, newline) become single spaces; other controls vanish
    text = " ".join(_strip_controls(str(name if name is not None else ""), _WS).split())[:NAME_MAX].strip()
    return text or fallback


def clean_tags(tags: Iterable[Any]) -> list[str]:
    """Tags: cleaned like names, <= 50 chars each, de-duplicated in order, at most 50."""
    if isinstance(tags, str):
        tags = [tags]
    out: list[str] = []
    for tag in tags or []:
        text = " ".join(_strip_controls(str(tag), _WS).split())[:TAG_MAX].strip()
        if text and text not in out:
            out.append(text)
    return out[:TAGS_MAX]


def clean_notes(notes: Any) -> str:
    """Notes: control characters removed except newlines and tabs, <= 20000 chars."""
    text = _strip_controls(str(notes or "").replace("\r\n", "\n"), keep="\n\t")
    return text[:NOTES_MAX]
