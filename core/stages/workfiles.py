"""Names of the files stages exchange inside a job's work directory.

Layout of one run:  <run>/reference.npz, <run>/calibration.npz, <run>/reference.json
and one folder per attempt: <run>/<backend>--<environment>--<mode>/model.tflite, *.log.
"""

from __future__ import annotations

from pathlib import Path

REFERENCE_NPZ = "reference.npz"  # input_<i>: (V, ...) validation inputs; output_<j>: (V, ...) outputs
CALIBRATION_NPZ = "calibration.npz"  # input_<i>: (C, ...) calibration inputs
REFERENCE_JSON = "reference.json"  # shapes, dtypes, model hash, torch version
TFLITE = "model.tflite"
RESULT_JSON = "result.json"


def attempt_dir(run_dir: Path, backend: str, environment: str, mode: str) -> Path:
    return run_dir / f"{backend}--{environment}--{mode}"
