# Over 400 lines on purpose: one runtime whose container flags, mounts and worker I/O change together.
"""The docker runtime: every environment is an image, every worker a locked-down container.

``ensure`` builds ``liteport/<env>:<lockhash>`` with the Docker SDK when it is missing or was
built from another liteport source (see liteport.runtimes.images). The handle's argv starts a small
host-side launcher, ``python -m liteport.runtimes.docker``, which speaks the same JSON-lines
protocol as a worker, so the core's WorkerSession (timeouts, restarts) is used unchanged:

* the launcher runs ``docker run -i --rm --network none --read-only ...`` and relays lines;
  it starts the container at the first job, because only jobs say which host folders they
  need: the job's work folder (its parent, i.e. the run folder holding every attempt, is
  mounted writable so later jobs reuse the container) and, read-only, the model's folder,
  weights and inputs files, the working directory for module refs, and PYTHONPATH entries.
  A job needing a folder the running container lacks restarts it with one more mount.
* inside, docker_guard supervises the worker: a timeout kills the launcher and its ``docker
  run`` client, Docker closes the container's stdin, and the guard kills the worker, so the
  container ends and ``--rm`` removes it; an OOM kill comes back as ``crashed`` with the reason.
* every result carries the image ID (``versions["image"]`` and ``facts["image_<stage>"]``).

Limits: ``LITEPORT_DOCKER_MEMORY`` (default 4g, swap off), ``LITEPORT_DOCKER_PIDS`` (1024),
``LITEPORT_DOCKER_CPUS`` (unset: all). ``DOCKER_HOST`` selects the engine, as for the docker CLI.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import queue
import shutil
import subprocess
import sys
import threading
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from liteport.errors import EnvironmentBuildError
from liteport.runtimes.base import EnvironmentHandle, Progress, lock_hash, pump_lines
from liteport.runtimes.images import build_image, image_status, image_tag
from liteport.types import EnvironmentSpec

CONTAINER_USER = "10001:10001"  # the image's non-root user, used when the host user is root
READY_TIMEOUT_S = 300.0


def _engine_hint() -> str:
    return (
        "start one (`dockerd &` as root, or `python3 -m nox -s docker`), point DOCKER_HOST at one, "
        "or use --runtime venv"
    )


def connect(timeout: int = 3600) -> Any:
    """A Docker SDK client for the engine DOCKER_HOST names (default: the local socket)."""
    try:
        import docker
    except ImportError as exc:
        raise EnvironmentBuildError(
            "the docker runtime needs the Docker SDK", hint="pip install 'liteport[docker]'"
        ) from exc
    where = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    try:
        client = docker.from_env(timeout=timeout)
        client.ping()
    except Exception as exc:
        first = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise EnvironmentBuildError(
            f"no Docker engine reachable at {where} ({first})", hint=_engine_hint()
        ) from exc
    return client


class DockerRuntime:
    name = "docker"

    def __init__(
        self,
        cache_dir: Path | None = None,
        *,
        memory: str | None = None,
        pids: int | None = None,
        cpus: str | None = None,
        base: str | None = None,
    ) -> None:
        self.cache_dir = cache_dir
        self.memory = memory or os.environ.get("LITEPORT_DOCKER_MEMORY", "4g")
        self.pids = pids or int(os.environ.get("LITEPORT_DOCKER_PIDS", "1024"))
        self.cpus = cpus or os.environ.get("LITEPORT_DOCKER_CPUS")
        self.base = base
        self._client: Any = None

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = connect()
        return self._client

    def check(self) -> None:
        """Fail now, with one clear line, when no engine or no docker CLI is there."""
        _ = self.client
        docker_cli()

    def status(self, spec: EnvironmentSpec) -> str:
        return image_status(self.client, spec)[0]

    def ensure(self, spec: EnvironmentSpec, progress: Progress) -> EnvironmentHandle:
        status, image = image_status(self.client, spec)
        if status == "built":
            image_id = str(image.id)
        else:
            why = "liteport's source changed" if image is not None else "it is not built yet"
            progress(f"building image {image_tag(spec)} for {spec.name} ({why})")
            image_id, _ = build_image(self.client, spec, progress, base=self.base, cache_dir=self.cache_dir)
        return EnvironmentHandle(
            spec=spec,
            argv=self.launcher_argv(spec, image_id),
            lock_hash=lock_hash(spec),
            location=image_id,
        )

    def launcher_argv(self, spec: EnvironmentSpec, image_id: str) -> tuple[str, ...]:
        argv = [
            sys.executable,
            "-m",
            "liteport.runtimes.docker",
            "--image",
            image_id,
            "--env-name",
            spec.name,
            "--memory",
            self.memory,
            "--pids",
            str(self.pids),
            "--docker",
            docker_cli(),
        ]
        if self.cpus:
            argv += ["--cpus", self.cpus]
        return tuple(argv)


def docker_cli() -> str:
    found = shutil.which(os.environ.get("LITEPORT_DOCKER_CLI", "docker"))
    if not found:
        raise EnvironmentBuildError(
            "the docker runtime runs workers through the docker CLI, which is not on PATH",
            hint="apt-get install docker.io (or docker-ce-cli)",
        )
    return found


# -- the launcher (host side, one per worker session) ------------------------------------------


class Mounts:
    """Host folders bound at the same path inside the container, read-only unless writable."""

    def __init__(self) -> None:
        self.paths: dict[Path, bool] = {}  # path -> writable

    def covers(self, path: Path, writable: bool) -> bool:
        return any(
            (path == mount or mount in path.parents) and (ok or not writable)
            for mount, ok in self.paths.items()
        )

    def add(self, path: Path, writable: bool) -> None:
        self.paths[path] = self.paths.get(path, False) or writable

    def docker_args(self) -> list[str]:
        args = []
        for path, writable in sorted(self.paths.items()):
            spec = f"type=bind,source={path},target={path}" + ("" if writable else ",readonly")
            args += ["--mount", spec]
        return args


def job_needs(job: Mapping[str, Any], log: str | None, cwd: Path) -> list[tuple[Path, bool]]:
    """(host path, writable) a job reads or writes; paths that do not exist are left out."""
    needs: list[tuple[Path, bool]] = []

    def want(raw: object, writable: bool = False) -> None:
        if not isinstance(raw, str) or not raw or "\n" in raw:
            return
        path = Path(raw).expanduser()
        path = (path if path.is_absolute() else cwd / path).resolve()
        if path.exists():
            needs.append((path, writable))

    want(job.get("workdir"), writable=True)
    if log:
        want(str(Path(log).parent), writable=True)
    model = job.get("model") or {}
    ref = str(model.get("ref", ""))
    target = ref.rsplit(":", 1)[0] if ":" in ref else ref
    if not ref.startswith("zoo:"):
        if target.endswith(".py") or "/" in target:
            want(str(Path(target).expanduser().parent) if Path(target).name else target)
        else:  # package.module:factory is imported from the working directory or PYTHONPATH
            want(str(cwd))
    for key in ("weights", "inputs"):
        if model.get(key):
            want(str(Path(str(model[key])).expanduser().parent))
    for value in (job.get("options") or {}).values():
        if isinstance(value, str) and value.startswith("/"):
            want(str(Path(value).parent) if Path(value).is_file() else value)
    return needs


def _mount_point(path: Path, writable: bool) -> Path:
    """What to bind for a need: a writable work folder binds its parent (sibling attempts), if deep enough."""
    if writable and len(path.parent.parts) >= 3:
        return path.parent
    if path == Path("/"):
        raise ValueError("refusing to mount /")
    return path


class Launcher:
    """Relays the worker protocol between the host's WorkerSession and a container."""

    def __init__(self, options: argparse.Namespace, stdin: IO[str], stdout: IO[str]) -> None:
        self.options = options
        self.stdin = stdin
        self.stdout = stdout
        self.cwd = Path.cwd().resolve()
        self.mounts = Mounts()
        self.proc: subprocess.Popen[str] | None = None
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.root_host = os.getuid() == 0
        # Host PYTHONPATH entries (plugins under test, module refs) are mounted and kept on the path.
        self.pythonpath = [
            Path(entry).resolve()
            for entry in os.environ.get("PYTHONPATH", "").split(os.pathsep)
            if entry and Path(entry).is_dir()
        ]
        for entry in self.pythonpath:
            self.mounts.add(entry, False)

    def send(self, message: Mapping[str, Any]) -> None:
        self.stdout.write(json.dumps(message) + "\n")
        self.stdout.flush()

    def serve(self) -> int:
        self.send({"event": "ready", "pid": os.getpid(), "runtime": "docker", "image": self.options.image})
        for line in self.stdin:
            if not line.strip():
                continue
            request = json.loads(line)
            job = request.get("job") or {}
            error = self._prepare(job, request.get("log"))
            if error:
                self.send(_result(job, "env_error", error))
                continue
            self.send(self._relay(line, job))
        self._stop()
        return 0

    def _prepare(self, job: Mapping[str, Any], log: str | None) -> str | None:
        """A running container that sees every folder ``job`` needs; an error line otherwise."""
        grow = False
        if log and self.root_host and Path(log).is_file():
            _hand_over(Path(log))  # an earlier run's log, appended to by the container's user
        for path, writable in job_needs(job, log, self.cwd):
            if writable and self.root_host:
                _hand_over(path)  # the container's non-root user must be able to write there
            if not self.mounts.covers(path, writable):
                self.mounts.add(_mount_point(path, writable), writable)
                grow = True
        if self.proc is not None and self.proc.poll() is None and not grow:
            return None
        self._stop()
        return self._start()

    def _start(self) -> str | None:
        name = f"liteport-{self.options.env_name}-{uuid.uuid4().hex[:8]}"
        argv = self.run_argv(name)
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.lines = queue.Queue()
        threading.Thread(target=pump_lines, args=(self.proc.stdout, self.lines), daemon=True).start()
        try:
            line = self.lines.get(timeout=READY_TIMEOUT_S)
        except queue.Empty:
            line = None
        message = _parse(line) if line else None
        if message is None or message.get("event") != "ready":
            self._stop()
            return (
                f"the container for {self.options.env_name} did not start "
                f"(image {self.options.image[:19]}; docker's message is in the worker log)"
            )
        return None

    def run_argv(self, name: str) -> list[str]:
        o = self.options
        user = CONTAINER_USER if self.root_host else f"{os.getuid()}:{os.getgid()}"
        env = {"PYTHONPATH": os.pathsep.join(map(str, self.pythonpath))} if self.pythonpath else {}
        env.update(
            {
                k: v
                for k, v in os.environ.items()
                if k.startswith("LITEPORT_") and not k.startswith("LITEPORT_DOCKER")
            }
        )
        argv = [
            o.docker,
            "run",
            "-i",
            "--rm",
            "--init",  # tini as PID 1 reaps whatever the converters leave behind
            "--name",
            name,
            "--label",
            "org.liteport.worker=1",
            "--label",
            f"org.liteport.environment={o.env_name}",
            "--network",
            "none",
            "--read-only",
            "--tmpfs",
            "/tmp:rw,exec,nosuid,nodev,size=1g,mode=1777",
            "--user",
            user,
            "--cap-drop",
            "ALL",
            "--security-opt",
            "no-new-privileges",
            "--memory",
            o.memory,
            "--memory-swap",
            o.memory,  # equal: no swap, so the limit is a limit
            "--pids-limit",
            str(o.pids),
            "--workdir",  # the host's working directory, so relative paths in jobs resolve the same
            str(self.cwd) if self.cwd != Path("/") else "/tmp",
            *(["--cpus", o.cpus] if o.cpus else []),
            *self.mounts.docker_args(),
        ]
        for key, value in sorted(env.items()):
            argv += ["--env", f"{key}={value}"]
        return [
            *argv,
            "--entrypoint",
            "python",
            o.image,
            "-m",
            "liteport.runtimes.docker_guard",
            "python",
            "-m",
            "liteport.stages.worker",
        ]

    def _relay(self, line: str, job: Mapping[str, Any]) -> dict[str, Any]:
        proc = self.proc
        assert proc is not None and proc.stdin is not None
        try:
            proc.stdin.write(line if line.endswith("\n") else line + "\n")
            proc.stdin.flush()
        except (BrokenPipeError, OSError):
            pass  # reported below from the exit status
        while True:
            out = self.lines.get()
            if out is None:
                code = proc.wait()
                self.proc = None
                return _result(
                    job, "crashed", f"the container died during {job.get('kind')}: exit code {code}"
                )
            message = _parse(out)
            if message is not None and message.get("event") == "result":
                return self._stamp(message)

    def _stamp(self, message: dict[str, Any]) -> dict[str, Any]:
        result = message["result"]
        image = self.options.image
        result["versions"] = {**(result.get("versions") or {}), "image": image}
        result["facts"] = {**(result.get("facts") or {}), f"image_{result.get('kind') or 'job'}": image}
        return message

    def _stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.stdin:
            with contextlib.suppress(OSError):
                proc.stdin.close()  # the guard sees EOF and ends the worker
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _hand_over(path: Path) -> None:
    """Let the container's user (uid 10001) write into a work folder the root host created."""
    uid, gid = (int(x) for x in CONTAINER_USER.split(":"))
    try:
        if path.stat().st_uid != uid:
            os.chown(path, uid, gid)
    except OSError:
        pass


def _result(job: Mapping[str, Any], status: str, message: str) -> dict[str, Any]:
    result = {
        "status": status,
        "job_id": job.get("id", ""),
        "kind": job.get("kind", ""),
        "error": {"kind": status, "message": message, "log": None, "detail": None},
    }
    return {"event": "result", "result": result}


def _parse(line: str | None) -> dict[str, Any] | None:
    if not line:
        return None
    try:
        message = json.loads(line)
    except ValueError:
        return None
    return message if isinstance(message, dict) else None


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m liteport.runtimes.docker")
    parser.add_argument("--image", required=True)
    parser.add_argument("--env-name", required=True)
    parser.add_argument("--memory", default="4g")
    parser.add_argument("--pids", type=int, default=1024)
    parser.add_argument("--cpus")
    parser.add_argument("--docker", default="docker")
    options = parser.parse_args(argv)
    # The protocol keeps a private copy of stdout; stray prints go to stderr (the worker log).
    protocol = os.fdopen(os.dup(1), "w", encoding="utf-8", buffering=1)
    os.dup2(2, 1)
    sys.exit(Launcher(options, sys.stdin, protocol).serve())


if __name__ == "__main__":
    main()
