"""What every runtime offers: materialise an environment, and run jobs in a long-lived worker."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Callable, Protocol

from liteport.types import EnvironmentSpec, ErrorInfo, ErrorKind, Job, Result, Status

Progress = Callable[[str], None]

# A worker that has not said "ready" by then is broken (converter imports take seconds, not minutes).
READY_TIMEOUT_S = 300.0


@dataclass(frozen=True)
class EnvironmentHandle:
    """A materialised environment: how to start a worker in it, and its provenance."""

    spec: EnvironmentSpec
    argv: tuple[str, ...]  # command that starts ``python -m liteport.stages.worker``
    lock_hash: str
    location: str  # venv path, image id, or "current interpreter"
    env: Mapping[str, str] | None = None  # environment variables for the worker


class Runtime(Protocol):
    name: str

    def ensure(self, spec: EnvironmentSpec, progress: Progress) -> EnvironmentHandle:
        """Build ``spec`` if needed (or reuse it) and return how to run a worker in it."""
        ...

    def status(self, spec: EnvironmentSpec) -> str:
        """ "built", "missing" or "stale" without building anything."""
        ...


class WorkerSession:
    """One long-lived worker process; restarted after a timeout or a crash."""

    def __init__(self, handle: EnvironmentHandle, *, cwd: str | None = None, stderr_log: Path | None = None):
        self.handle = handle
        self.cwd = cwd
        self.stderr_log = stderr_log
        self._proc: subprocess.Popen[str] | None = None
        self._lines: queue.Queue[str | None] = queue.Queue()
        self.ready_info: dict[str, Any] = {}
        self.jobs_run = 0
        self.starts = 0

    # -- lifecycle ---------------------------------------------------------------------------

    def _start(self) -> None:
        env = dict(os.environ)
        env.update(self.handle.env or {})
        env["PYTHONUNBUFFERED"] = "1"
        stderr: IO[str] | int = subprocess.DEVNULL
        if self.stderr_log is not None:
            self.stderr_log.parent.mkdir(parents=True, exist_ok=True)
            stderr = open(self.stderr_log, "a", encoding="utf-8")  # noqa: SIM115 - owned by the child
        self._proc = subprocess.Popen(
            list(self.handle.argv),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            cwd=self.cwd,
            env=env,
            start_new_session=True,  # so a kill takes the worker's children too
        )
        if not isinstance(stderr, int):
            stderr.close()
        self._lines = queue.Queue()
        threading.Thread(target=pump_lines, args=(self._proc.stdout, self._lines), daemon=True).start()
        self.starts += 1
        message, _ = self._read(READY_TIMEOUT_S)
        if message is None or message.get("event") != "ready":
            code = self._kill()
            raise WorkerStartError(
                f"the worker in environment {self.handle.spec.name!r} did not start "
                f"(exit {code}); see {self.stderr_log or 'its stderr'}"
            )
        self.ready_info = message

    def close(self, *, kill: bool = False) -> None:
        """End the worker: politely (stdin closed) or, with ``kill``, at once."""
        proc = self._proc
        if proc is None:
            return
        self._proc = None
        if kill:
            _kill_group(proc)
            return
        if proc.stdin:
            with contextlib.suppress(OSError):
                proc.stdin.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            _kill_group(proc)

    def _kill(self) -> int | None:
        proc, self._proc = self._proc, None
        if proc is None:
            return None
        _kill_group(proc)
        return proc.returncode

    # -- jobs --------------------------------------------------------------------------------

    def run(self, job: Job, *, timeout: float | None, log: Path | None) -> Result:
        """Run ``job``; a hang becomes ``timeout``, a dead worker ``crashed``. Never raises for those."""
        try:
            if self._proc is None or self._proc.poll() is not None:
                self._start()
        except WorkerStartError as exc:
            return _host_failure(job, "env_error", "env_error", str(exc))
        proc = self._proc
        assert proc is not None and proc.stdin is not None
        request = {"job": job.to_dict(), "log": str(log) if log else None}
        started = time.perf_counter()
        try:
            proc.stdin.write(json.dumps(request) + "\n")
            proc.stdin.flush()
        except (BrokenPipeError, OSError):
            pass  # the read below reports how it died
        message, ended = self._read(timeout)
        elapsed = time.perf_counter() - started
        self.jobs_run += 1
        if message is not None and message.get("event") == "result":
            return Result.from_dict(message["result"])
        if not ended:
            self._kill()
            return _host_failure(
                job,
                "timeout",
                "timeout",
                f"{job.kind} did not finish within {timeout:.0f} s; the worker was killed",
                elapsed,
            )
        code = proc.wait()
        self._proc = None
        return _host_failure(
            job, "crashed", "crashed", f"the worker died during {job.kind}: {describe_exit(code)}", elapsed
        )

    def _read(self, timeout: float | None) -> tuple[dict[str, Any] | None, bool]:
        """The next protocol message, and whether the worker's stdout has ended."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                line = self._lines.get(timeout=remaining)
            except queue.Empty:
                return None, False
            if line is None:  # EOF: the worker exited
                return None, True
            try:
                message: dict[str, Any] = json.loads(line)
                return message, False
            except json.JSONDecodeError:
                continue  # not protocol; should not happen since stdout is redirected


class WorkerStartError(RuntimeError):
    pass


def pump_lines(stream: IO[str] | None, lines: queue.Queue[str | None]) -> None:
    """Copy a child's stdout into ``lines`` line by line; ``None`` marks its end."""
    assert stream is not None
    for line in stream:
        lines.put(line)
    lines.put(None)


def _kill_group(proc: subprocess.Popen[str]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        proc.kill()
    proc.wait()


def describe_exit(code: int | None) -> str:
    if code is None:
        return "unknown exit"
    if code < 0:
        # Only the kernel or the container engine can say a kill was out of memory; the docker
        # runtime asks the engine. A bare SIGKILL may be the OOM killer, a user or a supervisor.
        return f"killed by {signal.Signals(-code).name}"
    return f"exit code {code}"


def _host_failure(
    job: Job, status: Status, kind: ErrorKind, message: str, elapsed: float | None = None
) -> Result:
    timings = {f"{job.kind}_s": round(elapsed, 4)} if elapsed is not None else {}
    return Result(
        status=status,
        job_id=job.id,
        kind=job.kind,
        error=ErrorInfo(kind=kind, message=message),
        timings=timings,
    )


def worker_argv(python: str) -> tuple[str, ...]:
    return (python, "-m", "liteport.stages.worker")


def stamp(handle: EnvironmentHandle, result: Result) -> Result:
    """Record which environment produced ``result``."""
    return result.replace(environment=handle.spec.name, lock_hash=handle.lock_hash)


def lock_hash(spec: EnvironmentSpec) -> str:
    """Hash of what defines an environment: the lock's pins, the Python version, the install mode."""
    import hashlib

    pins = sorted(
        line.strip()
        for line in Path(spec.lock).read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    )
    text = "\n".join([f"python={spec.python}", f"no_deps={spec.no_deps}", *pins])
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def read_lock(spec: EnvironmentSpec) -> Sequence[str]:
    return [
        line.strip()
        for line in Path(spec.lock).read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]
