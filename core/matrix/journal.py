"""The JSONL journal of a matrix: one line per finished cell, appended and flushed at once.

An interrupted matrix resumes from it (cells whose key is already journaled are skipped), and
reports are rendered from it, so nothing finished is ever lost or redone.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from liteport.errors import BadInput


class Journal:
    """Append-only JSONL file, safe to append to from several threads of one process."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def append(self, entry: dict[str, Any]) -> None:
        line = json.dumps(
            {**entry, "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}, default=str
        )
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as out:
                out.write(line + "\n")
                out.flush()
                os.fsync(out.fileno())  # a crash right after must not lose a finished cell

    def entries(self) -> list[dict[str, Any]]:
        return list(read_entries([self.path])) if self.path.exists() else []

    def keys(self) -> set[str]:
        return {str(entry["key"]) for entry in self.entries()}


def read_entries(paths: Iterable[Path]) -> Iterator[dict[str, Any]]:
    """Every entry of the journals, in order; a torn last line (killed mid-write) is skipped."""
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
                    continue
                raise BadInput(
                    f"journal {path} line {number} is not JSON", hint="was it edited by hand?"
                ) from None
            if isinstance(entry, dict) and "key" in entry and "attempt" in entry:
                yield entry


def merge(paths: Iterable[Path]) -> list[dict[str, Any]]:
    """Entries of several journals (shards, resumed runs), one per cell key, later ones winning."""
    by_key: dict[str, dict[str, Any]] = {}
    for entry in read_entries(paths):
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
