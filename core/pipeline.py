"""One conversion, stage by stage: reference (torch env) → convert (backend env) → validate.

An ``Engine`` keeps one long-lived worker per environment, so a chain or a matrix pays each
environment's imports once. Every stage failure becomes an Attempt status; nothing raises
past ``Engine.attempt`` except a usage error.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from liteport import workfiles
from liteport.attempts import Attempt
from liteport.environments import REFERENCE_ENV
from liteport.errors import LiteportError
from liteport.plugins import PluginManager
from liteport.runtimes.base import EnvironmentHandle, Runtime, WorkerSession, lock_hash, stamp
from liteport.types import BackendInfo, EnvironmentSpec, ErrorInfo, Job, ModelSpec, Result, evolve

Progress = Callable[[str], None]


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
    closed: bool = False  # set by close(): results that arrive afterwards come from killed workers
    _handles: dict[str, EnvironmentHandle | Result] = field(default_factory=dict)
    _pools: dict[str, list[WorkerSession]] = field(default_factory=dict)
    _idle: dict[str, list[WorkerSession]] = field(default_factory=dict)
    _cond: threading.Condition = field(default_factory=threading.Condition)
    _key_locks: dict[str, threading.Lock] = field(default_factory=dict)

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop every worker, busy ones included (their jobs end as crashed and are discarded)."""
        with self._cond:
            self.closed = True
            sessions = [s for pool in self._pools.values() for s in pool]
            self._pools.clear()
            self._idle.clear()
            self._cond.notify_all()
        for session in sessions:
            session.close(kill=True)

    def _key_lock(self, key: str) -> threading.Lock:
        with self._cond:
            return self._key_locks.setdefault(key, threading.Lock())

    def _checkout(self, handle: EnvironmentHandle) -> WorkerSession:
        name = handle.spec.name
        with self._cond:
            while True:
                if self.closed:
                    raise KeyboardInterrupt
                idle = self._idle.setdefault(name, [])
                if idle:
                    return idle.pop()
                pool = self._pools.setdefault(name, [])
                if len(pool) < self.workers_per_env:
                    log = self.work_root / "logs" / f"worker-{name}-{len(pool)}.log"
                    session = WorkerSession(handle, cwd=self.cwd, stderr_log=log)
                    pool.append(session)
                    return session
                self._cond.wait()

    def _checkin(self, handle: EnvironmentHandle, session: WorkerSession) -> None:
        with self._cond:
            if not self.closed:
                self._idle.setdefault(handle.spec.name, []).append(session)
            self._cond.notify_all()

    # -- environments and workers ----------------------------------------------------------

    def handle(self, spec: EnvironmentSpec) -> EnvironmentHandle | Result:
        """The built environment, or an env_error Result saying why it could not be built."""
        with self._key_lock(f"env:{spec.name}"):
            if spec.name not in self._handles:
                try:
                    self._handles[spec.name] = self.runtime.ensure(spec, self.progress)
                except LiteportError as exc:
                    self._handles[spec.name] = Result(
                        status="env_error",
                        environment=spec.name,
                        error=ErrorInfo(kind="env_error", message=f"environment {spec.name}: {exc}"),
                    )
            return self._handles[spec.name]

    def run(self, spec: EnvironmentSpec, job: Job, *, timeout: float, log: Path) -> Result:
        handle = self.handle(spec)
        if isinstance(handle, Result):
            return handle.replace(job_id=job.id, kind=job.kind)
        job = _with_options(job, key_packages=list(spec.key_packages))
        session = self._checkout(handle)
        try:
            result = session.run(job, timeout=timeout, log=log)
        finally:
            self._checkin(handle, session)
        if self.closed:
            raise KeyboardInterrupt  # the worker was killed under us: this result is not real
        return stamp(handle, result.replace(log=str(log)))

    # -- stages ----------------------------------------------------------------------------

    def run_dir(self, model: ModelSpec) -> Path:
        from liteport.modelref import model_hash, parse_ref  # torch-free

        inputs = [
            model_hash(model),
            lock_hash(REFERENCE_ENV),
            model.seed,
            model.calibration_size,
            model.validation_size,
        ]
        key = hashlib.sha256(json.dumps(inputs).encode()).hexdigest()[:12]
        name = parse_ref(model.ref).name.replace(":", "-")
        slug = "".join(c if c.isalnum() or c in "-_" else "_" for c in name)[:40]
        return self.work_root / "runs" / f"{slug}-{key}"

    def reference(self, model: ModelSpec) -> Result:
        """Reference inputs and outputs for ``model``; reused when already made for the same inputs."""
        try:
            run_dir = self.run_dir(model)
        except LiteportError as exc:
            return Result(status="failed", kind="reference", error=ErrorInfo(kind=exc.kind, message=str(exc)))
        with self._key_lock(f"reference:{run_dir}"):
            return self._reference(model, run_dir)

    def _reference(self, model: ModelSpec, run_dir: Path) -> Result:
        done = run_dir / "reference.result.json"
        if done.exists():
            return Result.from_dict(json.loads(done.read_text(encoding="utf-8")))
        run_dir.mkdir(parents=True, exist_ok=True)
        job = Job(
            kind="reference", id=_job_id(), workdir=str(run_dir), model=model, environment=REFERENCE_ENV.name
        )
        self.progress(f"reference outputs from PyTorch ({REFERENCE_ENV.name})")
        result = self.run(REFERENCE_ENV, job, timeout=self.timeouts.reference, log=run_dir / "reference.log")
        if result.ok:
            done.write_text(json.dumps(result.to_dict(), indent=2), encoding="utf-8")
        return result

    def export_onnx(self, model: ModelSpec, opset: int) -> Result:
        """The model as ONNX (legacy exporter), exported once per run and reused by every backend."""
        run_dir = self.run_dir(model)
        with self._key_lock(f"export:{run_dir}:{opset}"):
            return self._export_onnx(model, opset, run_dir)

    def _export_onnx(self, model: ModelSpec, opset: int, run_dir: Path) -> Result:
        done = run_dir / f"export-opset{opset}.result.json"
        if done.exists():
            return Result.from_dict(json.loads(done.read_text(encoding="utf-8")))
        job = Job(
            kind="export",
            id=_job_id(),
            workdir=str(run_dir),
            model=model,
            environment=REFERENCE_ENV.name,
            options={"opset": opset},
        )
        self.progress(f"export ONNX opset {opset} ({REFERENCE_ENV.name})")
        result = self.run(
            REFERENCE_ENV, job, timeout=self.timeouts.reference, log=run_dir / f"export-opset{opset}.log"
        )
        if result.ok:
            done.write_text(json.dumps(result.to_dict(), indent=2), encoding="utf-8")
        return result

    def attempt(
        self,
        model: ModelSpec,
        backend: BackendInfo,
        environment: EnvironmentSpec,
        mode: str,
        *,
        options: Mapping[str, Any] | None = None,
        thresholds: Mapping[str, Any] | None = None,
    ) -> Attempt:
        options = dict(options or {})
        base = Attempt(
            model=model.ref,
            backend=backend.name,
            environment=environment.name,
            mode=mode,
            status="ok",
            runtime=self.runtime.name,
            options=options,
        )
        if not environment.offers(mode, backend.modes):
            offered = [m for m in backend.modes if environment.offers(m, backend.modes)]
            return _replace(
                base,
                status="unsupported",
                error=ErrorInfo(
                    kind="unsupported",
                    message=f"{backend.name} in {environment.name} does not offer mode {mode} "
                    f"(it offers {', '.join(offered)})",
                ),
            )
        started = time.perf_counter()
        reference = self.reference(model)
        if not reference.ok:
            return _from_stage(base, reference, "reference", started)
        run_dir = Path(reference.artifacts["reference"]).parent
        suffix = (
            "-" + hashlib.sha256(json.dumps(options, sort_keys=True).encode()).hexdigest()[:8]
            if options
            else ""
        )
        workdir = workfiles.attempt_dir(run_dir, backend.name, environment.name, mode + suffix)
        shutil.rmtree(workdir, ignore_errors=True)
        workdir.mkdir(parents=True)
        base = _replace(base, workdir=str(workdir))
        attempt = self._convert_and_validate(
            base, model, backend, environment, reference, options, thresholds
        )
        attempt = _replace(
            attempt, timings={**attempt.timings, "total_s": round(time.perf_counter() - started, 3)}
        )
        (workdir / workfiles.RESULT_JSON).write_text(
            json.dumps(attempt.to_dict(), indent=2, default=str), encoding="utf-8"
        )
        return attempt

    def _convert_and_validate(
        self,
        base: Attempt,
        model: ModelSpec,
        backend: BackendInfo,
        environment: EnvironmentSpec,
        reference: Result,
        options: Mapping[str, Any],
        thresholds: Mapping[str, Any] | None,
    ) -> Attempt:
        workdir = Path(base.workdir or "")
        mode = base.mode
        stage_inputs = {
            "reference": reference.artifacts["reference"],
            "calibration": reference.artifacts["calibration"],
        }
        if backend.needs == "onnx":
            exported = self.export_onnx(model, int(options.get("opset", DEFAULT_OPSET)))
            if not exported.ok:
                return _from_stage(base, exported, "export")
            stage_inputs["onnx"] = exported.artifacts["onnx"]

        convert_job = Job(
            kind="convert",
            id=_job_id(),
            workdir=str(workdir),
            model=model,
            mode=mode,
            backend=backend.name,
            environment=environment.name,
            options={**options, **stage_inputs},
        )
        self.progress(f"convert with {backend.name} in {environment.name} ({mode})")
        converted = self.run(
            environment, convert_job, timeout=self.timeouts.convert, log=workdir / "convert.log"
        )
        attempt = _replace(
            base,
            lock_hash=converted.lock_hash,
            versions=dict(converted.versions),
            facts={**reference.facts, **converted.facts},
            timings={**_prefixed(reference.timings, "reference"), **converted.timings},
        )
        if not converted.ok:
            return _from_stage(attempt, converted, "convert")
        if "tflite" not in converted.artifacts and backend.quantizer:
            quantize_job = evolve(
                convert_job,
                kind="quantize",
                id=_job_id(),
                quantizer=backend.quantizer,
                options={**convert_job.options, **converted.artifacts, "facts": dict(converted.facts)},
            )
            self.progress(f"quantize with {backend.quantizer} in {environment.name} ({mode})")
            quantized = self.run(
                environment, quantize_job, timeout=self.timeouts.convert, log=workdir / "quantize.log"
            )
            attempt = _replace(
                attempt,
                facts={**attempt.facts, **quantized.facts},
                timings={**attempt.timings, **quantized.timings},
            )
            if not quantized.ok:
                return _from_stage(attempt, quantized, "quantize")
            converted = quantized.replace(facts={**converted.facts, **quantized.facts})
        if "tflite" not in converted.artifacts:
            return _from_stage(
                attempt,
                converted.replace(
                    status="failed",
                    error=ErrorInfo(kind="converter_error", message=f"{backend.name} returned no .tflite"),
                ),
                "convert",
            )
        tflite = converted.artifacts["tflite"]
        attempt = _replace(attempt, tflite=tflite)

        validations: dict[str, str] = {}
        for validator in self.pm.validators().values():
            if mode not in validator.modes:
                continue
            job = Job(
                kind="validate",
                id=_job_id(),
                workdir=str(workdir),
                model=model,
                mode=mode,
                backend=backend.name,
                environment=validator.environment.name,
                validator=validator.name,
                options={
                    "tflite": tflite,
                    "reference": reference.artifacts["reference"],
                    "input_layout": converted.facts.get("input_layout", "NCHW"),
                    "output_layout": converted.facts.get("output_layout", "NCHW"),
                    # names in PyTorch order, when the converter's tensor names do not sort that way
                    **{
                        k: converted.facts[k] for k in ("input_names", "output_names") if k in converted.facts
                    },
                    **({"thresholds": dict(thresholds)} if thresholds else {}),
                },
            )
            self.progress(f"validate with {validator.name} in {validator.environment.name}")
            verdict = self.run(
                validator.environment,
                job,
                timeout=self.timeouts.validate,
                log=workdir / f"validate-{validator.name}.log",
            )
            validations[validator.name] = verdict.status
            attempt = _replace(
                attempt,
                metrics={**attempt.metrics, **verdict.metrics},
                facts={**attempt.facts, **verdict.facts},
                timings={**attempt.timings, **verdict.timings},
                validations=validations,
            )
            if not verdict.ok and attempt.status == "ok":
                status = "invalid" if verdict.status == "invalid" else verdict.status
                if status == "env_error" or verdict.status == "failed":
                    status = "failed"
                attempt = _replace(attempt, status=status, error=verdict.error)
        return attempt


def _from_stage(attempt: Attempt, result: Result, stage: str, started: float | None = None) -> Attempt:
    status = result.status if result.status != "ok" else "failed"
    if status == "invalid":
        status = "failed"
    error = result.error or ErrorInfo(kind="worker_error", message=f"{stage} failed")
    timings = {**attempt.timings, **result.timings}
    if started is not None:
        timings["total_s"] = round(time.perf_counter() - started, 3)
    if error.log is None and result.log:
        error = ErrorInfo(kind=error.kind, message=error.message, log=result.log, detail=error.detail)
    return _replace(
        attempt,
        status=status,
        error=error,
        timings=timings,
        lock_hash=attempt.lock_hash or result.lock_hash,
        versions=attempt.versions or dict(result.versions),
    )


def _replace(attempt: Attempt, **changes: Any) -> Attempt:
    return evolve(attempt, **changes)


def _prefixed(timings: Mapping[str, float], stage: str) -> dict[str, float]:
    return {k if k.startswith(stage) else f"{stage}_{k}": v for k, v in timings.items()}


def _with_options(job: Job, **extra: Any) -> Job:
    return evolve(job, options={**job.options, **extra})


def _job_id() -> str:
    return uuid.uuid4().hex[:12]
