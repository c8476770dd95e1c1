"""The plugin manager: loads plugins from the ``liteport`` entry-point group and offers
typed accessors. Nothing else in liteport calls ``pm.hook`` directly.

Work hooks are dispatched by provider: a convert job goes to the one plugin that registered the
backend it names (likewise quantizers and validators), so no plugin checks names itself.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from typing import Any, TypeVar, cast

import pluggy

from liteport import hookspecs
from liteport.errors import NotProvided, PluginError
from liteport.types import (
    BackendInfo,
    EnvironmentSpec,
    Job,
    QuantizerInfo,
    Result,
    RewriteInfo,
    ValidatorInfo,
    evolve,
)

GROUP = "liteport"
BUILTIN_DISTRIBUTION = "liteport"

R = TypeVar("R", BackendInfo, QuantizerInfo, ValidatorInfo, RewriteInfo)


@dataclass(frozen=True)
class PluginFailure:
    """A plugin whose entry point could not be loaded or registered."""

    name: str
    distribution: str
    error: str  # one line
    traceback: str


@dataclass(frozen=True)
class PluginEntry:
    """A loaded plugin: where it came from and which hooks it implements."""

    name: str
    distribution: str
    version: str
    hooks: tuple[str, ...]


@dataclass
class PluginManager:
    """Loads the installed plugins and answers typed questions about them."""

    strict: bool = False
    failures: list[PluginFailure] = field(default_factory=list)
    entries: list[PluginEntry] = field(default_factory=list)
    disabled: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._pm = pluggy.PluginManager(hookspecs.PROJECT)
        self._pm.add_hookspecs(hookspecs)
        self._distributions: dict[str, tuple[str, str]] = {}
        self._collected: dict[str, dict[str, Any]] = {}
        self._tracing = False

    # -- loading ---------------------------------------------------------------------------

    def load_entry_points(self) -> PluginManager:
        if os.environ.get("LITEPORT_TRACE_PLUGINS", "") not in ("", "0"):
            self._tracing = True
            self._pm.trace.root.setwriter(lambda text: sys.stderr.write(f"liteport-trace: {text}"))
            self._pm.enable_tracing()  # logs every work-hook call with its arguments and result
        blocked = {n.strip() for n in os.environ.get("LITEPORT_DISABLE_PLUGINS", "").split(",") if n.strip()}
        for ep in _liteport_entry_points():
            if ep.name in blocked:
                self.disabled.append(ep.name)  # blocked by the user: not loaded, not an error
                continue
            dist_name, dist_version = _distribution_of(ep)
            try:
                self.register(ep.load(), name=ep.name, distribution=dist_name, version=dist_version)
            except Exception as exc:  # a broken plugin must not hide the others
                self._fail(ep.name, dist_name, exc)
        return self

    def register(self, plugin: Any, *, name: str, distribution: str = "", version: str = "") -> None:
        """Register ``plugin`` (a module or object with hookimpls); misspelled hooks are errors."""
        if self._pm.has_plugin(name):
            other = self._distributions.get(name, ("?", ""))[0]
            raise PluginError(
                f"plugin name {name!r} is registered by both {other!r} and {distribution or '?'!r}"
            )
        self._collected.clear()
        self._pm.register(plugin, name=name)
        try:
            self._pm.check_pending()
        except pluggy.PluginValidationError:
            self._pm.unregister(name=name)
            raise
        self._distributions[name] = (distribution, version)
        hooks = tuple(sorted(h.name for h in self._pm.get_hookcallers(plugin) or ()))
        self.entries.append(PluginEntry(name=name, distribution=distribution, version=version, hooks=hooks))

    def _fail(self, name: str, distribution: str, exc: BaseException) -> None:
        detail = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        message = f"{type(exc).__name__}: {exc}".splitlines()[0]
        failure = PluginFailure(name=name, distribution=distribution, error=message, traceback=detail)
        self.failures.append(failure)
        if self.strict:
            raise PluginError(
                f"plugin {name!r} from {distribution or 'an unknown distribution'} failed to load: {message}",
                hint="fix or uninstall it, or run without --strict-plugins",
            ) from exc

    # -- registration accessors -----------------------------------------------------------

    def backends(self) -> dict[str, BackendInfo]:
        return self._collect(self._pm.hook.liteport_backends, "backend")

    def quantizers(self) -> dict[str, QuantizerInfo]:
        return self._collect(self._pm.hook.liteport_quantizers, "quantizer")

    def validators(self) -> dict[str, ValidatorInfo]:
        return self._collect(self._pm.hook.liteport_validators, "validator")

    def rewrites(self) -> dict[str, RewriteInfo]:
        return self._collect(self._pm.hook.liteport_rewrites, "rewrite")

    def environments(self) -> dict[str, EnvironmentSpec]:
        """Every environment any backend or validator declares, by name."""
        found: dict[str, tuple[EnvironmentSpec, str]] = {}
        declared: list[tuple[EnvironmentSpec, str]] = []
        for backend in self.backends().values():
            declared += [(env, backend.provider) for env in backend.environments]
        for validator in self.validators().values():
            declared.append((validator.environment, validator.provider))
        for env, provider in declared:
            if env.name in found and found[env.name][0] != env:
                raise PluginError(
                    f"environment {env.name!r} is declared differently by "
                    f"{found[env.name][1]!r} and {provider!r}"
                )
            found.setdefault(env.name, (env, provider))
        return {name: env for name, (env, _) in sorted(found.items())}

    def _collect(self, hook: pluggy.HookCaller, what: str) -> dict[str, R]:
        if what not in self._collected:  # once: failures found here must be reported once
            self._collected[what] = self._gather(hook, what)
        return dict(self._collected[what])

    def _gather(self, hook: pluggy.HookCaller, what: str) -> dict[str, Any]:
        records: dict[str, Any] = {}
        for impl in reversed(hook.get_hookimpls()):  # registration order
            try:
                produced = cast("Iterable[Any] | None", impl.function())
                items = list(produced or ())
                if self._tracing:
                    names = ", ".join(item.name for item in items)
                    sys.stderr.write(f"liteport-trace: {hook.name} from {impl.plugin_name}: [{names}]\n")
            except Exception as exc:
                self._fail(impl.plugin_name, self._distributions.get(impl.plugin_name, ("", ""))[0], exc)
                continue
            for item in items:
                if item.name in records and self._is_builtin(records[item.name].provider) != self._is_builtin(
                    impl.plugin_name
                ):
                    intruder = (
                        records[item.name].provider
                        if self._is_builtin(impl.plugin_name)
                        else impl.plugin_name
                    )
                    self._fail(
                        intruder,
                        self._distributions.get(intruder, ("", ""))[0],
                        PluginError(
                            f"{what} {item.name!r} is a built-in name; {self._describe(intruder)} cannot "
                            "override it (its record was ignored: rename it)"
                        ),
                    )
                    if intruder == impl.plugin_name:
                        continue
                elif item.name in records:
                    first, second = records[item.name].provider, impl.plugin_name
                    raise PluginError(
                        f"{what} {item.name!r} is registered by both "
                        f"{self._describe(first)} and {self._describe(second)}",
                        hint="uninstall one of them",
                    )
                records[item.name] = _with_distribution(
                    evolve(item, provider=impl.plugin_name),
                    self._distributions.get(impl.plugin_name, ("", ""))[0],
                )
        return dict(sorted(records.items()))

    def _is_builtin(self, plugin_name: str) -> bool:
        return self._distributions.get(plugin_name, ("", ""))[0] == BUILTIN_DISTRIBUTION

    def _describe(self, plugin_name: str) -> str:
        dist = self._distributions.get(plugin_name, ("", ""))[0]
        return f"plugin {plugin_name!r} ({dist})" if dist else f"plugin {plugin_name!r}"

    # -- work hooks (worker side) ----------------------------------------------------------

    def convert(self, job: Job) -> Result:
        return self._call(self._work_caller("liteport_convert", job), "liteport_convert", job)

    def quantize(self, job: Job) -> Result:
        return self._call(self._work_caller("liteport_quantize", job), "liteport_quantize", job)

    def validate(self, job: Job) -> Result:
        return self._call(self._work_caller("liteport_validate", job), "liteport_validate", job)

    def rewrite(self, job: Job, graph: Any) -> Result:
        """Apply the rewrite ``job.options["rewrite"]`` to ``graph`` (a torch.fx GraphModule) in place."""
        caller = self._work_caller("liteport_rewrite", job)
        result: Result | None = caller(job=job, graph=graph)
        if result is None:
            raise NotProvided(
                f"plugin {caller.get_hookimpls()[0].plugin_name!r} returned no result from liteport_rewrite"
            )
        return result

    def tensor_map(self, job: Job) -> Result:
        """The backend's ``liteport_tensor_map`` answer (NotProvided when it implements none)."""
        return self._call(self._work_caller("liteport_tensor_map", job), "liteport_tensor_map", job)

    def implements(self, hook_name: str, backend: str) -> bool:
        """Whether the plugin that registered ``backend`` implements ``hook_name`` (host side, no call)."""
        record = self.backends().get(backend)
        return record is not None and any(
            impl.plugin_name == record.provider for impl in getattr(self._pm.hook, hook_name).get_hookimpls()
        )

    def providers_called(self, hook_name: str, job: Job) -> list[str]:
        """The plugins whose ``hook_name`` implementation a call for ``job`` would run."""
        return [impl.plugin_name for impl in self._work_caller(hook_name, job).get_hookimpls()]

    def _work_caller(self, hook_name: str, job: Job) -> pluggy.HookCaller:
        """``hook_name`` restricted to the one plugin that registered what ``job`` names."""
        record: BackendInfo | QuantizerInfo | ValidatorInfo | RewriteInfo | None
        if hook_name in ("liteport_convert", "liteport_tensor_map"):
            what, name, record = "backend", job.backend, self.backends().get(job.backend or "")
        elif hook_name == "liteport_quantize":
            what, name, record = "quantizer", job.quantizer, self.quantizers().get(job.quantizer or "")
        elif hook_name == "liteport_rewrite":
            name = str(job.options.get("rewrite", ""))
            what, record = "rewrite", self.rewrites().get(name)
        else:
            what, name, record = "validator", job.validator, self.validators().get(job.validator or "")
        if record is None:
            raise NotProvided(f"no plugin in this environment provides {what} {name!r} ({self.summary()})")
        others = [
            plugin for plugin_name, plugin in self._pm.list_name_plugin() if plugin_name != record.provider
        ]
        caller = self._pm.subset_hook_caller(hook_name, remove_plugins=others)
        if not caller.get_hookimpls():
            raise NotProvided(
                f"plugin {record.provider!r} registers {what} {name!r} but implements no {hook_name}"
            )
        return caller

    @staticmethod
    def _call(caller: pluggy.HookCaller, hook_name: str, job: Job) -> Result:
        result: Result | None = caller(job=job)
        if result is None:
            provider = caller.get_hookimpls()[0].plugin_name
            raise NotProvided(f"plugin {provider!r} returned no result from {hook_name}")
        return result

    def summary(self) -> str:
        """Loaded and failed plugins, in one line."""
        loaded = ", ".join(e.name for e in self.entries) or "none"
        broken = "; ".join(f"{f.name}: {f.error}" for f in self.failures)
        return f"plugins loaded: {loaded}" + (f"; failed: {broken}" if broken else "")


def _with_distribution(item: R, distribution: str) -> R:
    """A third-party plugin's environments also get the plugin's own distribution installed."""
    if distribution in ("", BUILTIN_DISTRIBUTION):
        return item

    def add(env: EnvironmentSpec) -> EnvironmentSpec:
        needed = (
            env.distributions if distribution in env.distributions else (*env.distributions, distribution)
        )
        return evolve(env, distributions=needed)

    if isinstance(item, BackendInfo):
        return evolve(item, environments=tuple(add(e) for e in item.environments))  # type: ignore[return-value]
    if isinstance(item, ValidatorInfo):
        return evolve(item, environment=add(item.environment))  # type: ignore[return-value]
    return item


def _liteport_entry_points() -> Sequence[EntryPoint]:
    if sys.version_info >= (3, 10):
        eps: Iterable[EntryPoint] = entry_points(group=GROUP)
    else:  # pragma: no cover - Python 3.9 (TensorFlow 2.8 workers) has only the dict form
        eps = entry_points().get(GROUP, [])
    # One distribution can be visible twice (editable finder + site); keep its first copy.
    seen: set[tuple[str, str]] = set()
    unique = []
    for ep in eps:
        key = (ep.name, _distribution_of(ep)[0])
        if key not in seen:
            seen.add(key)
            unique.append(ep)
    return unique


def _distribution_of(ep: EntryPoint) -> tuple[str, str]:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return "", ""
    return str(dist.metadata["Name"]), str(dist.version)


def get_plugin_manager(*, strict: bool | None = None) -> PluginManager:
    """A manager with every installed plugin loaded. ``LITEPORT_STRICT_PLUGINS=1`` implies strict."""
    if strict is None:
        strict = os.environ.get("LITEPORT_STRICT_PLUGINS", "") not in ("", "0")
    return PluginManager(strict=strict).load_entry_points()
