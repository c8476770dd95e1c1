"""The Engine: one conversion attempt, stage by stage, in warm workers.

reference (torch env) → [ONNX export] → convert (backend env) → [quantize] → validate (each
validator's env). Every stage failure becomes the attempt's status; nothing raises past
``Engine.attempt`` except a usage error and ``PoolClosed`` (the engine was closed meanwhile).

With ``reuse`` (the default) the modes of one model in one environment share what does not
depend on the mode: a ``shared_convert`` backend's convert stage runs once (its SavedModel is
quantized per mode), and every other backend's convert job gets ``options["shared_dir"]``, a
folder keyed by model, backend version, lock and options where it may keep such work itself.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from liteport import __version__
from liteport.errors import LiteportError
from liteport.pipeline.exports import OnnxExports, export_facts
from liteport.pipeline.pool import WorkerPool
from liteport.pipeline.runs import RunFolders, shared_dir, write_atomically
from liteport.plugins import PluginManager
from liteport.runtimes.base import Progress, Runtime
from liteport.runtimes.overlay import content_key
from liteport.stages import workfiles
from liteport.types import Attempt, BackendInfo, EnvironmentSpec, ErrorInfo, Job, ModelSpec, Result, evolve

DEFAULT_OPSET = 13  # onnx-tf cannot run the dynamo exporter's opset 18 / IR 10 (DESIGN.md)


@dataclass(frozen=True)
class StageTimeouts:
    reference: float = 900.0
    convert: float = 1800.0
    validate: float = 900.0


@dataclass
class Engine:
    """Runs attempts; owns the workers. Use as a context manager so workers are closed."""

    pm: PluginManager
    runtime: Runtime
    work_root: Path
    progress: Progress = lambda message: None
    timeouts: StageTimeouts = field(default_factory=StageTimeouts)
    cwd: str | None = None
    workers_per_env: int = 1  # a matrix with --jobs N may keep up to N warm workers per environment
    reuse: bool = True  # share mode-independent work between the modes of a model (module docstring)

    def __post_init__(self) -> None:
        say: Progress = lambda message: self.progress(message)  # noqa: E731 - progress may be replaced later
        self.pool = WorkerPool(
            runtime=self.runtime,
            logs_dir=self.work_root / "logs",
            progress=say,
            cwd=self.cwd,
            workers_per_env=self.workers_per_env,
        )
        self.runs = RunFolders(self.pool, self.work_root, timeout=self.timeouts.reference, progress=say)
        self.exports = OnnxExports(self.runs)
        self._code_key: str | None = None

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def closed(self) -> bool:
        return self.pool.closed

    def close(self) -> None:
        """Stop every worker, busy ones included (their attempts raise ``PoolClosed``)."""
        self.pool.close()

    def run_dir(self, model: ModelSpec) -> Path:
        return self.runs.run_dir(model)

    def code_key(self) -> str:
        """Hash of liteport's own code (as overlays are keyed): work shared by other code is not reused."""
        if self._code_key is None:
            try:
                self._code_key = content_key(["liteport"])
            except LiteportError:  # not an installed distribution: its version must do
                self._code_key = __version__
        return self._code_key

    def reference(self, model: ModelSpec) -> Result:
        return self.runs.reference(model)

    def export_onnx(self, model: ModelSpec, opset: int, exporter: str = "torchscript") -> Result:
        return self.runs.export_onnx(model, opset, exporter)

    def rewrite(self, model: ModelSpec, rewrites: Sequence[str]) -> Result:
        return self.runs.rewrite(model, rewrites)

    def attempt(
        self,
        model: ModelSpec,
        backend: BackendInfo,
        environment: EnvironmentSpec,
        mode: str,
        *,
        options: Mapping[str, Any] | None = None,
        thresholds: Mapping[str, Any] | None = None,
        variant: ModelSpec | None = None,
        rewrites: Sequence[str] = (),
    ) -> Attempt:
        """One attempt at ``model``; with ``variant`` (the model after ``rewrites``, a .pt2), the
        variant is exported and converted while the original's reference judges it."""
        options = dict(options or {})
        base = Attempt(
            model=model.ref,
            backend=backend.name,
            environment=environment.name,
            mode=mode,
            status="ok",
            runtime=self.runtime.name,
            options=options,
            rewrites=tuple(rewrites),
        )
        if not environment.offers(mode, backend.modes):
            offered = [m for m in backend.modes if environment.offers(m, backend.modes)]
            return evolve(
                base,
                status="unsupported",
                error=ErrorInfo(
                    kind="unsupported_mode",
                    message=f"{backend.name} in {environment.name} does not offer mode {mode} "
                    f"(it offers {', '.join(offered)})",
                ),
            )
        started = time.perf_counter()
        reference = self.reference(model)
        if not reference.ok:
            return _from_stage(base, reference, "reference", started)
        folder_key = {**options, "rewrites": list(rewrites)} if rewrites else options
        workdir = _fresh_attempt_dir(reference, backend, environment, mode, folder_key)
        shared_key = {**folder_key, "model": dataclasses.asdict(variant or model), "code": self.code_key()}
        steps = _AttemptSteps(
            self,
            evolve(base, workdir=str(workdir)),
            variant or model,
            backend,
            environment,
            reference,
            thresholds,
            shared_key if self.reuse else None,
        )
        attempt = steps.run()
        attempt = evolve(
            attempt, timings={**attempt.timings, "total_s": round(time.perf_counter() - started, 3)}
        )
        write_atomically(
            workdir / workfiles.RESULT_JSON, json.dumps(attempt.to_dict(), indent=2, default=str)
        )
        return attempt


class _AttemptSteps:
    """The steps after the reference, in order; each returns None to go on or the final Attempt."""

    def __init__(
        self,
        engine: Engine,
        attempt: Attempt,
        model: ModelSpec,
        backend: BackendInfo,
        environment: EnvironmentSpec,
        reference: Result,
        thresholds: Mapping[str, Any] | None,
        shared_key: Mapping[str, Any] | None,
    ) -> None:
        self.engine = engine
        self.attempt = attempt
        self.model = model
        self.backend = backend
        self.environment = environment
        self.reference = reference
        self.thresholds = thresholds
        self.workdir = Path(attempt.workdir or "")
        self.inputs = {
            "reference": reference.artifacts["reference"],
            "calibration": reference.artifacts["calibration"],
        }
        self.converted: Result | None = None
        self.shared_key = shared_key  # None: reuse is off, every mode converts from scratch

    def run(self) -> Attempt:
        for step in (self.export, self.convert, self.quantize, self.require_tflite):
            finished = step()
            if finished is not None:
                return finished
        self.validate()
        return self.attempt

    def export(self) -> Attempt | None:
        """ONNX for backends that convert from it, shared by every such backend."""
        if self.backend.needs != "onnx":
            return None
        # the environment's opsets in order of preference, the exporter's advice (pipeline/exports.py)
        exported = self.engine.exports.for_environment(self.model, self.environment, self.attempt.options)
        if not exported.ok:
            return _from_stage(self.attempt, exported, "export")
        self.inputs["onnx"] = exported.artifacts["onnx"]
        self.attempt = evolve(self.attempt, facts={**self.attempt.facts, **export_facts(exported)})
        return None

    def convert(self) -> Attempt | None:
        options: dict[str, Any] = {**self.attempt.options, **self.inputs}
        folder = self._shared_dir(options)
        if folder is not None and not self.backend.shared_convert:
            folder.mkdir(parents=True, exist_ok=True)  # so the docker runtime can mount it writable
            options["shared_dir"] = str(folder)
        job = self._job("convert", self.environment.name, options=options)
        if folder is not None and self.backend.shared_convert:
            converted = self.engine.runs.shared_convert(
                folder, self.environment, job, timeout=self.engine.timeouts.convert
            )
        else:
            self.engine.progress(f"convert with {self.backend.name} in {self.environment.name} ({job.mode})")
            converted = self._run(self.environment, job, self.engine.timeouts.convert, "convert.log")
        self.attempt = evolve(
            self.attempt,
            lock_hash=converted.lock_hash,
            versions=dict(converted.versions),
            facts={**self.reference.facts, **self.attempt.facts, **converted.facts},
            timings={**_prefixed(self.reference.timings, "reference"), **converted.timings},
        )
        self.converted = converted
        return None if converted.ok else _from_stage(self.attempt, converted, "convert")

    def quantize(self) -> Attempt | None:
        """A backend that returned a SavedModel hands it to its quantizer, in the same environment."""
        converted = self.converted
        assert converted is not None
        if "tflite" in converted.artifacts or not self.backend.quantizer:
            return None
        options = {
            **self.attempt.options,
            **self.inputs,
            **converted.artifacts,
            "facts": dict(converted.facts),
        }
        job = evolve(self._job("quantize", self.environment.name, options), quantizer=self.backend.quantizer)
        self.engine.progress(
            f"quantize with {self.backend.quantizer} in {self.environment.name} ({job.mode})"
        )
        quantized = self._run(self.environment, job, self.engine.timeouts.convert, "quantize.log")
        self.attempt = evolve(
            self.attempt,
            facts={**self.attempt.facts, **quantized.facts},
            timings={**self.attempt.timings, **quantized.timings},
        )
        if not quantized.ok:
            return _from_stage(self.attempt, quantized, "quantize")
        self.converted = quantized.replace(facts={**converted.facts, **quantized.facts})
        return None

    def require_tflite(self) -> Attempt | None:
        converted = self.converted
        assert converted is not None
        if "tflite" in converted.artifacts:
            self.attempt = evolve(self.attempt, tflite=converted.artifacts["tflite"])
            return None
        error = ErrorInfo(kind="converter_error", message=f"{self.backend.name} returned no .tflite")
        return _from_stage(self.attempt, converted.replace(status="failed", error=error), "convert")

    def validate(self) -> None:
        """Every validator that judges this mode, each in its own environment; the first failure decides."""
        converted = self.converted
        assert converted is not None
        validations: dict[str, str] = {}
        for validator in self.engine.pm.validators().values():
            if self.attempt.mode not in validator.modes:
                continue
            options = {
                "tflite": self.attempt.tflite,
                "reference": self.reference.artifacts["reference"],
                "input_layout": converted.facts.get("input_layout", "NCHW"),
                "output_layout": converted.facts.get("output_layout", "NCHW"),
                # names in PyTorch order, when the converter's tensor names do not sort that way
                **{k: converted.facts[k] for k in ("input_names", "output_names") if k in converted.facts},
                **({"thresholds": dict(self.thresholds)} if self.thresholds else {}),
            }
            job = evolve(self._job("validate", validator.environment.name, options), validator=validator.name)
            self.engine.progress(f"validate with {validator.name} in {validator.environment.name}")
            verdict = self._run(
                validator.environment, job, self.engine.timeouts.validate, f"validate-{validator.name}.log"
            )
            validations[validator.name] = verdict.status
            self.attempt = evolve(
                self.attempt,
                metrics={**self.attempt.metrics, **verdict.metrics},
                facts={**self.attempt.facts, **verdict.facts},
                timings={**self.attempt.timings, **verdict.timings},
                validations=dict(validations),
            )
            if not verdict.ok and self.attempt.status == "ok":
                # A validator that cannot run (or whose environment is missing) fails the attempt;
                # only a validator's own "invalid" verdict makes it invalid.
                status = "invalid" if verdict.status == "invalid" else "failed"
                if verdict.status in ("timeout", "crashed"):
                    status = verdict.status
                self.attempt = evolve(self.attempt, status=status, error=verdict.error)

    def _shared_dir(self, options: Mapping[str, Any]) -> Path | None:
        """The folder of this model's mode-independent work in this environment (None: reuse off)."""
        if self.shared_key is None:
            return None
        key = {**self.shared_key, "inputs": {k: v for k, v in options.items() if k in self.inputs}}
        return shared_dir(self.workdir.parent, self.backend, self.environment, key)

    def _job(self, kind: str, environment: str, options: Mapping[str, Any]) -> Job:
        return Job(
            kind=kind,
            id=uuid.uuid4().hex[:12],
            workdir=str(self.workdir),
            model=self.model,
            mode=self.attempt.mode,
            backend=self.backend.name,
            environment=environment,
            options=options,
        )

    def _run(self, environment: EnvironmentSpec, job: Job, timeout: float, log_name: str) -> Result:
        return self.engine.pool.run(environment, job, timeout=timeout, log=self.workdir / log_name)


def _fresh_attempt_dir(
    reference: Result,
    backend: BackendInfo,
    environment: EnvironmentSpec,
    mode: str,
    options: Mapping[str, Any],
) -> Path:
    """An empty folder for this attempt in the model's run folder (options hashed into its name)."""
    run_dir = Path(reference.artifacts["reference"]).parent
    suffix = (
        "-" + hashlib.sha256(json.dumps(options, sort_keys=True).encode()).hexdigest()[:8] if options else ""
    )
    workdir = workfiles.attempt_dir(run_dir, backend.name, environment.name, mode + suffix)
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    return workdir


def _from_stage(attempt: Attempt, result: Result, stage: str, started: float | None = None) -> Attempt:
    """The attempt ended by a failed stage: its status (a stage is never "invalid") and error."""
    status = "failed" if result.status in ("ok", "invalid") else result.status
    error = result.error or ErrorInfo(kind="worker_error", message=f"{stage} failed")
    timings = {**attempt.timings, **result.timings}
    if started is not None:
        timings["total_s"] = round(time.perf_counter() - started, 3)
    if error.log is None and result.log:
        error = evolve(error, log=result.log)
    return evolve(
        attempt,
        status=status,
        error=error,
        timings=timings,
        lock_hash=attempt.lock_hash or result.lock_hash,
        versions=attempt.versions or dict(result.versions),
    )


def _prefixed(timings: Mapping[str, float], stage: str) -> dict[str, float]:
    return {k if k.startswith(stage) else f"{stage}_{k}": v for k, v in timings.items()}
