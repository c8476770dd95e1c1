"""The venv runtime (default): one virtual environment per (environment, lock hash).

``<cache>/envs/<env>-<lockhash>`` is built in a temporary folder and renamed into place
only when complete, under a file lock, so a half-built or concurrently built environment is
never used. A changed lock gives a new hash and so a new environment.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

from liteport.errors import EnvironmentBuildError
from liteport.interpreters import find_python
from liteport.runtimes.base import EnvironmentHandle, Progress, lock_hash, worker_argv
from liteport.types import EnvironmentSpec

MARKER = ".liteport-env.json"  # written last: its presence means the environment is complete


def default_cache_dir() -> Path:
    explicit = os.environ.get("LITEPORT_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "liteport"


class VenvRuntime:
    name = "venv"

    def __init__(self, cache_dir: Path | None = None) -> None:
        self.cache_dir = cache_dir or default_cache_dir()
        self.envs_dir = self.cache_dir / "envs"

    def path_for(self, spec: EnvironmentSpec) -> Path:
        return self.envs_dir / f"{spec.name}-{lock_hash(spec)}"

    def status(self, spec: EnvironmentSpec) -> str:
        if (self.path_for(spec) / MARKER).exists():
            return "built"
        if any(self.envs_dir.glob(f"{spec.name}-*/{MARKER}")):
            return "stale"  # built from another version of the lock
        return "missing"

    def ensure(self, spec: EnvironmentSpec, progress: Progress) -> EnvironmentHandle:
        target = self.path_for(spec)
        if not (target / MARKER).exists():
            with self._build_lock(spec, progress):
                if not (target / MARKER).exists():  # another process may have finished it meanwhile
                    self._build(spec, target, progress)
        self._refresh_project(spec, target, progress)
        return EnvironmentHandle(
            spec=spec,
            argv=worker_argv(str(target / "bin" / "python")),
            lock_hash=lock_hash(spec),
            location=str(target),
        )

    def remove(self, spec: EnvironmentSpec) -> list[Path]:
        removed = []
        for path in sorted(self.envs_dir.glob(f"{spec.name}-*")):
            if path.is_dir() and path.name.rsplit("-", 1)[0] == spec.name:
                shutil.rmtree(path)
                removed.append(path)
        return removed

    # -- building --------------------------------------------------------------------------

    @contextlib.contextmanager
    def _build_lock(self, spec: EnvironmentSpec, progress: Progress) -> Iterator[None]:
        locks = self.envs_dir / ".locks"
        locks.mkdir(parents=True, exist_ok=True)
        with open(locks / f"{spec.name}.lock", "w") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                progress(f"waiting for another process that is building {spec.name}")
                fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _build(self, spec: EnvironmentSpec, target: Path, progress: Progress) -> None:
        python = find_python(spec.python)
        staging = self.envs_dir / f".building-{target.name}-{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        log = self.cache_dir / "logs" / f"build-{target.name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text("", encoding="utf-8")
        started = time.perf_counter()
        try:
            progress(
                f"building environment {spec.name} (Python {spec.python}, lock {target.name}); log: {log}"
            )
            _run([python, "-m", "venv", str(staging)], log, f"create the venv for {spec.name}")
            install = [str(staging / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check"]
            if spec.no_deps:
                install.append("--no-deps")
            progress(f"installing {_count_pins(spec)} pinned packages into {spec.name}")
            _run([*install, "-r", spec.lock], log, f"install the lock {spec.lock}")
            _install_project(staging, log, spec)
            freeze = subprocess.run(
                [str(staging / "bin" / "python"), "-m", "pip", "freeze", "--all"],
                capture_output=True,
                text=True,
                check=False,
            ).stdout
            (staging / "liteport-freeze.txt").write_text(freeze, encoding="utf-8")
            info: dict[str, Any] = {
                "environment": spec.name,
                "python": python,
                "lock": spec.lock,
                "lock_hash": lock_hash(spec),
                "build_seconds": round(time.perf_counter() - started, 1),
                "project": _project_fingerprint(spec),
            }
            (staging / MARKER).write_text(json.dumps(info, indent=2), encoding="utf-8")
            if target.exists():  # leftover without a marker: an interrupted older build
                shutil.rmtree(target)
            _relocate_scripts(staging, target)
            staging.rename(target)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        progress(f"built {spec.name} in {time.perf_counter() - started:.0f} s")

    def _refresh_project(self, spec: EnvironmentSpec, target: Path, progress: Progress) -> None:
        """Reinstall liteport into a built environment when its entry points or source moved."""
        marker = target / MARKER
        info = json.loads(marker.read_text(encoding="utf-8"))
        fingerprint = _project_fingerprint(spec)
        if info.get("project") == fingerprint:
            return
        with self._build_lock(spec, progress):
            info = json.loads(marker.read_text(encoding="utf-8"))
            if info.get("project") == fingerprint:
                return
            progress(f"updating liteport inside {spec.name}")
            log = self.cache_dir / "logs" / f"build-{target.name}.log"
            _install_project(target, log, spec)
            info["project"] = fingerprint
            marker.write_text(json.dumps(info, indent=2), encoding="utf-8")


def _relocate_scripts(staging: Path, target: Path) -> None:
    """Point console scripts and activate files at the final path before the rename.

    pip writes the staging folder into every script's shebang; after the rename they would break.
    """
    old, new = str(staging).encode(), str(target).encode()
    for script in (staging / "bin").iterdir():
        if script.is_symlink() or not script.is_file():
            continue
        data = script.read_bytes()
        if old in data and b"\0" not in data[:1024]:
            script.write_bytes(data.replace(old, new))


def _count_pins(spec: EnvironmentSpec) -> int:
    from liteport.runtimes.base import read_lock

    return len(read_lock(spec))


def _run(argv: list[str], log: Path, what: str) -> None:
    with open(log, "a", encoding="utf-8") as out:
        out.write(f"$ {' '.join(argv)}\n")
        out.flush()
        code = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, check=False).returncode
    if code != 0:
        tail = log.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-1:] or [""]
        raise EnvironmentBuildError(
            f"could not {what}: exit {code}: {tail[0][:300]}", hint=f"full log: {log}"
        )


def _project_source(name: str = "liteport") -> tuple[list[str], str]:
    """pip arguments that install host distribution ``name`` into another environment, and a label."""
    dist = _installed(name)
    direct = dist.read_text("direct_url.json")
    if direct:
        data = json.loads(direct)
        url = str(data.get("url", ""))
        if url.startswith("file://"):
            path = url[len("file://") :]
            if data.get("dir_info", {}).get("editable"):
                return ["-e", path], f"editable:{path}"
            return [path], f"dir:{path}"
    return [f"{name}=={dist.version}"], f"index:{dist.version}"


def _installed(name: str) -> metadata.Distribution:
    """The installed distribution; a source tree's stray ``*.egg-info`` is not it."""
    found = list(metadata.distributions(name=name))
    if not found:
        raise EnvironmentBuildError(f"{name} is not installed on the host", hint=f"pip install {name}")
    return next((d for d in found if d.read_text("direct_url.json")), found[0])


def _project_fingerprint(spec: EnvironmentSpec | None = None) -> str:
    """What decides the liteport layer of an environment: liteport and the plugin distributions."""
    parts = []
    for name in ("liteport", *(spec.distributions if spec else ())):
        dist = _installed(name)
        _, label = _project_source(name)
        parts.append(f"{name}|{label}|{dist.version}|{dist.read_text('entry_points.txt') or ''}")
    return "\n".join(parts)


def _install_project(venv: Path, log: Path, spec: EnvironmentSpec | None = None) -> None:
    """Install liteport, and the plugin distributions the environment needs, without dependencies."""
    args: list[str] = []
    for name in ("liteport", *(spec.distributions if spec else ())):
        args += _project_source(name)[0]
    _run(
        [
            str(venv / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            "--no-deps",
            *args,
        ],
        log,
        "install liteport and its plugins",
    )
