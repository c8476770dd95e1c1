"""The pytest side of ``liteport.testing``: options, fixtures, and the suite added to the session.

With ``--liteport-backend NAME`` the tests of ``liteport.testing.suite`` are collected into the
run, whatever paths pytest was given. Fixtures a backend author may override in a root
``conftest.py``: ``liteport_unsupported_model`` (a ModelRef whose op the backend rejects) and
``liteport_runtime`` (a liteport runtime object).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar, cast

import pytest

from liteport.pipeline import Engine
from liteport.plugins import PluginManager, get_plugin_manager
from liteport.runtimes.local import LocalRuntime
from liteport.runtimes.venv import VenvRuntime
from liteport.types import BackendInfo, EnvironmentSpec

SUITE = Path(__file__).with_name("suite.py")
DEFAULT_UNSUPPORTED_MODEL = "liteport.testing.models:unique_values"
RUNTIMES = ("venv", "local")

F = TypeVar("F", bound=Callable[..., Any])


def _session_fixture(function: F) -> F:
    """``pytest.fixture(scope="session")``, typed so the fixture keeps its signature for mypy."""
    return cast(F, pytest.fixture(scope="session")(function))


def _first(function: F) -> F:
    """``pytest.hookimpl(tryfirst=True)``, typed likewise."""
    return cast(F, pytest.hookimpl(tryfirst=True)(function))


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("liteport", "liteport backend conformance suite")
    group.addoption("--liteport-backend", metavar="NAME", help="run the conformance suite for this backend")
    group.addoption(
        "--liteport-env",
        metavar="ENV[,ENV]",
        help="only these of the backend's environments (default: all it declares)",
    )
    group.addoption(
        "--liteport-runtime",
        choices=RUNTIMES,
        default="venv",
        help="venv (default: build the pinned environments) or local (the current interpreter)",
    )
    group.addoption(
        "--liteport-modes",
        metavar="MODE[,MODE]",
        help="only these of the backend's modes (default: every mode it declares)",
    )
    group.addoption(
        "--liteport-unsupported-model",
        metavar="REF",
        default=DEFAULT_UNSUPPORTED_MODEL,
        help="ModelRef with an op the backend rejects (default: torch.unique); 'none' skips that check",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "liteport_conformance: a test of liteport's backend conformance suite")


def pytest_report_header(config: pytest.Config) -> str | None:
    backend = config.getoption("--liteport-backend")
    if not backend:
        return None
    envs = config.getoption("--liteport-env") or "all"
    runtime = config.getoption("--liteport-runtime")
    return f"liteport conformance: backend {backend}, environments {envs}, runtime {runtime}"


@_first  # before -k / -m deselection, so those select suite tests too
def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    backend = config.getoption("--liteport-backend")
    if not backend:
        return
    module = pytest.Module.from_parent(session, path=SUITE, nodeid=f"liteport-conformance[{backend}]")
    for item in session.genitems(module):
        item.add_marker(pytest.mark.liteport_conformance)
        items.append(item)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """One test per (environment, mode) the backend offers, and one per environment."""
    if "liteport_case" not in metafunc.fixturenames and "liteport_environment" not in metafunc.fixturenames:
        return
    name = metafunc.config.getoption("--liteport-backend")
    backend = _manager().backends().get(name) if name else None
    envs = _selected_environments(metafunc.config, backend) if backend else []
    if "liteport_case" in metafunc.fixturenames:
        assert backend is not None or not envs
        wanted = _option_list(metafunc.config, "--liteport-modes")
        cases = [
            (env.name, mode)
            for env in envs
            for mode in backend.modes  # type: ignore[union-attr]
            if env.offers(mode, backend.modes) and (not wanted or mode in wanted)  # type: ignore[union-attr]
        ]
        metafunc.parametrize("liteport_case", cases, ids=[f"{env}-{mode}" for env, mode in cases])
    else:
        metafunc.parametrize("liteport_environment", [e.name for e in envs], ids=[e.name for e in envs])


_MANAGER: list[PluginManager] = []


def _manager() -> PluginManager:
    """One plugin manager per test session (loading entry points twice would re-import plugins)."""
    if not _MANAGER:
        _MANAGER.append(get_plugin_manager(strict=False))
    return _MANAGER[0]


def _option_list(config: pytest.Config, option: str) -> list[str]:
    value = config.getoption(option) or ""
    return [part.strip() for part in str(value).split(",") if part.strip()]


def _selected_environments(config: pytest.Config, backend: BackendInfo) -> list[EnvironmentSpec]:
    wanted = _option_list(config, "--liteport-env")
    if not wanted:
        return list(backend.environments)
    known = {env.name: env for env in backend.environments}
    unknown = [name for name in wanted if name not in known]
    if unknown:
        raise pytest.UsageError(
            f"--liteport-env {', '.join(unknown)}: backend {backend.name!r} declares only {', '.join(known)}"
        )
    return [known[name] for name in wanted]


# -- fixtures ------------------------------------------------------------------------------------


@_session_fixture
def liteport_plugin_manager() -> PluginManager:
    """The plugin manager with every installed liteport plugin loaded (broken ones reported, not fatal)."""
    return _manager()


@_session_fixture
def liteport_backend_name(pytestconfig: pytest.Config) -> str:
    name = pytestconfig.getoption("--liteport-backend")
    if not name:
        pytest.skip("no --liteport-backend given")
    return str(name)


@_session_fixture
def liteport_backend(liteport_plugin_manager: PluginManager, liteport_backend_name: str) -> BackendInfo:
    """The backend under test, as the plugin manager registered it."""
    pm = liteport_plugin_manager
    backends = pm.backends()
    if liteport_backend_name not in backends:
        broken = "; ".join(
            f"plugin {f.name!r} ({f.distribution}) failed to load: {f.error}" for f in pm.failures
        )
        pytest.fail(
            f"backend {liteport_backend_name!r} is not registered; installed backends: "
            f"{', '.join(backends) or 'none'}"
            + (f"; {broken}" if broken else "")
            + " (is the plugin's distribution installed, with a 'liteport' entry point?)",
            pytrace=False,
        )
    return backends[liteport_backend_name]


@_session_fixture
def liteport_runtime(pytestconfig: pytest.Config) -> Any:
    """The runtime conversions run in: ``--liteport-runtime venv`` (default) or ``local``."""
    if pytestconfig.getoption("--liteport-runtime") == "local":
        return LocalRuntime()
    return VenvRuntime()


@_session_fixture
def liteport_engine(
    liteport_plugin_manager: PluginManager, liteport_runtime: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Engine]:
    """One pipeline engine for the session, so each environment's worker starts once."""
    with Engine(
        pm=liteport_plugin_manager,
        runtime=liteport_runtime,
        work_root=tmp_path_factory.mktemp("liteport-conformance"),
        progress=lambda message: print(f"  ▸ {message}", flush=True),
    ) as engine:
        yield engine


@_session_fixture
def liteport_unsupported_model(pytestconfig: pytest.Config) -> str | None:
    """A ModelRef with an op the backend cannot convert; None skips the unsupported-op check."""
    value = str(pytestconfig.getoption("--liteport-unsupported-model") or "")
    return None if value.lower() in ("", "none") else value
