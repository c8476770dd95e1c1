"""The plugin manager: entry-point discovery, conflicts, broken plugins, strict mode."""

from __future__ import annotations

import types
from collections.abc import Iterator
from pathlib import Path

import pytest

from liteport.errors import PluginError
from liteport.hookspecs import hookimpl
from liteport.plugins import PluginManager, get_plugin_manager
from liteport.types import BackendInfo, EnvironmentSpec


def _backend_plugin(name: str) -> types.SimpleNamespace:
    env = EnvironmentSpec(name=f"{name}-env", python="3.11", lock="/dev/null")

    @hookimpl
    def liteport_backends() -> Iterator[BackendInfo]:
        yield BackendInfo(name="same", version="1", environments=(env,), modes=("fp32",))

    return types.SimpleNamespace(liteport_backends=liteport_backends)


def test_entry_point_discovers_fake_plugin(fake_plugins: Path) -> None:
    pm = get_plugin_manager(strict=True)
    backends = pm.backends()
    assert "fake" in backends
    assert backends["fake"].provider == "fake"
    entry = next(e for e in pm.entries if e.name == "fake")
    assert entry.distribution == "liteport-fake"
    assert "liteport_convert" in entry.hooks
    assert "fake-env" in pm.environments()
    # a third-party plugin's environments get its own distribution installed; built-ins do not
    assert backends["fake"].environments[0].distributions == ("liteport-fake",)
    assert all(not e.distributions for e in backends["ai-edge-torch"].environments)


def test_builtin_backends_register_through_entry_points() -> None:
    pm = get_plugin_manager(strict=True)
    assert "ai-edge-torch" in pm.backends()
    assert "numeric" in pm.validators()
    assert {e.distribution for e in pm.entries if e.name in ("ai-edge-torch", "numeric")} == {"liteport"}


def test_two_plugins_claiming_one_name_is_an_error_naming_both() -> None:
    pm = PluginManager()
    pm.register(_backend_plugin("a"), name="plugin-a", distribution="dist-a")
    pm.register(_backend_plugin("b"), name="plugin-b", distribution="dist-b")
    with pytest.raises(PluginError) as info:
        pm.backends()
    assert "plugin-a" in str(info.value) and "plugin-b" in str(info.value)
    assert "dist-a" in str(info.value) and "dist-b" in str(info.value)


def test_same_plugin_name_twice_is_an_error() -> None:
    pm = PluginManager()
    pm.register(_backend_plugin("a"), name="dup", distribution="dist-a")
    with pytest.raises(PluginError, match=r"dist-a.*dist-b"):
        pm.register(_backend_plugin("b"), name="dup", distribution="dist-b")


def test_misspelled_hook_fails_loudly() -> None:
    @hookimpl
    def liteport_backendz() -> Iterator[BackendInfo]:
        yield from ()

    pm = PluginManager()
    with pytest.raises(Exception, match="liteport_backendz"):
        pm.register(types.SimpleNamespace(liteport_backendz=liteport_backendz), name="typo")


def test_broken_plugin_is_reported_with_traceback_and_others_still_load(
    broken_plugins: Path, fake_plugins: Path
) -> None:
    pm = get_plugin_manager(strict=False)
    assert "fake" in pm.backends()
    failure = next(f for f in pm.failures if f.name == "broken")
    assert failure.distribution == "liteport-broken"
    assert "needs a package that is not installed" in failure.error
    assert "Traceback" in failure.traceback


def test_broken_plugin_is_fatal_when_strict(broken_plugins: Path) -> None:
    with pytest.raises(PluginError, match="broken"):
        get_plugin_manager(strict=True)


def test_third_party_cannot_override_a_builtin_name() -> None:
    pm = PluginManager()
    pm.register(_backend_plugin("builtin"), name="builtin", distribution="liteport")
    pm.register(_backend_plugin("intruder"), name="intruder", distribution="someones-plugin")
    backends = pm.backends()
    assert backends["same"].provider == "builtin"
    failure = next(f for f in pm.failures if f.name == "intruder")
    assert "built-in name" in failure.error and "someones-plugin" in failure.error

    strict = PluginManager(strict=True)
    strict.register(_backend_plugin("intruder"), name="intruder", distribution="someones-plugin")
    strict.register(_backend_plugin("builtin"), name="builtin", distribution="liteport")
    with pytest.raises(PluginError, match="built-in name"):
        strict.backends()


def test_plugins_command_shows_loaded_failed_and_disabled(
    broken_plugins: Path, fake_plugins: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json
    import subprocess
    import sys

    monkeypatch.setenv("LITEPORT_DISABLE_PLUGINS", "qparams")
    monkeypatch.setenv("LITEPORT_TRACE_PLUGINS", "1")
    out = subprocess.run(
        [sys.executable, "-m", "liteport", "plugins", "--json"], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    rows = {row["name"]: row for row in json.loads(out.stdout)["plugins"]}
    assert rows["fake"]["status"] == "loaded" and rows["fake"]["distribution"] == "liteport-fake"
    assert "liteport_convert" in rows["fake"]["hooks"]
    assert rows["broken"]["status"] == "failed" and "not installed" in rows["broken"]["error"]
    assert rows["qparams"]["status"] == "disabled"
    assert "liteport-trace: liteport_backends from fake: [fake, fake-broken]" in out.stderr
