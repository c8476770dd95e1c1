"""What the modes of one model share in this backend: the float flatbuffer, in the run folder.

The engine gives a convert job ``options["shared_dir"]`` (absent with ``--no-reuse``): a folder
keyed by model, backend version, environment lock and options, so nothing kept under it is ever
stale. The matrix runs a model's modes on one environment back to back:

* nothing is kept in the worker's memory: measured on mobilenet_v2, PT2E calibration of a deep
  copy of a kept capture took 58 s against 16 s on a fresh one, and int8 after a kept (copied)
  model took 25-68 s against 14-16 s (same bytes out in every case), far more than the 3-5 s
  capture or 1-3 s load they save;
* the float32 flatbuffer is kept as ``<shared_dir>/fp32.tflite`` (written atomically: another
  process reads it whole or not at all; two makers write the same bytes): fp32 copies it, and
  fp16 and dynamic (litert-torch) are ai-edge-quantizer's recipes applied to exactly those bytes,
  which is what the converter does inside ``convert`` after making them.

Imported only inside the convert hook.
"""

from __future__ import annotations

import logging
import os
import uuid
from pathlib import Path

from liteport.api import Job

FLOAT_TFLITE = "fp32.tflite"


class SharedWork:
    """The mode-independent work of one (model, environment, lock, options)."""

    def __init__(self, folder: str) -> None:
        self.folder = Path(folder)
        self.reused: list[str] = []  # what this job took from earlier jobs, for the result's facts

    @classmethod
    def of(cls, job: Job) -> SharedWork | None:
        folder = job.options.get("shared_dir")
        return cls(str(folder)) if folder else None

    def float_flatbuffer(self) -> bytes | None:
        """The float32 .tflite an earlier job made for this folder, or None."""
        path = self.folder / FLOAT_TFLITE
        if not path.is_file():
            return None
        self.reused.append(FLOAT_TFLITE)
        return path.read_bytes()

    def keep_float_flatbuffer(self, data: bytes) -> bool:
        """Keep ``data`` for later modes; False when the folder cannot be written (a worker of an
        older docker runtime saw it read-only): reuse is an optimisation, never a failure."""
        partial = self.folder / f".{FLOAT_TFLITE}.{os.getpid()}-{uuid.uuid4().hex[:8]}.partial"
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            partial.write_bytes(data)
            os.replace(partial, self.folder / FLOAT_TFLITE)
        except OSError as exc:
            logging.getLogger(__name__).warning("not kept for later modes: %s", exc)
            if partial.parent.is_dir():
                partial.unlink(missing_ok=True)
            return False
        return True
