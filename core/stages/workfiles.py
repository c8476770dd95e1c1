"""Names of the files stages exchange inside a job's work directory.

Layout of one run:  <run>/reference.npz, <run>/calibration.npz, <run>/reference.json
and one folder per attempt: <run>/<backend>--<environment>--<mode>/model.tflite, *.log.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

REFERENCE_NPZ = "reference.npz"  # input_<i>: (V, ...) validation inputs; output_<j>: (V, ...) outputs
CALIBRATION_NPZ = "calibration.npz"  # input_<i>: (C, ...) calibration inputs
REFERENCE_JSON = "reference.json"  # shapes, dtypes, model hash, torch version
TFLITE = "model.tflite"
RESULT_JSON = "result.json"


def attempt_dir(run_dir: Path, backend: str, environment: str, mode: str) -> Path:
    return run_dir / f"{backend}--{environment}--{mode}"


@contextlib.contextmanager
def written_atomically(path: Path) -> Iterator[Path]:
    """A temporary name beside ``path`` to write to, renamed onto ``path`` when the block succeeds.

    Run folders are shared by processes: a reader sees the whole file or none, never half of one.
    The temporary name is unique per writer and keeps the suffix (numpy.savez would add ``.npz``).
    """
    partial = path.with_name(f".{path.stem}.{os.getpid()}-{uuid.uuid4().hex[:8]}.partial{path.suffix}")
    try:
        yield partial
        os.replace(partial, path)
    finally:
        if partial.exists():  # the block failed: leave nothing behind
            partial.unlink()
