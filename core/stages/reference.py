"""The reference stage: run the PyTorch model on sample data and write what later stages compare to.

Runs in a worker inside the torch environment. Writes, in ``job.workdir``:
``reference.npz`` (``input_<i>``: (V, ...) validation inputs, ``output_<j>``: (V, ...) outputs),
``calibration.npz`` (``input_<i>``: (C, ...)) and ``reference.json`` (names, shapes, dtypes,
model hash, versions). Bad inputs raise ``BadInput``; the worker turns them into results.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from liteport.errors import BadInput, describe_exception
from liteport.stages import workfiles
from liteport.stages.modelref import (
    LoadedModel,
    load_model,
    model_hash,
)
from liteport.stages.qat_reference import write_int8_reference
from liteport.stages.tensors import flatten_outputs, load_input_samples
from liteport.types import Job, ModelSpec, Result

if TYPE_CHECKING:
    import numpy as np
    import torch


def _sample_like(example: torch.Tensor, count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` random samples shaped like ``example``: standard normal, or integers for id-like inputs."""
    import numpy as np

    base = example.detach().cpu().numpy()
    shape = (count, *base.shape)
    if base.dtype == np.bool_:
        return rng.integers(0, 2, size=shape).astype(np.bool_)
    integral = np.issubdtype(base.dtype, np.integer)
    # Integer-valued float examples (masks, ids stored as float) keep their value range, but a
    # constant float example (torch.zeros placeholder) says nothing about the data: use randn.
    if not integral and base.size and np.issubdtype(base.dtype, np.floating):
        finite = np.all(np.isfinite(base))
        integral = bool(finite and np.all(base == np.round(base)) and base.min() != base.max())
    if integral:
        low, high = (int(base.min()), int(base.max())) if base.size else (0, 0)
        return rng.integers(low, high + 1, size=shape).astype(base.dtype)
    if not np.issubdtype(base.dtype, np.floating):
        raise BadInput(
            f"example input of dtype {base.dtype} cannot be sampled",
            hint="use float, integer or bool example inputs, or give --inputs",
        )
    return rng.standard_normal(size=shape).astype(base.dtype)


def make_data(
    spec: ModelSpec, example_inputs: tuple[torch.Tensor, ...]
) -> tuple[list[np.ndarray], list[np.ndarray], str]:
    """Validation arrays (V, ...) and calibration arrays (C, ...) per input, and their source."""
    import numpy as np

    validation_size = max(1, spec.validation_size)
    calibration_size = max(1, spec.calibration_size)
    if spec.inputs:
        samples = load_input_samples(spec.inputs, example_inputs)
        total = samples[0].shape[0]
        val_idx = [i % total for i in range(validation_size)]
        # Calibration takes the samples after the validation ones; with too few it reuses them.
        rest = total - validation_size
        cal_idx = (
            [validation_size + i % rest for i in range(calibration_size)]
            if rest > 0
            else [i % total for i in range(calibration_size)]
        )
        return [s[val_idx] for s in samples], [s[cal_idx] for s in samples], "file"
    # Seed sequences [seed, 0] / [seed, 1] give independent streams for the two sets.
    val_rng = np.random.default_rng([spec.seed, 0])
    cal_rng = np.random.default_rng([spec.seed, 1])
    validation = []
    for example in example_inputs:
        drawn = _sample_like(example, validation_size, val_rng)
        drawn[0] = example.detach().cpu().numpy()  # sample 0 is the factory's own example
        validation.append(drawn)
    calibration = [_sample_like(example, calibration_size, cal_rng) for example in example_inputs]
    return validation, calibration, "random"


def _run(loaded: LoadedModel, validation: list[np.ndarray]) -> list[np.ndarray]:
    import numpy as np
    import torch

    per_sample: list[list[np.ndarray]] = []
    count = validation[0].shape[0]
    with torch.no_grad():
        for index in range(count):
            args = [torch.from_numpy(np.ascontiguousarray(array[index])) for array in validation]
            try:
                raw = loaded.module(*args)
            except Exception as exc:
                raise BadInput(
                    f"model {loaded.name!r} failed on validation sample {index}: {describe_exception(exc)}",
                    hint="check the example inputs / inputs file match what forward() expects",
                ) from exc
            outputs = flatten_outputs(raw)
            if not outputs:
                raise BadInput(
                    f"model {loaded.name!r} returned no tensors", hint="forward() must return tensors"
                )
            arrays = []
            for tensor in outputs:
                array = tensor.detach().cpu().numpy()
                # Reference outputs are float32 whatever the model computes in; ints/bools stay as they are.
                arrays.append(array.astype(np.float32) if np.issubdtype(array.dtype, np.floating) else array)
            if per_sample and [a.shape for a in arrays] != [a.shape for a in per_sample[0]]:
                raise BadInput(
                    f"model {loaded.name!r} output shapes change between samples "
                    f"({[a.shape for a in per_sample[0]]} vs {[a.shape for a in arrays]})",
                    hint="TFLite needs static output shapes",
                )
            per_sample.append(arrays)
    return [np.stack([sample[j] for sample in per_sample]) for j in range(len(per_sample[0]))]


def _tensor_info(prefix: str, arrays: list[np.ndarray]) -> list[dict[str, Any]]:
    # Shapes are per sample (without the leading sample axis): what the model itself sees.
    return [
        {"name": f"{prefix}_{i}", "shape": list(array.shape[1:]), "dtype": str(array.dtype)}
        for i, array in enumerate(arrays)
    ]


def run_reference(job: Job) -> Result:
    """Load the model, make validation/calibration data, run PyTorch and write the reference files."""
    import numpy as np
    import torch

    started = time.perf_counter()
    spec = job.model
    digest = model_hash(spec)
    loaded = load_model(spec)
    loaded_at = time.perf_counter()
    validation, calibration, source = make_data(spec, loaded.example_inputs)
    # Eager QAT models also get PyTorch's own int8 outputs and qparams (qparams validator),
    # converted before the float run, which would move observers that are still enabled.
    qat_artifacts, qat_facts = write_int8_reference(
        loaded.module, loaded.example_inputs, validation, Path(job.workdir)
    )
    outputs = _run(loaded, validation)
    ran_at = time.perf_counter()

    workdir = Path(job.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    reference_path = workdir / workfiles.REFERENCE_NPZ
    calibration_path = workdir / workfiles.CALIBRATION_NPZ
    json_path = workdir / workfiles.REFERENCE_JSON
    reference_arrays: dict[str, Any] = {f"input_{i}": a for i, a in enumerate(validation)}
    reference_arrays.update({f"output_{j}": a for j, a in enumerate(outputs)})
    calibration_arrays: dict[str, Any] = {f"input_{i}": a for i, a in enumerate(calibration)}
    with workfiles.written_atomically(reference_path) as partial:
        np.savez(partial, **reference_arrays)
    with workfiles.written_atomically(calibration_path) as partial:
        np.savez(partial, **calibration_arrays)

    floats = [a for a in outputs if np.issubdtype(a.dtype, np.floating) and a.size]
    max_abs = float(max(np.abs(a).max() for a in floats)) if floats else 0.0
    inputs_info = _tensor_info("input", validation)
    outputs_info = _tensor_info("output", outputs)
    versions = {"torch": str(torch.__version__), "numpy": str(np.__version__)}
    summary = {
        "ref": spec.ref,
        "name": loaded.name,
        "model_hash": digest,
        "inputs": inputs_info,
        "outputs": outputs_info,
        "data_source": source,
        "seed": spec.seed,
        "validation_size": int(validation[0].shape[0]),
        "calibration_size": int(calibration[0].shape[0]),
        "max_abs_reference": max_abs,
        "parameters": int(sum(p.numel() for p in loaded.module.parameters())),
        "torch_version": versions["torch"],
        "versions": versions,
    }
    with workfiles.written_atomically(json_path) as partial:
        partial.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    finished = time.perf_counter()
    return Result(
        status="ok",
        job_id=job.id,
        kind=job.kind,
        artifacts={
            "reference": str(reference_path),
            "calibration": str(calibration_path),
            "reference_json": str(json_path),
            **qat_artifacts,
        },
        facts={
            "inputs": inputs_info,
            "outputs": outputs_info,
            "model_hash": digest,
            "max_abs_reference": max_abs,
            "model_name": loaded.name,
            "data_source": source,
            "parameters": summary["parameters"],
            **qat_facts,
        },
        versions=versions,
        timings={
            "reference_s": finished - started,
            "load_s": loaded_at - started,
            "run_s": ran_at - loaded_at,
        },
    )
