"""The fallback chain: try (backend, environment) candidates in order, keep a valid model.

``first`` stops at the first attempt that converts and passes every validator; ``fastest``,
``smallest`` and ``most-accurate`` run every candidate and keep the best valid one.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from liteport.errors import UsageError
from liteport.pipeline import Engine
from liteport.pipeline.rewriting import attempts_with_rewrites
from liteport.types import Attempt, BackendInfo, EnvironmentSpec, ModelSpec

PICKS = ("first", "fastest", "smallest", "most-accurate")
Candidate = tuple[BackendInfo, EnvironmentSpec]


@dataclass(frozen=True)
class ChainOutcome:
    attempts: list[Attempt]
    chosen: Attempt | None
    pick: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "pick": self.pick,
            "chosen": self.attempts.index(self.chosen) if self.chosen else None,
            "attempts": [a.to_dict() for a in self.attempts],
        }


def configured_chain(cwd: Path) -> list[str] | None:
    """``chain = [...]`` from ``[tool.liteport]`` in ./pyproject.toml, or from ./liteport.toml."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib

    for name, table in (("liteport.toml", ()), ("pyproject.toml", ("tool", "liteport"))):
        path = cwd / name
        if not path.is_file():
            continue
        try:
            data: Any = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise UsageError(f"{path} is not valid TOML: {exc}") from None
        for part in table:
            data = data.get(part, {}) if isinstance(data, dict) else {}
        chain = data.get("chain") if isinstance(data, dict) else None
        if chain is not None:
            if not isinstance(chain, list) or not all(isinstance(x, str) for x in chain):
                raise UsageError(f"{path}: chain must be a list of backend or environment names")
            return list(chain)
    return None


def resolve(backends: Mapping[str, BackendInfo], items: Sequence[str]) -> list[Candidate]:
    """Chain items (backend, environment, or backend/environment) to candidates, in order."""
    by_env = {e.name: (b, e) for b in backends.values() for e in b.environments}
    out: list[Candidate] = []
    for item in items:
        if "/" in item:
            backend_name, env_name = item.split("/", 1)
            if (
                backend_name not in backends
                or env_name not in by_env
                or by_env[env_name][0].name != backend_name
            ):
                raise UsageError(
                    f"chain item {item!r} is not a backend/environment pair", hint="see `liteport backends`"
                )
            found = [by_env[env_name]]
        elif item in backends:
            found = [(backends[item], e) for e in backends[item].environments]
        elif item in by_env:
            found = [by_env[item]]
        else:
            raise UsageError(
                f"unknown backend or environment {item!r} in the chain",
                hint=f"backends: {', '.join(backends)}; environments: {', '.join(by_env)}",
            )
        out += [c for c in found if c not in out]
    return out


def default_candidates(backends: Mapping[str, BackendInfo], mode: str) -> list[Candidate]:
    """Every candidate that offers ``mode``, in the order plugins declare.

    Backends by ``priority`` (higher first, ties by name), each backend's environments in its
    own order of preference.
    """
    ordered = sorted(backends.values(), key=lambda b: (-b.priority, b.name))
    return [(b, e) for b in ordered for e in b.environments if e.offers(mode, b.modes)]


def run_chain(
    engine: Engine,
    model: ModelSpec,
    candidates: Sequence[Candidate],
    mode: str,
    *,
    pick: str = "first",
    options: Mapping[str, Any] | None = None,
    thresholds: Mapping[str, Any] | None = None,
    rewrites: bool = True,
) -> ChainOutcome:
    """Try ``candidates`` in order; a candidate that fails on an op a rewrite replaces is tried
    again with the model rewritten (``rewrites=False``: never), before the next candidate."""
    if pick not in PICKS:
        raise UsageError(f"unknown --pick {pick!r}", hint=f"choose one of: {', '.join(PICKS)}")
    attempts: list[Attempt] = []
    for backend, env in candidates:
        tried = attempts_with_rewrites(
            engine, model, backend, env, mode, options=options, thresholds=thresholds, rewrites=rewrites
        )
        attempts += tried
        if any(a.error is not None and a.error.kind == "bad_input" for a in tried):
            break  # the model itself is unusable: no other backend can do better
        if tried[-1].ok and pick == "first":
            break
    return ChainOutcome(attempts=attempts, chosen=choose(attempts, pick), pick=pick)


def choose(attempts: Sequence[Attempt], pick: str) -> Attempt | None:
    valid = [a for a in attempts if a.ok]
    if not valid:
        return None
    if pick == "fastest":
        return min(valid, key=lambda a: float(a.facts.get("latency_ms") or float("inf")))
    if pick == "smallest":
        return min(valid, key=lambda a: float(a.facts.get("size_bytes") or float("inf")))
    if pick == "most-accurate":
        return max(valid, key=lambda a: float(a.metrics.get("sqnr_db") or float("-inf")))
    return valid[0]
