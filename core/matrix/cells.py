"""The cells of a compatibility matrix: models x backends x environments x modes.

Cells are planned deterministically, each identified by a key over everything that decides its
result (model hash, lock hashes, backend version, mode, options); ``--shard k/n`` takes a
deterministic slice by key.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import field
from typing import Any

from liteport.errors import UsageError
from liteport.plugins import PluginManager
from liteport.runtimes.base import lock_hash
from liteport.stages.environment import REFERENCE_ENV
from liteport.stages.modelref import model_hash
from liteport.types import BackendInfo, EnvironmentSpec, ModelSpec, record
from liteport.zoo import names


@record
class Cell:
    """One point of the matrix."""

    model: str
    backend: str
    environment: str
    mode: str
    key: str = ""
    options: Mapping[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.model} · {self.backend}/{self.environment} · {self.mode}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "backend": self.backend,
            "environment": self.environment,
            "mode": self.mode,
            "options": dict(self.options),
        }


def expand_models(models: Sequence[str]) -> list[str]:
    """``zoo:all`` becomes every zoo model; other ModelRefs stay as they are."""
    out: list[str] = []
    for model in models:
        out += [f"zoo:{name}" for name in names()] if model == "zoo:all" else [model]
    return list(dict.fromkeys(out))


def plan(
    pm: PluginManager,
    models: Sequence[str],
    modes: Sequence[str],
    *,
    backends: Sequence[str] = (),
    environments: Sequence[str] = (),
    options: Mapping[str, Any] | None = None,
) -> list[Cell]:
    """Every cell, in a stable order, each with its key."""
    installed = pm.backends()
    unknown = [b for b in backends if b not in installed]
    if unknown:
        raise UsageError(f"unknown backend {', '.join(unknown)}", hint=f"installed: {', '.join(installed)}")
    chosen = [installed[b] for b in backends] if backends else list(installed.values())
    known_envs = {e.name for b in chosen for e in b.environments}
    missing = [e for e in environments if e not in known_envs]
    if missing:
        raise UsageError(
            f"unknown environment {', '.join(missing)}", hint=f"known: {', '.join(sorted(known_envs))}"
        )
    validators = sorted(lock_hash(v.environment) for v in pm.validators().values())
    cells = []
    for model in expand_models(models):
        digest = model_hash(ModelSpec(ref=model))
        for backend in chosen:
            for env in backend.environments:
                if environments and env.name not in environments:
                    continue
                for mode in modes:
                    key_parts = [
                        digest,
                        backend.name,
                        backend.version,
                        env.name,
                        lock_hash(env),
                        lock_hash(REFERENCE_ENV),
                        validators,
                        mode,
                        dict(options or {}),
                    ]
                    key = hashlib.sha256(json.dumps(key_parts, sort_keys=True).encode()).hexdigest()[:16]
                    cells.append(
                        Cell(
                            model=model,
                            backend=backend.name,
                            environment=env.name,
                            mode=mode,
                            key=key,
                            options=dict(options or {}),
                        )
                    )
    return cells


def parse_shard(text: str) -> tuple[int, int]:
    try:
        k, n = (int(part) for part in text.split("/"))
    except ValueError:
        raise UsageError(f"--shard {text!r} is not k/n", hint="e.g. --shard 1/2") from None
    if not 1 <= k <= n:
        raise UsageError(f"--shard {text}: k must be between 1 and n")
    return k, n


def shard(cells: Sequence[Cell], k: int, n: int) -> list[Cell]:
    """The k-th of n deterministic slices (by key, so every machine agrees without talking)."""
    ordered = sorted(cells, key=lambda c: c.key)
    mine = {c.key for i, c in enumerate(ordered) if i % n == k - 1}
    return [c for c in cells if c.key in mine]


def environments_of(pm: PluginManager, cells: Sequence[Cell]) -> dict[str, EnvironmentSpec]:
    names = {c.environment for c in cells}
    backends: dict[str, BackendInfo] = pm.backends()
    return {e.name: e for b in backends.values() for e in b.environments if e.name in names}
