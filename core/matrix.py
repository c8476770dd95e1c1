"""The compatibility matrix: models x backends x environments x modes, run in parallel.

Cells are planned deterministically, identified by a key over everything that decides their
result (model hash, lock hashes, backend version, mode, options), and journaled as they finish.
``--resume`` skips journaled keys; ``--shard k/n`` takes a deterministic slice.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from liteport.attempts import Attempt
from liteport.environments import REFERENCE_ENV
from liteport.errors import UsageError
from liteport.journal import Journal
from liteport.pipeline import Engine
from liteport.plugins import PluginManager
from liteport.runtimes.base import lock_hash
from liteport.types import BackendInfo, EnvironmentSpec, ModelSpec, record

LOG_EXCERPT_LINES = 25


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
    from liteport.zoo import names

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
    from liteport.modelref import model_hash

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


@dataclass
class MatrixProgress:
    """What a display needs; called from worker threads."""

    on_start: Callable[[str, Cell], None] = lambda slot, cell: None
    on_stage: Callable[[str, str], None] = lambda slot, message: None
    on_done: Callable[[Cell, Attempt, int, int], None] = lambda cell, attempt, done, total: None


@dataclass
class MatrixOutcome:
    total: int
    skipped: int
    finished: list[tuple[Cell, Attempt]]
    interrupted: bool
    wall_s: float


def run_matrix(
    engine: Engine,
    cells: Sequence[Cell],
    journal: Journal,
    *,
    jobs: int,
    resume: bool,
    progress: MatrixProgress | None = None,
) -> MatrixOutcome:
    """Run ``cells`` (skipping journaled ones with ``resume``); Ctrl-C stops cleanly."""
    progress = progress or MatrixProgress()
    done_keys = journal.keys() if resume else set()
    todo = [c for c in cells if c.key not in done_keys]
    backends = engine.pm.backends()
    started = time.perf_counter()
    finished: list[tuple[Cell, Attempt]] = []
    counter = {"done": len(cells) - len(todo)}
    lock = threading.Lock()
    local = threading.local()
    engine.progress = lambda message: progress.on_stage(getattr(local, "slot", "main"), message)

    def run_cell(cell: Cell) -> None:
        local.slot = threading.current_thread().name
        progress.on_start(local.slot, cell)
        backend = backends[cell.backend]
        env = next(e for e in backend.environments if e.name == cell.environment)
        attempt = engine.attempt(ModelSpec(ref=cell.model), backend, env, cell.mode, options=cell.options)
        journal.append(
            {
                "key": cell.key,
                "cell": cell.to_dict(),
                "attempt": attempt.to_dict(),
                "log_excerpt": log_excerpt(attempt),
            }
        )
        with lock:
            finished.append((cell, attempt))
            counter["done"] += 1
            progress.on_done(cell, attempt, counter["done"], len(cells))

    interrupted = False
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="cell")
    futures = [pool.submit(run_cell, cell) for cell in todo]
    try:
        for future in concurrent.futures.as_completed(futures):
            future.result()
    except KeyboardInterrupt:
        interrupted = True
        for future in futures:
            future.cancel()
        engine.close()  # kills busy workers; their cells are not journaled
        pool.shutdown(wait=True, cancel_futures=True)
    else:
        pool.shutdown(wait=True)
    return MatrixOutcome(
        total=len(cells),
        skipped=len(cells) - len(todo),
        finished=finished,
        interrupted=interrupted,
        wall_s=time.perf_counter() - started,
    )


def log_excerpt(attempt: Attempt) -> str | None:
    """The tail of the failing stage's log, kept in the journal because work dirs get cleaned."""
    if attempt.ok or attempt.error is None:
        return None
    log = attempt.error.log
    if not log or not Path(log).is_file():
        return None
    lines = Path(log).read_text(encoding="utf-8", errors="replace").splitlines()
    return "\n".join(lines[-LOG_EXCERPT_LINES:])


def environments_of(pm: PluginManager, cells: Sequence[Cell]) -> dict[str, EnvironmentSpec]:
    names = {c.environment for c in cells}
    backends: dict[str, BackendInfo] = pm.backends()
    return {e.name: e for b in backends.values() for e in b.environments if e.name in names}
