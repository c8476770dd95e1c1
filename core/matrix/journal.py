"""The JSONL journal of a matrix: one line per finished cell, appended and flushed at once.

An interrupted matrix resumes from it (cells whose key is already journaled are skipped), and
reports are rendered from it, so nothing finished is ever lost or redone. A line torn by a kill
or a power cut mid-write is set aside in ``<journal>.torn`` before anything is appended, so it
never swallows the next entry.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from liteport.errors import BadInput

Warn = Callable[[str], None]


def warn_on_stderr(message: str) -> None:
    print(f"liteport: warning: {message}", file=sys.stderr, flush=True)


class Journal:
    """Append-only JSONL file, safe to append to from several threads of one process."""

    def __init__(self, path: Path, *, warn: Warn = warn_on_stderr) -> None:
        self.path = path
        self.warn = warn
        self._lock = threading.Lock()
        self._repaired = False

    def repair_tail(self) -> Path | None:
        """Move a torn last line (no newline) to ``<journal>.torn``; every complete line stays.

        Returns the side file when bytes were set aside. Done once per Journal, and before the
        first append in any case.
        """
        with self._lock:
            return self._repair_tail()

    def _repair_tail(self) -> Path | None:
        if self._repaired:
            return None
        self._repaired = True
        if not self.path.is_file():
            return None
        with open(self.path, "r+b") as journal:
            size = journal.seek(0, os.SEEK_END)
            if size == 0:
                return None
            journal.seek(max(0, size - 1))
            if journal.read(1) == b"\n":
                return None
            # Only the tail after the last newline can be torn: find where it starts.
            start, block = size, 1 << 16
            while start > 0:
                begin = max(0, start - block)
                journal.seek(begin)
                newline = journal.read(start - begin).rfind(b"\n")
                if newline >= 0:
                    start = begin + newline + 1
                    break
                start = begin
            journal.seek(start)
            tail = journal.read()
            if _complete_entry(tail):  # whole entry, only its newline is missing: keep it
                journal.seek(0, os.SEEK_END)
                journal.write(b"\n")
                journal.flush()
                os.fsync(journal.fileno())
                return None
            side = self.path.with_name(self.path.name + ".torn")
            with open(side, "ab") as aside:  # set aside first: a crash now loses nothing
                aside.write(tail + b"\n")
                aside.flush()
                os.fsync(aside.fileno())
            journal.truncate(start)
            journal.flush()
            os.fsync(journal.fileno())
        self.warn(
            f"journal {self.path} ended in a torn line ({len(tail)} bytes, cut off when a run was killed); "
            f"set aside in {side}, and its cell will run again"
        )
        return side

    def append(self, entry: dict[str, Any]) -> None:
        line = json.dumps(
            {**entry, "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}, default=str
        )
        with self._lock:
            self._repair_tail()  # never append onto a torn fragment: the entry would be lost in it
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as out:
                out.write(line + "\n")
                out.flush()
                os.fsync(out.fileno())  # a crash right after must not lose a finished cell

    def entries(self) -> list[dict[str, Any]]:
        return list(read_entries([self.path], warn=self.warn)) if self.path.exists() else []

    def keys(self) -> set[str]:
        return {str(entry["key"]) for entry in self.entries()}


def _complete_entry(raw: bytes) -> bool:
    try:
        entry = json.loads(raw.decode("utf-8"))
    except ValueError:  # JSONDecodeError and UnicodeDecodeError alike: a torn line
        return False
    return isinstance(entry, dict) and "key" in entry and "attempt" in entry


def read_entries(paths: Iterable[Path], *, warn: Warn = warn_on_stderr) -> Iterator[dict[str, Any]]:
    """Every entry of the journals, in order; a torn last line is skipped, with a warning."""
    for path in paths:
        if not path.is_file():
            raise BadInput(f"journal {path} does not exist", hint="pass the journal.jsonl a matrix wrote")
        lines = path.read_text(encoding="utf-8").splitlines()
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                if number == len(lines):
                    warn(
                        f"journal {path} line {number} is torn (a run was killed while writing it); "
                        "skipped, its cell is missing from this report"
                    )
                    continue
                raise BadInput(
                    f"journal {path} line {number} is not JSON", hint="was it edited by hand?"
                ) from None
            if isinstance(entry, dict) and "key" in entry and "attempt" in entry:
                yield entry


def merge(paths: Iterable[Path], *, warn: Warn = warn_on_stderr) -> list[dict[str, Any]]:
    """Entries of several journals (shards, resumed runs), one per cell key, later ones winning."""
    by_key: dict[str, dict[str, Any]] = {}
    for entry in read_entries(paths, warn=warn):
        by_key[str(entry["key"])] = entry
    return sorted(
        by_key.values(),
        key=lambda e: (
            e["cell"]["model"],
            e["cell"]["backend"],
            e["cell"]["environment"],
            e["cell"]["mode"],
            e["key"],
        ),
    )
