"""The venv runtime (default): one virtual environment per (environment, lock hash).

``<cache>/envs/<env>-<lockhash>`` is built in a temporary folder and renamed into place
only when complete, under a file lock, so a half-built or concurrently built environment is
never used. A changed lock gives a new hash and so a new environment. The environment holds
only its lock; liteport and plugin code reach the worker through an overlay (``overlay.py``),
so every liteport install on the machine shares the environment without touching it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from liteport.errors import EnvironmentBuildError
from liteport.runtimes.base import EnvironmentHandle, Progress, lock_hash, read_lock, worker_argv
from liteport.runtimes.interpreters import find_python
from liteport.runtimes.overlay import ensure_overlay
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
        overlay = ensure_overlay(self.cache_dir, ("liteport", *spec.distributions), progress)
        path = os.pathsep.join(filter(None, [str(overlay), os.environ.get("PYTHONPATH")]))
        return EnvironmentHandle(
            spec=spec,
            argv=worker_argv(str(target / "bin" / "python")),
            lock_hash=lock_hash(spec),
            location=str(target),
            env={"PYTHONPATH": path},
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
        lock = FileLock(str(locks / f"{spec.name}.lock"))
        try:
            lock.acquire(timeout=0)
        except Timeout:
            progress(f"waiting for another process that is building {spec.name}")
            lock.acquire()
        try:
            yield
        finally:
            lock.release()

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
