"""A run as a zip: the export's snapshot and compression, and the import's checks (nothing of a refused
zip is ever written into the store)."""

from __future__ import annotations

import io
import json
import re
import stat
import zipfile
from pathlib import Path
from typing import Any

from cnnlab.errors import LabError
from cnnlab.fsutil import atomic_write_json

from .files import (ACTIVE, EPOCH_PT_RE, JSONL_FILES, JSONL_MAX, MAX_EPOCH_FILES, MB, PT_FILES, RUN_FILES,
                    STATUSES, load_error_cause, lock_for, now_iso, pt_intact, read_json)
from .ids import InvalidRunId, clean_name, clean_notes, clean_tags, validate_run_id

IMPORT_MAX_MEMBER = 512 * MB  # MNIST nets are small; a .pt with optimizer state is a few MB
IMPORT_MAX_TOTAL = 1024 * MB


class ImportRefused(LabError):
    """A run zip failed validation; nothing was written."""


def snapshot(handle: Any) -> list[tuple[str, bytes]]:
    """(name in the zip, bytes) of a run's known files, read under the run's lock: a consistent copy."""
    files: list[tuple[str, bytes]] = []
    with lock_for(handle.path):
        for name in (*RUN_FILES, *(f"epoch_{n}.pt" for n in handle.epoch_checkpoints())):
            path = handle.path / name
            if path.is_file() and not path.is_symlink():
                files.append((f"{handle.id}/{name}", path.read_bytes()))
    return files


def compress(files: list[tuple[str, bytes]]) -> bytes:
    """A deflated zip of (name, bytes) pairs."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files:
            zf.writestr(name, data)
    return buf.getvalue()


def member_target(info: zipfile.ZipInfo) -> tuple[str | None, str | None]:
    """(top folder or None, file name or None for a folder entry) of a safe member; else LabError."""
    name = info.filename
    mode = (info.external_attr >> 16) & 0o170000
    if mode == stat.S_IFLNK:
        raise LabError(f"'{name[:80]}' is a symlink")
    if info.flag_bits & 0x1:
        raise LabError(f"'{name[:80]}' is encrypted")
    if "\\" in name or name.startswith("/") or re.match(r"^[A-Za-z]:", name) or "\x00" in name:
        raise LabError(f"'{name[:80]}' has an absolute or Windows path")
    parts = name.split("/")
    if any(p in ("..", ".") for p in parts):
        raise LabError(f"'{name[:80]}' tries to leave its folder")
    if name.endswith("/"):  # a folder entry: only the single top folder is allowed
        if len(parts) != 2:
            raise LabError(f"unexpected folder '{name[:80]}'")
        return validate_run_id(parts[0]), None
    if len(parts) > 2:
        raise LabError(f"unexpected nested path '{name[:80]}'")
    top, fname = (None, parts[0]) if len(parts) == 1 else (parts[0], parts[1])
    if fname not in RUN_FILES and not EPOCH_PT_RE.match(fname):
        raise LabError(f"unexpected file '{name[:80]}'; a run zip holds only {', '.join(RUN_FILES)}, epoch_<n>.pt")
    if top is not None:
        validate_run_id(top)
    return top, fname


def peek_config(data: bytes) -> dict:
    """config.json of a run zip read ahead of extraction (for its size limits); {} if absent or odd."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            info = next(i for i in zf.infolist() if i.filename.split("/")[-1] == "config.json")
            if info.file_size > MB:
                return {}
            with zf.open(info) as f:
                obj = json.loads(f.read(MB + 1))
    except Exception:  # noqa: BLE001 - extraction says what is wrong with the zip
        return {}
    return obj if isinstance(obj, dict) else {}


def extract_checked(data: bytes, dest: Path, max_total: int, max_member: int,
                     max_jsonl: int = JSONL_MAX) -> str | None:
    """Extract the known members of a run zip into `dest`, enforcing every rule; returns the top folder."""
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as exc:
        raise LabError(f"not a zip file ({exc})") from None
    with zf:
        infos = zf.infolist()
        if len(infos) > len(RUN_FILES) + MAX_EPOCH_FILES + 1:
            raise LabError(f"{len(infos)} entries; a run zip holds at most {len(RUN_FILES) + MAX_EPOCH_FILES} files")
        targets = [(info, *member_target(info)) for info in infos]
        tops = {top for _, top, _ in targets}
        if len(tops) > 1:
            raise LabError("files must sit in one folder (or all at the top level)")
        files = [(info, fname) for info, _, fname in targets if fname]
        if len({f for _, f in files}) != len(files):
            raise LabError("duplicate file names")
        def limit(fname: str) -> tuple[int, str]:
            if fname in JSONL_FILES and max_jsonl < max_member:
                return max_jsonl, f"{max_jsonl}-byte limit for a log of this run's epochs and steps"
            return max_member, f"{max_member}-byte limit"

        for info, fname in files:
            if info.file_size > limit(fname)[0]:
                raise LabError(f"{fname} is {info.file_size} bytes, over the {limit(fname)[1]}")
        if sum(info.file_size for info, _ in files) > max_total:
            raise LabError(f"files total over the {max_total}-byte limit")
        total = 0
        for info, fname in files:
            size = 0
            # headers can lie: count what actually inflates
            cap, cap_text = limit(fname)
            with zf.open(info) as src, open(dest / fname, "xb") as out:
                while chunk := src.read(1 << 16):
                    size += len(chunk)
                    total += len(chunk)
                    if size > cap:
                        raise LabError(f"{fname} inflates past the {cap_text}")
                    if total > max_total:
                        raise LabError(f"files inflate past the {max_total}-byte limit")
                    out.write(chunk)
        return next(iter(tops)) if tops else None


def validate_extracted(folder: Path) -> dict:
    """Parse every file of an extracted run; returns config.json. LabError naming the bad file."""
    import torch

    if not (folder / "config.json").is_file():
        raise LabError("config.json is missing")
    cfg = read_json(folder / "config.json", where="")
    parent = cfg.get("parent")
    if parent is not None:
        if not isinstance(parent, dict):
            raise LabError("config.json parent must be {\"run_id\": ..., \"epoch\": ...} or null")
        try:
            validate_run_id(parent.get("run_id"))
        except InvalidRunId as exc:
            raise LabError(f"config.json parent.run_id: {exc}") from None
        epoch = parent.get("epoch")
        if not isinstance(epoch, int) or isinstance(epoch, bool) or not 0 <= epoch <= 1000:
            raise LabError(f"config.json parent.epoch must be an epoch number (0-1000), got {str(epoch)[:40]!r}")
    for name in ("meta.json", "status.json", "result.json"):
        if (folder / name).exists():
            read_json(folder / name, where="")
    for name in JSONL_FILES:
        path = folder / name
        if not path.exists():
            continue
        try:
            lines = path.read_bytes().split(b"\n")
        except OSError as exc:
            raise LabError(f"{name}: {exc}") from None
        for i, line in enumerate(lines[:-1]):  # a partial last line is tolerated, like the reader does
            try:
                ok = isinstance(json.loads(line), dict)
            except ValueError:
                ok = False
            if not ok:
                raise LabError(f"{name} line {i + 1} is not a JSON object")
    for name in (*PT_FILES, *sorted(p.name for p in folder.iterdir() if EPOCH_PT_RE.match(p.name))):
        path = folder / name
        if not path.exists():
            continue
        problem = pt_intact(path)
        if problem:
            raise LabError(problem)
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # the restricted unpickler refuses code; never retry unrestricted
            raise LabError(f"{name} is not a plain weights file ({load_error_cause(exc)})") from None
        if not isinstance(obj, dict):
            raise LabError(f"{name} holds a {type(obj).__name__}, expected a dict")
    return cfg


def finalize_import(folder: Path, rid: str, cfg: dict) -> None:
    """Stamp the new id into config.json, clean meta.json, and settle status.json for this machine."""
    original = cfg.get("id")
    cfg = {**cfg, "id": rid}
    if original != rid:
        cfg["imported_from"] = original
    atomic_write_json(folder / "config.json", cfg)
    meta = read_json(folder / "meta.json") if (folder / "meta.json").exists() else {}
    atomic_write_json(folder / "meta.json", {
        "name": clean_name(meta.get("name"), rid), "tags": clean_tags(meta.get("tags") or []),
        "notes": clean_notes(meta.get("notes"))})
    has_result = (folder / "result.json").exists()
    st = read_json(folder / "status.json") if (folder / "status.json").exists() else {
        "status": "done" if has_result else "stopped", "message": "imported without status.json"}
    if st.get("status") not in STATUSES or st.get("status") in ACTIVE:
        # the pid belongs to another machine or session: it must never look alive here
        st["message"] = f"imported while {st.get('status')!r}"
        st["status"] = "interrupted"
    st.update(pid=None, proc_start=None, updated=now_iso())
    atomic_write_json(folder / "status.json", st)
