"""The run folder of a model: reference outputs and ONNX exports, made once and shared.

``<work>/runs/<model>-<key>/`` is keyed by everything that decides its contents (model hash,
reference lock, seed, sample counts). A stage's ``*.result.json`` marker is written atomically
and last, under a file lock, so two liteport processes (two terminals, two matrix shards) never
make the same files at once and never read a half-made folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Sequence
from pathlib import Path

from filelock import FileLock

from liteport.errors import LiteportError
from liteport.pipeline.pool import WorkerPool
from liteport.runtimes.base import Progress, lock_hash
from liteport.stages.environment import REFERENCE_ENV
from liteport.stages.modelref import model_hash, parse_ref
from liteport.types import ErrorInfo, Job, ModelSpec, Result


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

    def _once(self, run_dir: Path, stage: str, job: Job, message: str) -> Result:
        done = run_dir / f"{stage}.result.json"
        if done.exists():
            return _read_result(done)
        run_dir.mkdir(parents=True, exist_ok=True)
        with FileLock(str(run_dir / f".{stage}.lock")):
            if done.exists():  # another thread or process made it while we waited
                return _read_result(done)
            self.progress(message)
            result = self.pool.run(REFERENCE_ENV, job, timeout=self.timeout, log=run_dir / f"{stage}.log")
            if result.ok:
                write_atomically(done, json.dumps(result.to_dict(), indent=2))
            return result


def _read_result(path: Path) -> Result:
    return Result.from_dict(json.loads(path.read_text(encoding="utf-8")))


def _job_id() -> str:
    return uuid.uuid4().hex[:12]
