"""The one reader of a run's records: every page, the CLI and the sweep view read runs through it.

A run's records are the step, health and epoch records of `metrics.jsonl` and the events of
`events.jsonl`. Readers follow them with `since(k) -> (records after index k, next k)`; readers never
consume, so any number of tabs can follow one run.

- `JsonlTail`: one growing JSONL file, read from a byte position: a poll reads only the bytes appended
  since the last one; a partial last line (a writer mid-write, or killed) waits for its newline; a file
  replaced or cut shorter (a resume's rewind) is read again from its start.
- `StoredRecords`: a run's two files as one list in emission order (events after their step's records),
  read incrementally; `generation` changes when the files were rewritten (indexes restart).
- `RunRecords`: a live job's records: prefilled from disk, appended in memory by the worker, read with
  `since(k)` or waited for with `wait(k)`. `close()` at the job's end drops the memory (the records are
  on disk by then) and reads fall back to the store through `stored(path)`, a small shared cache.
"""

from __future__ import annotations

import json
import os
import threading
from collections import OrderedDict
from pathlib import Path

STORED_CACHE = 32  # runs whose records stay parsed in memory for readers of finished runs


def merge_records(metrics: list[dict], events: list[dict]) -> list[dict]:
    """Step/epoch records and events of a stored run in emission order (events after their step's record)."""
    tagged = [(int(r.get("step") or 0), 0, i, r) for i, r in enumerate(metrics)]
    tagged += [(int(r.get("step") or 0), 1, i, r) for i, r in enumerate(events)]
    return [r for *_, r in sorted(tagged, key=lambda t: t[:3])]


class JsonlTail:
    """The complete JSON-object lines of one growing file, reading only what was appended since last time."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.offset = 0  # bytes consumed: the end of the last complete line read
        self.ino: int | None = None
        self.records: list[dict] = []

    def poll(self) -> tuple[list[dict], bool]:
        """(records appended since the last poll, whether the file was replaced or cut and read anew)."""
        try:
            f = open(self.path, "rb")
        except OSError:  # gone (a deleted run): nothing, and a later file starts from zero
            reset = bool(self.records) or self.offset > 0
            self.offset, self.ino, self.records = 0, None, []
            return [], reset
        new: list[dict] = []
        with f:
            st = os.fstat(f.fileno())  # of the file opened, even if it is replaced meanwhile
            reset = (self.ino is not None and st.st_ino != self.ino) or st.st_size < self.offset
            if reset:  # replaced (atomic rewrite) or truncated: start over
                self.offset, self.records = 0, []
            self.ino = st.st_ino
            f.seek(self.offset)
            for line in f:  # a line at a time: memory holds records, never the file's bytes
                if not line.endswith(b"\n"):  # a partial last line waits for its newline
                    break
                self.offset += len(line)
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue
                if isinstance(rec, dict):
                    new.append(rec)
        self.records.extend(new)
        return new, reset


class StoredRecords:
    """A stored run's records (metrics and events merged), followed incrementally; thread-safe."""

    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)
        self._metrics = JsonlTail(self.run_dir / "metrics.jsonl")
        self._events = JsonlTail(self.run_dir / "events.jsonl")
        self._merged: list[dict] = []
        self.generation = 0  # bumped when the files were rewritten: indexes from before mean nothing
        self._lock = threading.Lock()

    def refresh(self) -> None:
        """Read what the files gained since the last refresh."""
        with self._lock:
            self._refresh()

    def _refresh(self) -> None:
        new_m, reset_m = self._metrics.poll()
        new_e, reset_e = self._events.poll()
        if reset_m or reset_e:
            self.generation += 1
            self._merged = merge_records(self._metrics.records, self._events.records)
        elif new_m or new_e:
            self._merged.extend(merge_records(new_m, new_e))

    def since(self, k: int) -> tuple[list[dict], int]:
        """Records after index `k` (copies) and the index to ask from next time."""
        with self._lock:
            self._refresh()
            return [dict(r) for r in self._merged[max(0, k):]], len(self._merged)

    def metrics(self) -> list[dict]:
        """Every record of metrics.jsonl, in file order (the list is the reader's: do not change it)."""
        with self._lock:
            self._refresh()
            return list(self._metrics.records)

    def events(self) -> list[dict]:
        """Every record of events.jsonl, in file order."""
        with self._lock:
            self._refresh()
            return list(self._events.records)


_stored: "OrderedDict[str, StoredRecords]" = OrderedDict()
_stored_lock = threading.Lock()


def stored(run_dir: Path) -> StoredRecords:
    """The shared reader of a run folder's records (the `STORED_CACHE` most recently read runs stay parsed)."""
    key = str(Path(run_dir))
    with _stored_lock:
        reader = _stored.get(key)
        if reader is None:
            reader = _stored[key] = StoredRecords(Path(run_dir))
        _stored.move_to_end(key)
        while len(_stored) > STORED_CACHE:
            _stored.popitem(last=False)
        return reader


class RunRecords:
    """A live job's records: in memory while it trains, from the store once it has ended (`close`)."""

    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)
        self._recs: list[dict] = []
        self._closed = False
        self._cond = threading.Condition()

    def prefill(self) -> None:
        """Start from what the run's files hold (a resumed run continues its stored curve)."""
        self.extend(StoredRecords(self.run_dir).since(0)[0])  # not the shared cache: the job keeps them

    def append(self, rec: dict) -> None:
        """In the worker: one new record (readers waiting in `wait` wake up)."""
        self.extend([rec])

    def extend(self, recs: list[dict]) -> None:
        with self._cond:
            if self._closed:
                return
            self._recs.extend(recs)
            self._cond.notify_all()

    def close(self) -> None:
        """The job ended and its records are on disk: free the memory; readers go to the store from now on."""
        with self._cond:
            self._closed, self._recs = True, []
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def held(self) -> int:
        """How many records this object keeps in memory (none once the job has ended)."""
        with self._cond:
            return len(self._recs)

    def since(self, k: int) -> tuple[list[dict], int]:
        """Records after index `k` (copies) and the index to ask from next time."""
        with self._cond:
            if not self._closed:
                return [dict(r) for r in self._recs[max(0, k):]], len(self._recs)
        return stored(self.run_dir).since(k)

    def wait(self, k: int, timeout: float | None = None) -> bool:
        """Block until there are records after index `k` or the job ended (or `timeout` passed); True if so."""
        with self._cond:
            return self._cond.wait_for(lambda: self._closed or len(self._recs) > k, timeout)


def read_jsonl(path: Path, since: int = 0) -> list[dict]:
    """Records `since`.. of a JSONL file, read once in full; a partial last line (a writer mid-write or
    killed) is skipped. Indexes count complete, parseable object lines, so they are stable while it grows."""
    return JsonlTail(path).poll()[0][max(0, since):]
