"""Execution runtimes that materialise environments and run workers in them."""

from __future__ import annotations

from pathlib import Path

from liteport.errors import UsageError
from liteport.runtimes.base import Runtime

RUNTIMES = ("venv", "docker", "local")


def get_runtime(name: str, cache_dir: Path | None = None) -> Runtime:
    # Imported here: the in-container guard (liteport.runtimes.docker_guard) runs in images that
    # have only the lock's packages, so importing this package must not pull in filelock or docker.
    if name == "venv":
        from liteport.runtimes.venv import VenvRuntime

        return VenvRuntime(cache_dir)
    if name == "docker":
        from liteport.runtimes.docker import DockerRuntime

        docker = DockerRuntime(cache_dir)
        docker.check()  # no engine: one clear error now, not one per stage
        return docker
    if name == "local":
        from liteport.runtimes.local import LocalRuntime

        return LocalRuntime()
    raise UsageError(f"unknown runtime {name!r}", hint=f"choose one of: {', '.join(RUNTIMES)}")
