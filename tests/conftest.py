"""Shared fixtures: fake plugins discovered through real entry points on a test path."""

from __future__ import annotations

import importlib
import os
import signal
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"


def pytest_configure(config: pytest.Config) -> None:
    """Children get Ctrl-C back: a shell starting pytest in the background (``cmd &``) hands it
    SIGINT ignored, an exec keeps that, and the tests that interrupt a matrix would then wait on
    a process that cannot hear them. A handled signal is reset to the default at exec."""
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def _add_plugin_path(monkeypatch: pytest.MonkeyPatch, folder: Path) -> None:
    monkeypatch.syspath_prepend(str(folder))
    # Workers are subprocesses: they find the fake distributions through PYTHONPATH.
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join(filter(None, [str(folder), os.environ.get("PYTHONPATH")]))
    )
    importlib.invalidate_caches()


@pytest.fixture
def fake_plugins(monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = FIXTURES / "plugins_ok"
    _add_plugin_path(monkeypatch, folder)
    return folder


@pytest.fixture
def first_plugins(monkeypatch: pytest.MonkeyPatch) -> Path:
    """A third-party backend that declares a priority above every built-in."""
    folder = FIXTURES / "plugins_first"
    _add_plugin_path(monkeypatch, folder)
    return folder


@pytest.fixture
def rewrite_plugins(monkeypatch: pytest.MonkeyPatch) -> Path:
    """A third-party rewrite plugin, with a fake backend that needs it."""
    folder = FIXTURES / "plugins_rewrite"
    _add_plugin_path(monkeypatch, folder)
    return folder


@pytest.fixture
def broken_plugins(monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = FIXTURES / "plugins_broken"
    _add_plugin_path(monkeypatch, folder)
    return folder


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "cache"
    monkeypatch.setenv("LITEPORT_CACHE", str(path))
    return path


@pytest.fixture
def reuse_plugins(monkeypatch: pytest.MonkeyPatch) -> Path:
    """Backends that show what the engine shares between the modes of a model."""
    folder = FIXTURES / "plugins_reuse"
    _add_plugin_path(monkeypatch, folder)
    return folder
