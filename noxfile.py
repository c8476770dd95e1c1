# /// script
# dependencies = ["nox==2026.10.20"]
# ///
"""liteport's coordination layer: tests, lint, the demo (the README's main job), benchmarks.

Converter environments are built by liteport itself (``liteport env build``) into its cache,
keyed by lock hash, so every session reuses them; nox only manages the host-side venvs.
"""

from __future__ import annotations

import glob
import os
import shutil

import nox

nox.needs_version = ">=2025.2.9"
nox.options.sessions = ["lint", "tests"]
nox.options.reuse_existing_virtualenvs = True  # host venvs are cheap to keep; their deps are pinned

# The host-side test venv needs torch for the unit tests of model loading; pin it in the same
# install command so pip takes the local CPU wheel and never resolves a CUDA build.
TORCH = ("torch==2.13.0", "numpy==2.4.6")


def _install(session: nox.Session, *extras: str) -> None:
    spec = f".[{','.join(extras)}]" if extras else "."
    session.install("-e", spec)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff and mypy over the whole project."""
    # A "strict" editable install lays out liteport as a tree of links mypy can follow
    # (core/ is imported as liteport, backends/ as liteport.backends).
    session.install("-e", ".[lint]", "--config-settings", "editable_mode=strict")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", "--diff", "core", "backends", "tests", "noxfile.py")
    trees = sorted(glob.glob("build/__editable__.liteport-*"))
    session.run("mypy", "-p", "liteport", env={"MYPYPATH": os.path.abspath(trees[-1])})
    session.run("mypy", "noxfile.py")


@nox.session
def tests(session: nox.Session) -> None:
    """Unit tests (fake plugins, no converters), then integration tests with real environments."""
    _install(session, "test")
    session.install(*TORCH)
    session.run("pytest", "tests/unit", "-q", *session.posargs)
    session.run("liteport", "env", "build", external=False)
    session.run("pytest", "tests/integration", "-q", "-m", "integration", "--timeout=3600", *session.posargs)


@nox.session
def unit(session: nox.Session) -> None:
    """Unit tests only (fast, no converter environments)."""
    _install(session, "test")
    session.install(*TORCH)
    session.run("pytest", "tests/unit", "-q", *session.posargs)


@nox.session
def demo(session: nox.Session) -> None:
    """The README's main job: mobilenet_v2 to TFLite in fp32 and int8 through ai-edge-torch."""
    _install(session)
    out = os.path.join("liteport-out")
    for mode in ("fp32", "int8"):
        session.run(
            "liteport",
            "convert",
            "zoo:mobilenet_v2",
            "--quant",
            mode,
            "--backend",
            "ai-edge-torch",
            "-o",
            os.path.join(out, f"mobilenet_v2-{mode}.tflite"),
        )


@nox.session(default=False)
def survey(session: nox.Session) -> None:
    """Zoo models x environments x modes through the real pipeline: metrics, ops, latency, conversion time."""
    _install(session)
    session.run("python", "tests/bench/zoo_survey.py", *session.posargs)


# Backend environments, read from the lock files so `nox -l` needs no import of liteport.
BACKEND_ENVS = sorted(os.path.basename(p)[: -len(".txt")] for p in glob.glob("backends/*/locks/*.txt"))
MATRIX_DIR = "liteport-matrix"


@nox.session(default=False, tags=["matrix"])
@nox.parametrize("environment", BACKEND_ENVS, ids=BACKEND_ENVS)
def matrix_env(session: nox.Session, environment: str) -> None:
    """Build one backend environment and run its matrix cells (one CI job each)."""
    _install(session)
    session.run("liteport", "env", "build", environment)
    out = os.path.join(MATRIX_DIR, environment)
    session.run("liteport", "matrix", "--envs", environment, "--resume", "-o", out, *session.posargs)


@nox.session(default=False)
def matrix(session: nox.Session) -> None:
    """The whole matrix: zoo models x every backend environment x fp32/fp16/dynamic/int8."""
    _install(session)
    session.run("liteport", "matrix", "--resume", "-o", os.path.join(MATRIX_DIR, "all"), *session.posargs)


@nox.session(default=False)
def report(session: nox.Session) -> None:
    """Merge every matrix journal under liteport-matrix/ into one report."""
    _install(session)
    journals = sorted(glob.glob(os.path.join(MATRIX_DIR, "*", "journal.jsonl")))
    if not journals:
        session.error(f"no journals under {MATRIX_DIR}/: run `nox -t matrix` or `nox -s matrix` first")
    session.run("liteport", "report", *journals, "-o", os.path.join(MATRIX_DIR, "report"))


@nox.session
def browser(session: nox.Session) -> None:
    """matrix.html in headless Chromium (installs Debian's chromium when missing and root)."""
    if not (shutil.which("chromium") or shutil.which("chromium-browser")):
        if os.geteuid() != 0:
            session.error("chromium is missing: install Debian's `chromium` package (apt-get install chromium)")
        session.run("apt-get", "update", "-q", external=True)
        session.run("apt-get", "install", "-y", "-q", "chromium", external=True)
    _install(session, "test")
    session.run("pytest", "tests/browser", "-q", *session.posargs)
