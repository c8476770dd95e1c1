"""The wheel as users get it: built from the sources, installed into a fresh venv, every module imported.

A hand-kept package list once left ``liteport.reports`` out of the wheel, so ``liteport matrix`` and
``liteport report`` died with ModuleNotFoundError in every non-editable install (issue 11).
Marked ``packaging``: ``nox -s tests`` runs it; ``nox -s unit`` only when asked (``-- -m packaging``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import venv
import zipfile
from pathlib import Path

import pytest

pytestmark = [pytest.mark.packaging, pytest.mark.timeout(300)]

ROOT = Path(__file__).resolve().parents[2]

# What the host install declares; anything more must be added here on purpose (never torch: a resolver
# would pull its multi-GB CUDA build).
HOST_DEPENDENCIES = ("pluggy", "rich", "filelock")
# Modules that run inside converter environments (or the conformance kit under pytest) may import
# these at import time; the host never does.
NOT_ON_THE_HOST = {"torch", "torchao", "numpy", "tensorflow", "onnx", "onnxruntime", "ai_edge_litert"}
NOT_ON_THE_HOST |= {"docker", "pytest"}

IMPORT_ALL = textwrap.dedent("""
    import importlib, json, sys, traceback

    failures = {}
    for name in json.loads(sys.argv[1]):
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            failures[name] = {"missing": exc.name, "error": traceback.format_exc(limit=1)}
        except Exception as exc:
            failures[name] = {"missing": None, "error": traceback.format_exc()}
    print(json.dumps(failures))
""")

JOURNAL_ENTRY = {
    "key": "k1",
    "cell": {"model": "zoo:tiny_cnn", "backend": "fake", "environment": "fake-env", "mode": "fp32"},
    "attempt": {"status": "ok"},
}


def _run(*argv: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([str(a) for a in argv], capture_output=True, text=True, cwd=cwd, timeout=240)
    assert done.returncode == 0, f"{' '.join(map(str, argv))}\n{done.stdout}\n{done.stderr}"
    return done


def _modules(wheel: zipfile.ZipFile) -> list[str]:
    names = []
    for name in wheel.namelist():
        if name.startswith("liteport/") and name.endswith(".py"):
            parts = name[: -len(".py")].split("/")
            names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return sorted(names)


def _source_modules(root: Path) -> set[str]:
    found = set()
    for folder, package in ((root / "core", "liteport"), (root / "backends", "liteport.backends")):
        for path in folder.rglob("*.py"):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            found.add(".".join([package, *(parts[:-1] if parts[-1] == "__init__" else parts)]))
    return found


def test_wheel_installs_alone_and_every_module_imports(tmp_path: Path) -> None:
    # Built from a copy of the sources, so the repository's build/ folder (stale files) plays no part.
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md"):
        if (ROOT / name).exists():
            shutil.copy2(ROOT / name, source / name)
    for folder in ("core", "backends"):
        shutil.copytree(ROOT / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", tmp_path / "dist", source)
    (wheel_path,) = (tmp_path / "dist").glob("liteport-*.whl")
    with zipfile.ZipFile(wheel_path) as wheel:
        modules = _modules(wheel)
        files = set(wheel.namelist())
        metadata = wheel.read(next(n for n in files if n.endswith(".dist-info/METADATA"))).decode()
        requires = [
            line.split(":", 1)[1].strip()
            for line in metadata.splitlines()
            if line.startswith("Requires-Dist:") and "extra ==" not in line
        ]
    assert {re.split(r"[<>=!~ ;\[]", r, maxsplit=1)[0].lower() for r in requires} == set(HOST_DEPENDENCIES)
    assert set(modules) == _source_modules(source), "modules of core/ or backends/ missing from the wheel"
    for lock in (source / "backends").glob("*/locks/*.txt"):
        assert f"liteport/backends/{lock.relative_to(source / 'backends')}" in files, lock

    env = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(env)  # this pip installs into it (--python): no ensurepip wait
    python = env / "bin" / "python"
    pip = (sys.executable, "-m", "pip", "--python", python, "install", "-q")
    _run(*pip, "--no-deps", wheel_path)  # the wheel alone, then its host dependencies
    _run(*pip, *HOST_DEPENDENCIES)

    # Outside the repository, so nothing but the installed wheel can be imported as liteport.
    failures = json.loads(_run(python, "-c", IMPORT_ALL, json.dumps(modules), cwd=tmp_path).stdout)
    unexpected = {
        name: failure["error"]
        for name, failure in failures.items()
        if (failure["missing"] or "").split(".")[0] not in NOT_ON_THE_HOST
    }
    assert not unexpected, unexpected
    for host_side in ("liteport.cli.main", "liteport.matrix.run", "liteport.reports", "liteport.pipeline"):
        assert host_side not in failures

    liteport = env / "bin" / "liteport"
    assert "convert" in _run(liteport, "--help", cwd=tmp_path).stdout
    journal = tmp_path / "journal.jsonl"
    journal.write_text(json.dumps(JOURNAL_ENTRY) + "\n")
    _run(liteport, "report", journal, "-o", tmp_path / "report", cwd=tmp_path)
    document = json.loads((tmp_path / "report" / "matrix.json").read_text())
    assert document["summary"] == {"cells": 1, "by_status": {"ok": 1}}
    assert os.path.getsize(tmp_path / "report" / "matrix.html") > 0
