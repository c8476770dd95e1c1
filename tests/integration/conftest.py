"""Integration fixtures: one Engine on the real venv runtime, shared by a module's tests.

Environments are built into the user's liteport cache (``LITEPORT_CACHE`` to move it), so a
second run reuses them; workers stay alive across tests, so imports are paid once per module.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from liteport.pipeline import Engine
from liteport.plugins import get_plugin_manager
from liteport.runtimes.venv import VenvRuntime


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    work = tmp_path_factory.mktemp("work")
    with Engine(
        pm=get_plugin_manager(strict=True),
        runtime=VenvRuntime(),
        work_root=work,
        progress=lambda message: print(f"  ▸ {message}", flush=True),
    ) as engine:
        yield engine


@pytest.fixture(scope="module")
def work_root(engine: Engine) -> Path:
    return engine.work_root


@pytest.fixture(scope="module")
def offline(request: pytest.FixtureRequest) -> list[str]:
    """The command prefix that runs a process without network, once the environments the test
    module lists in ``ENVIRONMENTS`` are built (with network): what a user's offline machine sees."""
    unshare = shutil.which("unshare")
    if unshare is None or subprocess.run([unshare, "-n", "true"], check=False).returncode != 0:
        pytest.skip("cannot drop network access here: `unshare -n` needs root (or user namespaces)")
    environments = list(request.module.ENVIRONMENTS)
    build = subprocess.run(
        [sys.executable, "-m", "liteport", "env", "build", *environments],
        capture_output=True,
        text=True,
        timeout=3600,
    )
    assert build.returncode == 0, build.stdout + build.stderr
    return [unshare, "-n"]
