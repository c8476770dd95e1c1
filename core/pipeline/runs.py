"""The run folder of a model: reference outputs, ONNX exports and mode-independent conversions,
made once and shared.

``<work>/runs/<model>-<key>/`` is keyed by everything that decides its contents (model hash,
reference lock, seed, sample counts). A stage's ``*.result.json`` marker is written atomically
and last, under a file lock, so two liteport processes (two terminals, two matrix shards) never
make the same files at once and never read a half-made folder.

``<run>/shared/<backend>--<environment>--<key>/`` holds what one backend makes the same way for
every mode (onnx-tf's SavedModel; ai-edge-torch's float flatbuffer), keyed by the backend's
version, the environment's lock and the attempt's options, so a changed lock or option never
meets a stale artifact (``shared_dir``).
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from filelock import FileLock

from liteport.errors import LiteportError
from liteport.pipeline.pool import WorkerPool
from liteport.runtimes.base import Progress, lock_hash
from liteport.stages.environment import REFERENCE_ENV
from liteport.stages.modelref import model_hash, parse_ref
from liteport.types import BackendInfo, EnvironmentSpec, ErrorInfo, Job, ModelSpec, Result, evolve

SHARED_CONVERT = "convert"  # the stage name of a shared conversion inside its shared folder


def write_atomically(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` in one step: readers see the old file or the new one, whole."""
    partial = path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:6]}.partial")
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, path)


class RunFolders:
    """Makes (or reuses) each model's reference outputs and ONNX exports in its run folder."""

    def __init__(self, pool: WorkerPool, work_root: Path, *, timeout: float, progress: Progress) -> None:
        self.pool = pool
        self.work_root = work_root
        self.timeout = timeout
        self.progress = progress

    def run_dir(self, model: ModelSpec) -> Path:
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
        return self._once(
            run_dir,
            "reference",
            Job(
                kind="reference",
                id=_job_id(),
                workdir=str(run_dir),
                model=model,
                environment=REFERENCE_ENV.name,
            ),
            f"reference outputs from PyTorch ({REFERENCE_ENV.name})",
        )

    def export_onnx(self, model: ModelSpec, opset: int, exporter: str = "torchscript") -> Result:
        """The model as ONNX, exported once per run folder, opset and exporter (torchscript | dynamo)."""
        run_dir = self.run_dir(model)
        job = Job(
            kind="export",
            id=_job_id(),
            workdir=str(run_dir),
            model=model,
            environment=REFERENCE_ENV.name,
            options={"opset": opset, "exporter": exporter},
        )
        stage = f"export-opset{opset}" + ("" if exporter == "torchscript" else f"-{exporter}")
        return self._once(
            run_dir, stage, job, f"export ONNX opset {opset}, {exporter} ({REFERENCE_ENV.name})"
        )

    def rewrite(self, model: ModelSpec, rewrites: Sequence[str]) -> Result:
        """The model with ``rewrites`` applied, as a .pt2 in its run folder (made once per set)."""
        run_dir = self.run_dir(model)
        job = Job(
            kind="rewrite",
            id=_job_id(),
            workdir=str(run_dir / "rewrites"),
            model=model,
            environment=REFERENCE_ENV.name,
            options={"rewrites": list(rewrites)},
        )
        stage = "rewrite-" + "+".join(rewrites)
        return self._once(run_dir, stage, job, f"rewrite {', '.join(rewrites)} ({REFERENCE_ENV.name})")

    def shared_convert(
        self, folder: Path, environment: EnvironmentSpec, job: Job, *, timeout: float
    ) -> Result:
        """The convert stage of a backend whose output is the same for every mode, made once in
        ``folder`` (see ``shared_dir``) and reused; a reused result carries ``facts["reused"]``."""
        job = evolve(job, workdir=str(folder))
        message = f"convert with {job.backend} in {environment.name} (shared by every mode)"
        result, made = self._made_once(folder, SHARED_CONVERT, job, message, environment, timeout)
        if made or not result.ok:
            return result
        # Made by an earlier attempt: its timings are not this attempt's work.
        return result.replace(timings={}, facts={**result.facts, "reused": [SHARED_CONVERT]})

    def _once(self, run_dir: Path, stage: str, job: Job, message: str) -> Result:
        return self._made_once(run_dir, stage, job, message, REFERENCE_ENV, self.timeout)[0]

    def _made_once(
        self,
        folder: Path,
        stage: str,
        job: Job,
        message: str,
        environment: EnvironmentSpec,
        timeout: float,
    ) -> tuple[Result, bool]:
        """``stage``'s result in ``folder`` and whether this call made it (False: it was there)."""
        done = folder / f"{stage}.result.json"
        if done.exists():
            return _read_result(done), False
        folder.mkdir(parents=True, exist_ok=True)
        with FileLock(str(folder / f".{stage}.lock")):
            if done.exists():  # another thread or process made it while we waited
                return _read_result(done), False
            self.progress(message)
            result = self.pool.run(environment, job, timeout=timeout, log=folder / f"{stage}.log")
            if result.ok:
                write_atomically(done, json.dumps(result.to_dict(), indent=2))
            return result, True


def shared_dir(
    run_dir: Path,
    backend: BackendInfo,
    environment: EnvironmentSpec,
    key: Mapping[str, Any],
) -> Path:
    """Where ``backend`` keeps mode-independent work for one model (``run_dir``) in ``environment``.

    Keyed by the backend's version, the environment's lock hash and ``key`` (the attempt's
    options, rewrites and input files): any change gives a new folder, never a stale artifact.
    """
    parts = [backend.name, backend.version, environment.name, lock_hash(environment), dict(key)]
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:12]
    return run_dir / "shared" / f"{backend.name}--{environment.name}--{digest}"


def _read_result(path: Path) -> Result:
    return Result.from_dict(json.loads(path.read_text(encoding="utf-8")))


def _job_id() -> str:
    return uuid.uuid4().hex[:12]
