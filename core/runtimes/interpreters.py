"""Find a Python interpreter of a given X.Y version the way a user's machine offers one.

Order: ``LITEPORT_PYTHON_3_9``-style override, the current interpreter, ``uv python find``,
pyenv's versions folder (not its shims: they exit 127 for versions not selected), then PATH.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from pathlib import Path

from liteport.errors import EnvironmentBuildError

_PROBE = "import sys; print('%d.%d' % sys.version_info[:2])"


def override_variable(version: str) -> str:
    return "LITEPORT_PYTHON_" + version.replace(".", "_")


def _reports_version(candidate: str, version: str) -> bool:
    try:
        out = subprocess.run([candidate, "-c", _PROBE], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and out.stdout.strip() == version


def _uv_candidates(version: str) -> list[str]:
    uv = shutil.which("uv")
    if not uv:
        return []
    try:
        out = subprocess.run([uv, "python", "find", version], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [out.stdout.strip()] if out.returncode == 0 and out.stdout.strip() else []


def _pyenv_candidates(version: str) -> list[str]:
    roots = [os.environ.get("PYENV_ROOT", ""), str(Path.home() / ".pyenv")]
    found: list[str] = []
    for root in filter(None, roots):
        versions = Path(root) / "versions"
        if versions.is_dir():
            # newest patch release first: 3.9.18 before 3.9.2
            matches = sorted(
                versions.glob(f"{version}.*"),
                key=lambda p: [int(x) if x.isdigit() else 0 for x in p.name.split(".")],
                reverse=True,
            )
            found += [str(p / "bin" / "python") for p in matches if (p / "bin" / "python").exists()]
    return found


def candidates(version: str) -> list[str]:
    found: list[str] = []
    if f"{sys.version_info[0]}.{sys.version_info[1]}" == version:
        found.append(sys.executable)
    found += _uv_candidates(version)
    found += _pyenv_candidates(version)
    found += [p for p in (shutil.which(f"python{version}"),) if p]
    return found


@functools.cache
def find_python(version: str) -> str:
    """An interpreter that runs as Python ``version``, or a clear error saying how to get one."""
    variable = override_variable(version)
    explicit = os.environ.get(variable)
    if explicit:
        if _reports_version(explicit, version):
            return explicit
        raise EnvironmentBuildError(
            f"{variable}={explicit} is not a working Python {version} interpreter",
            hint=f"point {variable} at a python{version} executable",
        )
    tried = candidates(version)
    for candidate in tried:
        if _reports_version(candidate, version):
            return candidate
    raise EnvironmentBuildError(
        f"no Python {version} interpreter found (tried: {', '.join(tried) or 'uv, pyenv, PATH'})",
        hint=f"install one (e.g. `uv python install {version}`) or set {variable}=/path/to/python{version}",
    )
