"""Warm workers per environment: build (or reuse) an environment once, keep its workers alive.

A chain or a matrix pays each environment's imports once per worker, not once per stage. After
``close()`` every call raises ``PoolClosed``: the jobs of killed workers are not real results.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

from liteport.errors import LiteportError
from liteport.runtimes.base import EnvironmentHandle, Progress, Runtime, WorkerSession, stamp
from liteport.types import EnvironmentSpec, ErrorInfo, Job, Result, evolve


class PoolClosed(Exception):
    """The pool was closed (Ctrl-C, shutdown) while a job waited for or ran in a worker."""


@dataclass
class WorkerPool:
    """Up to ``workers_per_env`` long-lived workers per environment, handed out one job at a time."""

    runtime: Runtime
    logs_dir: Path
    progress: Progress = lambda message: None
    cwd: str | None = None
    workers_per_env: int = 1
    closed: bool = False
    _handles: dict[str, EnvironmentHandle | Result] = field(default_factory=dict)
    _building: dict[str, threading.Lock] = field(default_factory=dict)
    _pools: dict[str, list[WorkerSession]] = field(default_factory=dict)
    _idle: dict[str, list[WorkerSession]] = field(default_factory=dict)
    _cond: threading.Condition = field(default_factory=threading.Condition)

    def close(self) -> None:
        """Stop every worker, busy ones included; their callers get ``PoolClosed``."""
        with self._cond:
            self.closed = True
            sessions = [s for pool in self._pools.values() for s in pool]
            self._pools.clear()
            self._idle.clear()
            self._cond.notify_all()
        for session in sessions:
            session.close(kill=True)

    def handle(self, spec: EnvironmentSpec) -> EnvironmentHandle | Result:
        """The built environment, or an env_error Result saying why it could not be built."""
        with self._cond:
            lock = self._building.setdefault(spec.name, threading.Lock())
        with lock:
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
        """Run ``job`` in a warm worker of ``spec``; the result is stamped with its environment."""
        handle = self.handle(spec)
        if isinstance(handle, Result):
            return handle.replace(job_id=job.id, kind=job.kind)
        job = evolve(job, options={**job.options, "key_packages": list(spec.key_packages)})
        session = self._checkout(handle)
        try:
            result = session.run(job, timeout=timeout, log=log)
        finally:
            self._checkin(handle, session)
        if self.closed:
            raise PoolClosed  # the worker was killed under us: this result is not real
        # Only a log that exists is named (a job refused or killed before it began has none).
        return stamp(handle, result.replace(log=str(log) if log.is_file() else None))

    def _checkout(self, handle: EnvironmentHandle) -> WorkerSession:
        name = handle.spec.name
        with self._cond:
            while True:
                if self.closed:
                    raise PoolClosed
                idle = self._idle.setdefault(name, [])
                if idle:
                    return idle.pop()
                pool = self._pools.setdefault(name, [])
                if len(pool) < self.workers_per_env:
                    log = self.logs_dir / f"worker-{name}-{len(pool)}.log"
                    session = WorkerSession(handle, cwd=self.cwd, stderr_log=log)
                    pool.append(session)
                    return session
                self._cond.wait()

    def _checkin(self, handle: EnvironmentHandle, session: WorkerSession) -> None:
        with self._cond:
            if not self.closed:
                self._idle.setdefault(handle.spec.name, []).append(session)
            self._cond.notify_all()
