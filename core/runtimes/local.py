"""The local runtime: workers run with the current interpreter and whatever it has installed."""

from __future__ import annotations

import sys

from liteport.runtimes.base import EnvironmentHandle, Progress, worker_argv
from liteport.types import EnvironmentSpec


class LocalRuntime:
    """For tests and for users who already installed a backend's packages themselves."""

    name = "local"

    def ensure(self, spec: EnvironmentSpec, progress: Progress) -> EnvironmentHandle:
        return EnvironmentHandle(
            spec=spec, argv=worker_argv(sys.executable), lock_hash="local", location=sys.executable
        )

    def status(self, spec: EnvironmentSpec) -> str:
        return "current interpreter"
