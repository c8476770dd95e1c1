"""The conformance checks as plain functions: each returns the problems it found, one line each.

Used by the pytest plugin (``liteport.testing.plugin``); usable without pytest. A problem names
the backend, the record field or file and line, and says what to do.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import re
import subprocess
import sys
from collections.abc import Callable, Iterable, Mapping
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pluggy

from liteport import hookspecs
from liteport.plugins import PluginManager
from liteport.types import (
    ERROR_KINDS,
    LAYOUTS,
    MODES,
    BackendInfo,
    EnvironmentSpec,
    ErrorInfo,
    Job,
    ModelSpec,
    Result,
)

NEEDS = ("torch", "onnx", "qat")
NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
PYTHON = re.compile(r"^3\.\d+$")
# name[extras]==version, optionally with an environment marker; nothing else is a pin.
PIN = re.compile(
    r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)(\[[A-Za-z0-9,._-]+\])?==(?P<version>[A-Za-z0-9][A-Za-z0-9.+!_-]*)(\s*;.*)?$"
)
# Registration runs on the host for every liteport command: none of these may be imported by it.
HEAVY_MODULES = ("torch", "tensorflow", "jax", "onnx", "onnxruntime", "ai_edge_litert", "keras")
MAX_MESSAGE = 500
REQUIRED_HOOKS = ("liteport_backends", "liteport_convert")


def specs() -> dict[str, Callable[..., Any]]:
    """Every hookspec in ``liteport.hookspecs``, by name."""
    return {
        name: fn
        for name, fn in vars(hookspecs).items()
        if name.startswith("liteport_")
        and inspect.isfunction(fn)
        and hasattr(fn, f"{hookspecs.PROJECT}_spec")
    }


def normalize(name: str) -> str:
    """A distribution name in PEP 503 form, so "tf_keras" and "tf-keras" compare equal."""
    return re.sub(r"[-_.]+", "-", name).lower()


def record_problems(backend: Any, quantizers: Iterable[str] = ()) -> list[str]:
    """What is wrong with a registration record yielded by ``liteport_backends``."""
    label = f"backend {getattr(backend, 'name', backend)!r}"
    if not isinstance(backend, BackendInfo):
        return [
            f"{label}: liteport_backends yielded a {type(backend).__name__}, not a liteport.types.BackendInfo"
        ]
    problems = _frozen_problems(backend, label)
    if not NAME.match(backend.name):
        problems.append(f"{label}: name must be lower-case letters, digits, '.', '_' or '-'")
    if not isinstance(backend.version, str) or not backend.version:
        problems.append(f"{label}: version must be a non-empty string, got {backend.version!r}")
    for field, allowed in (("modes", MODES), ("layouts", LAYOUTS)):
        values = getattr(backend, field)
        if not isinstance(values, tuple) or not values:
            problems.append(f"{label}: {field} must be a non-empty tuple, got {values!r}")
            continue
        for value in values:
            if value not in allowed:
                problems.append(
                    f"{label}: {field[:-1]} {value!r} is not a liteport {field[:-1]} "
                    f"(liteport.types.{field.upper()}: {', '.join(allowed)})"
                )
        if len(set(values)) != len(values):
            problems.append(f"{label}: {field} lists a value twice: {values!r}")
    if backend.needs not in NEEDS:
        problems.append(f"{label}: needs must be one of {', '.join(NEEDS)}, got {backend.needs!r}")
    if backend.quantizer is not None and backend.quantizer not in set(quantizers):
        problems.append(
            f"{label}: quantizer {backend.quantizer!r} is not registered by any installed plugin "
            "(install the plugin that provides it, or set quantizer=None)"
        )
    if not isinstance(backend.environments, tuple) or not backend.environments:
        problems.append(f"{label}: environments must be a non-empty tuple of EnvironmentSpec")
        return problems
    names = [getattr(env, "name", None) for env in backend.environments]
    if len(set(names)) != len(names):
        problems.append(f"{label}: two environments share a name: {names!r}")
    for env in backend.environments:
        problems += environment_problems(env, backend.modes if isinstance(backend.modes, tuple) else ())
    return problems


def environment_problems(env: Any, backend_modes: tuple[str, ...] = ()) -> list[str]:
    """What is wrong with one EnvironmentSpec: name, Python version, modes, its lock file."""
    label = f"environment {getattr(env, 'name', env)!r}"
    if not isinstance(env, EnvironmentSpec):
        return [f"{label}: is a {type(env).__name__}, not a liteport.types.EnvironmentSpec"]
    problems = _frozen_problems(env, label)
    if not NAME.match(env.name):
        problems.append(
            f"{label}: name must be lower-case letters, digits, '.', '_' or '-' (e.g. 'mytool-1.2')"
        )
    if not isinstance(env.python, str) or not PYTHON.match(env.python):
        problems.append(f"{label}: python must be a version like '3.11', got {env.python!r}")
    extra = [m for m in env.modes if m not in backend_modes]
    if extra:
        problems.append(f"{label}: modes {extra!r} are not among its backend's modes {backend_modes!r}")
    return problems + lock_problems(env)


def lock_problems(env: EnvironmentSpec) -> list[str]:
    """A lock must exist, be absolute and pin every package exactly (``name==version``)."""
    label = f"environment {env.name!r}"
    lock = Path(env.lock)
    if not lock.is_absolute():
        return [f"{label}: lock {env.lock!r} must be an absolute path (build it from Path(__file__))"]
    if not lock.is_file():
        return [f"{label}: lock file {lock} does not exist (ship it as package data)"]
    problems: list[str] = []
    pinned: set[str] = set()
    for number, raw in enumerate(lock.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = PIN.match(line)
        if match is None:
            problems.append(
                f"{label}: {lock.name}:{number}: {line!r} is not an exact pin; write name==version "
                "(a complete lock from `pip freeze`)"
            )
            continue
        pinned.add(normalize(match["name"]))
    if not pinned and not problems:
        problems.append(f"{label}: lock file {lock} pins nothing")
    if env.no_deps and pinned and "pluggy" not in pinned:
        problems.append(
            f"{label}: {lock.name} does not pin pluggy; the lock is installed with --no-deps and "
            "liteport's worker needs it (add pluggy==1.6.0)"
        )
    missing = [p for p in env.key_packages if pinned and normalize(p) not in pinned]
    if missing:
        problems.append(f"{label}: key_packages {missing!r} are not pinned in {lock.name}")
    return problems


def plugin_object(provider: str) -> Any:
    """The object registered under entry-point name ``provider`` in the ``liteport`` group."""
    group = (
        entry_points(group=hookspecs.PROJECT)
        if sys.version_info >= (3, 10)
        else entry_points()[hookspecs.PROJECT]
    )
    for ep in group:
        if ep.name == provider:
            return ep.load()
    raise LookupError(f"no entry point named {provider!r} in the 'liteport' group")


def hook_problems(plugin: Any, label: str) -> list[str]:
    """Hook implementations of ``plugin`` against the specs: names, markers, argument names, pluggy."""
    known = specs()
    problems = []
    for name in sorted(dir(plugin)):
        impl = getattr(plugin, name, None)
        if not name.startswith("liteport_") or not callable(impl):
            continue
        if name not in known:
            problems.append(
                f"{label}: {name} is not a liteport hook (misspelled? hooks: {', '.join(sorted(known))})"
            )
            continue
        if not hasattr(impl, f"{hookspecs.PROJECT}_impl"):
            problems.append(
                f"{label}: {name} is not decorated with @liteport.hookspecs.hookimpl, so it is never called"
            )
        expected = list(inspect.signature(known[name]).parameters)
        got = list(inspect.signature(impl).parameters)
        if got != expected:
            problems.append(
                f"{label}: {name}({', '.join(got)}) does not match the spec {name}({', '.join(expected)})"
            )
    for name in REQUIRED_HOOKS:
        if not callable(getattr(plugin, name, None)):
            problems.append(f"{label}: a backend plugin must implement {name} (see plugins/README.md)")
    manager = pluggy.PluginManager(hookspecs.PROJECT)
    manager.add_hookspecs(hookspecs)
    try:
        manager.register(plugin, name="conformance")
        manager.check_pending()
    except pluggy.PluginValidationError as exc:
        problems.append(f"{label}: pluggy rejects it: {str(exc).strip().splitlines()[0]}")
    return problems


def dispatch_problems(plugin: Any, backend: BackendInfo, label: str, workdir: str) -> list[str]:
    """The manager hands ``plugin`` the jobs of its own backend and no one else's.

    The plugin is registered beside a decoy plugin that provides another backend; a job for each
    backend must be routed to its own provider's ``liteport_convert`` only (no hook body runs).
    """
    manager = PluginManager()
    decoy = _Decoy()
    try:
        manager.register(plugin, name=backend.provider or "conformance")
        manager.register(decoy, name="liteport-conformance-decoy")
    except Exception as exc:
        return [f"{label}: the plugin cannot be registered beside another plugin: {exc}"]
    problems = []
    for job_backend, expected in (
        (backend.name, backend.provider or "conformance"),
        (_Decoy.NAME, "liteport-conformance-decoy"),
    ):
        called = manager.providers_called(
            "liteport_convert",
            Job(
                kind="convert",
                id="conformance",
                workdir=workdir,
                model=ModelSpec(ref="zoo:tiny_cnn"),
                backend=job_backend,
            ),
        )
        if called != [expected]:
            problems.append(
                f"{label}: a convert job for backend {job_backend!r} would reach {called or 'no plugin'}, "
                f"not only {expected!r} (does the plugin register {backend.name!r} under another name?)"
            )
    return problems


class _Decoy:
    """A plugin that provides one backend of its own; its convert hook must only see that backend's jobs."""

    NAME = "liteport-conformance-decoy"

    @hookspecs.hookimpl
    def liteport_backends(self) -> Iterable[BackendInfo]:
        env = EnvironmentSpec(name="liteport-conformance-decoy-env", python="3.11", lock="")
        yield BackendInfo(name=self.NAME, version="0", environments=(env,), modes=("fp32",))

    @hookspecs.hookimpl
    def liteport_convert(self, job: Job) -> Result:
        raise AssertionError("the dispatch check only routes jobs; it never runs a conversion")


def registration_import_problems(provider: str, label: str) -> list[str]:
    """Registration must not import torch, TensorFlow or other heavy modules (checked in a fresh process)."""
    script = (
        "import json, sys\n"
        "from liteport.testing.checks import plugin_object\n"
        f"plugin = plugin_object({provider!r})\n"
        "for hook in ('liteport_backends', 'liteport_quantizers', 'liteport_validators'):\n"
        "    if callable(getattr(plugin, hook, None)):\n"
        "        list(getattr(plugin, hook)() or ())\n"
        f"print(json.dumps(sorted(m for m in {list(HEAVY_MODULES)!r} if m in sys.modules)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False, timeout=300
    )
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return [f"{label}: loading the plugin and calling its registration hooks failed: {last}"]
    heavy = json.loads(done.stdout.strip().splitlines()[-1])
    if heavy:
        return [
            f"{label}: registration imports {', '.join(heavy)}; import heavy packages inside the work hooks "
            "so `liteport backends` stays instant"
        ]
    return []


def error_problems(error: ErrorInfo | None, label: str) -> list[str]:
    """A reported error has a known kind and a non-empty, one-line message of reasonable length."""
    if error is None:
        return [f"{label}: failed without an error record"]
    problems = []
    if error.kind not in ERROR_KINDS:
        problems.append(f"{label}: error kind {error.kind!r} is not one of liteport.types.ERROR_KINDS")
    if not error.message.strip():
        problems.append(f"{label}: error message is empty")
    if "\n" in error.message:
        first = error.message.splitlines()[0]
        problems.append(
            f"{label}: error message is {len(error.message.splitlines())} lines, not one: {first!r}…"
        )
    if len(error.message) > MAX_MESSAGE:
        problems.append(
            f"{label}: error message is {len(error.message)} characters; keep it under {MAX_MESSAGE}"
        )
    return problems


def _frozen_problems(record: Any, label: str) -> list[str]:
    params = getattr(type(record), "__dataclass_params__", None)
    if not dataclasses.is_dataclass(record) or params is None or not params.frozen:
        return [f"{label}: {type(record).__name__} must be a frozen dataclass record from liteport.types"]
    return []


def offered(
    backend: BackendInfo, environments: Mapping[str, EnvironmentSpec] | None = None
) -> list[tuple[str, str]]:
    """(environment, mode) pairs the backend offers, in declaration order."""
    envs = environments.values() if environments is not None else backend.environments
    return [(env.name, mode) for env in envs for mode in backend.modes if env.offers(mode, backend.modes)]
