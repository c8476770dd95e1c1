"""In-container supervisor of the worker: ``python -m liteport.runtimes.docker_guard CMD...``.

The docker runtime starts every container with this guard in front of ``python -m
liteport.stages.worker``. It forwards the JSON-lines protocol unchanged and adds what a container
needs and a plain subprocess gets from its parent:

* **kill on detach**: when the host side goes away (the runtime killed it at a timeout),
  Docker closes the container's stdin; the guard then kills the worker, even one stuck in a
  job, so the container ends and ``--rm`` removes it. No host process has to survive a kill.
* **a reason for a crash**: a worker that dies during a job gets a ``crashed`` result naming
  the cause (the memory limit when the cgroup counted an OOM kill), and the next job starts
  a fresh worker in the same container.

Standard library only, Python 3.9+: it runs in every environment image.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

# Seconds a busy worker gets after the host went away before it is killed (an idle one exits at once).
DETACH_GRACE_S = 2.0
READY_TIMEOUT_S = 300.0

_OOM_FILES = (
    Path("/sys/fs/cgroup/memory/memory.oom_control"),  # cgroup v1: "oom_kill N"
    Path("/sys/fs/cgroup/memory.events"),  # cgroup v2: "oom_kill N"
)
_LIMIT_FILES = (Path("/sys/fs/cgroup/memory/memory.limit_in_bytes"), Path("/sys/fs/cgroup/memory.max"))


def oom_kills() -> int:
    """How many processes the kernel has OOM-killed in this container's memory cgroup."""
    for path in _OOM_FILES:
        try:
            for line in path.read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
        except (OSError, ValueError):
            continue
    return 0


def memory_limit() -> str:
    for path in _LIMIT_FILES:
        try:
            raw = path.read_text().strip()
        except OSError:
            continue
        if raw.isdigit() and int(raw) < 1 << 60:  # v1 reports "no limit" as a huge number
            return f"{int(raw) / 2**30:.1f} GiB"
    return "unknown"


def crash_reason(code: int, oom_before: int) -> str:
    """One line: why the worker died."""
    if oom_kills() > oom_before:
        return (
            f"out of memory: the container's memory limit ({memory_limit()}) was reached and the "
            "kernel killed the worker (raise it with LITEPORT_DOCKER_MEMORY)"
        )
    if code < 0:
        return f"killed by {signal.Signals(-code).name}"
    return f"exit code {code}"


class Guard:
    def __init__(self, command: list[str], stdin: IO[str], stdout: IO[str]) -> None:
        self.command = command
        self.stdin = stdin
        self.stdout = stdout
        self.jobs: queue.Queue[str | None] = queue.Queue()
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.child: subprocess.Popen[str] | None = None
        self.started_once = False

    # -- the worker --------------------------------------------------------------------------

    def start(self) -> bool:
        """Start a worker and wait for its ready line (forwarded only the first time)."""
        self.child = subprocess.Popen(
            self.command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, start_new_session=True
        )
        self.lines = queue.Queue()
        threading.Thread(target=_pump, args=(self.child.stdout, self.lines), daemon=True).start()
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                line = None
            if line is None:
                self.kill()
                return False
            message = _parse(line)
            if message is not None and message.get("event") == "ready":
                if not self.started_once:
                    message["guard"] = os.getpid()
                    self.send(message)
                self.started_once = True
                return True

    def kill(self) -> None:
        child = self.child
        if child is None:
            return
        try:
            os.killpg(child.pid, signal.SIGKILL)  # the worker's own children too
        except (ProcessLookupError, PermissionError):
            child.kill()
        child.wait()

    def send(self, message: dict[str, Any]) -> None:
        try:
            self.stdout.write(json.dumps(message) + "\n")
            self.stdout.flush()
        except (BrokenPipeError, OSError):
            pass  # the host is gone; nobody is listening

    # -- the loop ----------------------------------------------------------------------------

    def watch_stdin(self) -> None:
        """Feed job lines to the main loop; on EOF (host gone) kill a busy worker after a grace."""
        for line in self.stdin:
            self.jobs.put(line)
        self.jobs.put(None)
        child = self.child
        if child is not None and child.stdin is not None:
            with contextlib.suppress(OSError):
                child.stdin.close()  # an idle worker exits on its own
        time.sleep(DETACH_GRACE_S)
        if self.child is not None and self.child.poll() is None:
            self.kill()

    def run(self) -> int:
        if not self.start():
            code = self.child.returncode if self.child else 1
            return code if code and code > 0 else 1
        threading.Thread(target=self.watch_stdin, daemon=True).start()
        while True:
            line = self.jobs.get()
            if line is None:
                break
            if not line.strip():
                continue
            request = _parse(line) or {}
            job = request.get("job") or {}
            if (self.child is None or self.child.poll() is not None) and not self.start():
                self.send(_crashed(job, "the worker did not restart after a crash", "env_error"))
                continue
            child = self.child
            assert child is not None and child.stdin is not None
            oom_before = oom_kills()
            try:
                child.stdin.write(line if line.endswith("\n") else line + "\n")
                child.stdin.flush()
            except (BrokenPipeError, OSError):
                pass  # reported below from its exit status
            while True:
                out = self.lines.get()
                if out is None:
                    code = child.wait()
                    reason = crash_reason(code, oom_before)
                    self.send(_crashed(job, f"the worker died during {job.get('kind', 'a job')}: {reason}"))
                    self.child = None  # the next job starts a fresh worker
                    break
                message = _parse(out)
                if message is not None and message.get("event") == "result":
                    self.send(message)
                    break
        if self.child is not None:
            try:
                self.child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()
        return 0


def _crashed(job: dict[str, Any], message: str, kind: str = "crashed") -> dict[str, Any]:
    result = {
        "status": kind,
        "job_id": job.get("id", ""),
        "kind": job.get("kind", ""),
        "error": {"kind": kind, "message": message, "log": None, "detail": None},
    }
    return {"event": "result", "result": result}


def _parse(line: str) -> dict[str, Any] | None:
    try:
        message = json.loads(line)
    except ValueError:
        return None
    return message if isinstance(message, dict) else None


def _pump(stream: IO[str] | None, lines: queue.Queue[str | None]) -> None:
    assert stream is not None
    for line in stream:
        lines.put(line)
    lines.put(None)


def main(argv: list[str] | None = None) -> None:
    command = list(sys.argv[1:] if argv is None else argv)
    if not command:
        command = [sys.executable, "-m", "liteport.stages.worker"]
    sys.exit(Guard(command, sys.stdin, sys.stdout).run())


if __name__ == "__main__":
    main()
