"""Execution runtimes that materialise environments and run workers in them."""

from __future__ import annotations

from pathlib import Path

from liteport.errors import UsageError
from liteport.runtimes.base import Runtime
from liteport.runtimes.docker import DockerRuntime
from liteport.runtimes.local import LocalRuntime
from liteport.runtimes.venv import VenvRuntime

RUNTIMES = ("venv", "docker", "local")


def get_runtime(name: str, cache_dir: Path | None = None) -> Runtime:
    if name == "venv":
        return VenvRuntime(cache_dir)
    if name == "docker":
        docker = DockerRuntime(cache_dir)
        docker.check()  # no engine: one clear error now, not one per stage
        return docker
    if name == "local":
        return LocalRuntime()
    raise UsageError(f"unknown runtime {name!r}", hint=f"choose one of: {', '.join(RUNTIMES)}")
