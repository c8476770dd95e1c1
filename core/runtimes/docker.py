# Over 400 lines on purpose: one runtime whose container flags, mounts and worker I/O change together.
"""The docker runtime: every environment is an image, every worker a locked-down container.

``ensure`` builds ``liteport/<env>:<lockhash>`` with the Docker SDK when it is missing or was
built from another liteport source (see liteport.runtimes.images). The handle's argv starts a small
host-side launcher, ``python -m liteport.runtimes.docker``, which speaks the same JSON-lines
protocol as a worker, so the core's WorkerSession (timeouts, restarts) is used unchanged:

* the launcher runs ``docker run -i --rm --network none --read-only ...`` and relays lines;
  it starts the container at the first job, because only jobs say which host paths they need
  (``plan_mounts``): writable, only the job's own folder (an attempt folder; for the reference
  stage, that model's run folder) and the folder its backend shares between the modes of that
  model on that environment (``options["shared_dir"]``, under the run folder); read-only, each
  file a job option names (reference and calibration data, the ONNX export), the weights and
  inputs files, the model's folder (the model file alone when that folder is ``/``, a top-level
  folder, the home folder or holds the work folder), and PYTHONPATH entries. A job needing other
  mounts than the running container has gets a fresh container, so no container ever sees
  another attempt's or model's files writable, or another model's run at all. A job that would
  need ``/``, a top-level folder or the home folder whole is refused (``bad_input``) with the
  reason, which also goes to its log.
* inside, docker_guard supervises the worker: a timeout kills the launcher and its ``docker
  run`` client, Docker closes the container's stdin, and the guard kills the worker, so the
  container ends and ``--rm`` removes it; an OOM kill comes back as ``crashed`` with the reason.
  A container that dies as a whole is "out of memory" only when the engine logged an ``oom``
  event for it; otherwise the signal or exit code is the cause.
* every result carries the image ID (``versions["image"]`` and ``facts["image_<stage>"]``).

Limits: ``LITEPORT_DOCKER_MEMORY`` (default 4g, swap off), ``LITEPORT_DOCKER_PIDS`` (1024),
``LITEPORT_DOCKER_CPUS`` (unset: all). ``DOCKER_HOST`` selects the engine, as for the docker CLI.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
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


class MountRefused(Exception):
    """A job needs a host path the runtime will not bind into a container; the message says which."""


def too_wide(path: Path, home: Path) -> bool:
    """Never bound whole: ``/``, top-level folders (``/tmp``, ``/home``), the home folder and its parents."""
    return len(path.parts) <= 2 or path == home or path in home.parents


def plan_mounts(
    job: Mapping[str, Any],
    log: str | None,
    cwd: Path,
    pythonpath: Sequence[Path] = (),
    home: Path | None = None,
) -> dict[Path, bool]:
    """The least host paths (path -> writable) ``job`` needs, each bound at the same path.

    Paths that do not exist are left out (the job then fails inside with its own message).
    Raises MountRefused when the job needs a too wide folder (``too_wide``) whole.
    """
    home = (home or Path.home()).resolve()

    def existing(raw: object) -> Path | None:
        if not isinstance(raw, str) or not raw or "\n" in raw:
            return None
        path = Path(raw).expanduser()
        path = (path if path.is_absolute() else cwd / path).resolve()
        return path if path.exists() else None

    writable: list[Path] = []
    options = job.get("options") or {}
    for raw, what in (
        (job.get("workdir"), "work folder"),
        (str(Path(log).parent) if log else None, "log"),
        (options.get("shared_dir"), "shared folder"),  # the engine made it: reuse between modes
    ):
        path = existing(raw)
        if path is None or path in writable:
            continue
        if not path.is_dir() or too_wide(path, home):
            raise MountRefused(
                f"the docker runtime will not mount {path} writable (the job's {what}): a job writes "
                "only a folder of its own, never /, a top-level folder or the home folder"
            )
        writable.append(path)

    def holds_work(folder: Path) -> bool:  # a folder around the work folder would show every model's runs
        return any(folder == w or folder in w.parents for w in writable)

    readonly: list[Path] = []
    model = job.get("model") or {}
    ref = str(model.get("ref") or "").strip()
    if ref and not ref.startswith("zoo:"):
        target = ref if ref.endswith(".pt2") else ref.rpartition(":")[0]
        if target.endswith((".py", ".pt2")) or "/" in target:
            file = existing(target)
            if file is not None:
                # Its folder for the modules beside it, unless that folder is too wide to show.
                wide = too_wide(file.parent, home) or holds_work(file.parent)
                readonly.append(file if wide else file.parent)
        elif target:  # package.module:factory, imported from the working directory (or PYTHONPATH)
            top = target.split(".")[0]
            found = existing(top) or existing(f"{top}.py")
            if found is not None and not too_wide(found, home) and not holds_work(found):
                readonly.append(found)
    for key in ("weights", "inputs"):
        file = existing(model.get(key))
        if file is not None:
            readonly.append(file)
    for key, value in options.items():
        path = existing(value) if isinstance(value, str) and value.startswith("/") else None
        if path is None or path in writable:
            continue
        if path.is_dir() and too_wide(path, home):
            raise MountRefused(
                f"the docker runtime will not mount {path} (job option {key!r}): /, top-level folders "
                "and the home folder are never mounted whole"
            )
        readonly.append(path)  # a file alone; a folder whole
    readonly += [e for e in pythonpath if e.is_dir() and not too_wide(e, home) and not holds_work(e)]

    plan = dict.fromkeys(writable, True)
    for path in readonly:
        plan.setdefault(path, False)
    # Drop what another mount already gives (a read-only folder inside a writable one stays nested).
    return {
        path: rw
        for path, rw in plan.items()
        if not any(other in path.parents and (plan[other] or not rw) for other in plan)
    }


def visible(path: Path, mounts: Mapping[Path, bool]) -> bool:
    return any(path == mount or mount in path.parents for mount in mounts)


def mount_args(mounts: Mapping[Path, bool]) -> list[str]:
    """``--mount`` options, parents first; a path with a comma or quote is quoted as docker's CSV wants."""
    args = []
    for path, writable in sorted(mounts.items()):
        fields = [f"source={path}", f"target={path}"]
        fields = [f'"{f.replace(chr(34), chr(34) * 2)}"' if "," in f or '"' in f else f for f in fields]
        args += ["--mount", ",".join(["type=bind", *fields, *([] if writable else ["readonly"])])]
    return args


def describe_container_exit(code: int) -> str:
    """Why ``docker run`` ended, from its exit code (125-127: docker's own errors; 128+N: signal N)."""
    if code > 128:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(code - 128).name}"
    if code == 125:
        return "docker could not run the container (exit code 125; its message is in the worker log)"
    return f"exit code {code}"


def note_in_log(log: str | None, message: str) -> None:
    """Append a launcher-side failure to the job's log, so the log the user is shown exists and says why."""
    if not log or not Path(log).parent.is_dir():
        return
    with contextlib.suppress(OSError), open(log, "a", encoding="utf-8") as out:
        out.write(f"liteport (docker runtime): {message}\n")


class Launcher:
    """Relays the worker protocol between the host's WorkerSession and a container."""

    def __init__(self, options: argparse.Namespace, stdin: IO[str], stdout: IO[str]) -> None:
        self.options = options
        self.stdin = stdin
        self.stdout = stdout
        self.cwd = Path.cwd().resolve()
        self.mounts: dict[Path, bool] = {}  # what the running container has bound (path -> writable)
        self.proc: subprocess.Popen[str] | None = None
        self.name = ""
        self.started_at = 0.0
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.docker_said: collections.deque[str] = collections.deque(maxlen=20)  # docker run's stderr tail
        self.root_host = os.getuid() == 0
        # Host PYTHONPATH entries (plugins under test, module refs) are mounted and kept on the path.
        self.pythonpath = [
            Path(entry).resolve()
            for entry in os.environ.get("PYTHONPATH", "").split(os.pathsep)
            if entry and Path(entry).is_dir()
        ]

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
            log = request.get("log")
            try:
                error = self._prepare(job, log)
            except MountRefused as exc:  # the job's input, not the environment: the reason is the cause
                note_in_log(log, str(exc))
                self.send(_result(job, "failed", str(exc), kind="bad_input"))
                continue
            if error:
                note_in_log(log, error)
                self.send(_result(job, "env_error", error))
                continue
            self.send(self._relay(line, job, log))
        self._stop()
        return 0

    def _prepare(self, job: Mapping[str, Any], log: str | None) -> str | None:
        """A running container with exactly the mounts ``job`` needs; an error line otherwise."""
        plan = plan_mounts(job, log, self.cwd, self.pythonpath)
        if self.root_host:
            if log and Path(log).is_file():
                _hand_over(Path(log))  # an earlier run's log, appended to by the container's user
            for path in (path for path, writable in plan.items() if writable):
                _hand_over(path)  # the container's non-root user must be able to write there
        if self.proc is not None and self.proc.poll() is None and plan == self.mounts:
            return None
        self._stop()
        self.mounts = plan  # never more: a container serves the jobs of one folder, one model
        return self._start()

    def _start(self) -> str | None:
        self.name = f"liteport-{self.options.env_name}-{uuid.uuid4().hex[:8]}"
        argv = self.run_argv(self.name)
        self.started_at = time.time()
        self.docker_said.clear()
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self.lines = queue.Queue()
        threading.Thread(target=pump_lines, args=(self.proc.stdout, self.lines), daemon=True).start()
        stderr = threading.Thread(target=self._pump_stderr, args=(self.proc.stderr,), daemon=True)
        stderr.start()
        try:
            line = self.lines.get(timeout=READY_TIMEOUT_S)
        except queue.Empty:
            line = None
        message = _parse(line) if line else None
        if message is None or message.get("event") != "ready":
            self._stop()
            stderr.join(timeout=10)  # docker's own message arrives on stderr as it exits
            said = next((t for t in reversed(self.docker_said) if t.startswith("docker:")), None)
            said = said or next(reversed(self.docker_said), None)
            why = f": {said[:300]}" if said else " (docker's message is in the worker log)"
            image = self.options.image[:19]
            return f"the container for {self.options.env_name} did not start (image {image}){why}"
        return None

    def _pump_stderr(self, stream: IO[str] | None) -> None:
        """Pass docker run's stderr on to ours (the worker log), keeping its last lines for causes."""
        assert stream is not None
        for line in stream:
            sys.stderr.write(line)
            sys.stderr.flush()
            if line.strip():
                self.docker_said.append(line.strip())

    def run_argv(self, name: str) -> list[str]:
        o = self.options
        user = CONTAINER_USER if self.root_host else f"{os.getuid()}:{os.getgid()}"
        shown = [str(entry) for entry in self.pythonpath if visible(entry, self.mounts)]
        env = {"PYTHONPATH": os.pathsep.join(shown)} if shown else {}
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
            *mount_args(self.mounts),
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

    def _relay(self, line: str, job: Mapping[str, Any], log: str | None) -> dict[str, Any]:
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
                died = f"the container died during {job.get('kind')}: {self._death(code)}"
                note_in_log(log, died)
                return _result(job, "crashed", died)
            message = _parse(out)
            if message is not None and message.get("event") == "result":
                return self._stamp(message)

    def _death(self, code: int) -> str:
        """Why the container ended: out of memory only when the engine logged an ``oom`` event for it."""
        if self._engine_saw_oom():
            return (
                f"out of memory: the engine killed the container at its memory limit ({self.options.memory}; "
                "raise it with LITEPORT_DOCKER_MEMORY)"
            )
        return describe_container_exit(code)

    def _engine_saw_oom(self) -> bool:
        # `docker run --rm` returns once the container is removed, after its oom and die events:
        # a bounded query of the events up to now is complete (the container is gone for inspect).
        argv = [self.options.docker, "events", "--since", f"{self.started_at - 60:.0f}"]
        argv += ["--until", f"{time.time():.3f}", "--filter", f"container={self.name}"]
        argv += ["--filter", "event=oom", "--format", "{{.Action}}"]
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
        except (OSError, subprocess.TimeoutExpired):
            return False
        return "oom" in done.stdout.split()

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


def _result(job: Mapping[str, Any], status: str, message: str, kind: str | None = None) -> dict[str, Any]:
    result = {
        "status": status,
        "job_id": job.get("id", ""),
        "kind": job.get("kind", ""),
        "error": {"kind": kind or status, "message": message, "log": None, "detail": None},
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
