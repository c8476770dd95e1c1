"""Running matrix cells in parallel: each finished cell is journaled at once; Ctrl-C stops cleanly."""

from __future__ import annotations

import concurrent.futures
import json
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from liteport.explain.document import compact
from liteport.matrix.cells import Cell
from liteport.matrix.journal import Journal
from liteport.pipeline import Engine, PoolClosed
from liteport.pipeline.explain import ExplainOptions, explain_attempt
from liteport.pipeline.rewriting import attempts_with_rewrites
from liteport.types import Attempt, ModelSpec

LOG_EXCERPT_LINES = 25
NO_REWRITES = "no_rewrites"  # cell option set by --no-rewrites (part of the cell key)


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
    stopped: str | None = None  # why cells were left undone without an interrupt (e.g. no Ray node left)


# Journals one finished cell (its attempt and journal entry); called by the driver only.
Record = Callable[[Cell, Attempt, dict[str, Any]], None]


class CellExecutor(Protocol):
    """Where cells run: threads on this machine (default) or a Ray cluster (``ray_executor``).

    ``run`` hands every finished cell to ``record`` as its result arrives. Interrupted, it stops
    every running cell and raises ``KeyboardInterrupt``; it returns why cells were left undone, if any.
    """

    def run(self, cells: Sequence[Cell], record: Record, progress: MatrixProgress) -> str | None: ...


def run_matrix(
    engine: Engine | None,
    cells: Sequence[Cell],
    journal: Journal,
    *,
    jobs: int,
    resume: bool,
    progress: MatrixProgress | None = None,
    explain: ExplainOptions | None = None,
    executor: CellExecutor | None = None,
) -> MatrixOutcome:
    """Run ``cells`` (skipping journaled ones with ``resume``); Ctrl-C stops cleanly.

    Cells run on ``executor`` (default: ``jobs`` threads driving ``engine``); whatever runs them,
    this process alone appends to the journal, as each result arrives.
    """
    progress = progress or MatrixProgress()
    done_keys = journal.keys() if resume else set()
    todo = [c for c in cells if c.key not in done_keys]
    started = time.perf_counter()
    finished: list[tuple[Cell, Attempt]] = []
    counter = {"done": len(cells) - len(todo)}
    lock = threading.Lock()

    def record(cell: Cell, attempt: Attempt, entry: dict[str, Any]) -> None:
        journal.append(entry)
        with lock:
            finished.append((cell, attempt))
            counter["done"] += 1
            progress.on_done(cell, attempt, counter["done"], len(cells))

    if executor is None:
        if engine is None:
            raise ValueError("run_matrix needs an engine or an executor")
        executor = ThreadExecutor(engine, jobs, explain)
    interrupted, stopped = False, None
    try:
        stopped = executor.run(todo, record, progress)
    except KeyboardInterrupt:
        interrupted = True
    return MatrixOutcome(
        total=len(cells),
        skipped=len(cells) - len(todo),
        finished=finished,
        interrupted=interrupted,
        wall_s=time.perf_counter() - started,
        stopped=stopped,
    )


def run_cell(
    engine: Engine, cell: Cell, explain: ExplainOptions | None = None
) -> tuple[Attempt, dict[str, Any]]:
    """One cell in ``engine``: its final attempt and journal entry. Raises ``PoolClosed`` when interrupted.

    Shared by every executor, so a cell means the same work on this machine and on a cluster node.
    """
    backend = engine.pm.backends()[cell.backend]
    env = next(e for e in backend.environments if e.name == cell.environment)
    # the cell's last attempt: plain, or rewritten when it failed on an op a rewrite replaces
    options = {k: v for k, v in cell.options.items() if k != NO_REWRITES}
    attempt = attempts_with_rewrites(
        engine,
        ModelSpec(ref=cell.model),
        backend,
        env,
        cell.mode,
        options=options,
        rewrites=not cell.options.get(NO_REWRITES),
    )[-1]
    # --explain: an invalid cell also says where it drifts from PyTorch, layer by layer
    explained = (
        explain_attempt(engine, ModelSpec(ref=cell.model), backend, env, attempt, settings=explain)
        if explain is not None and attempt.status == "invalid"
        else None
    )
    entry = {
        "key": cell.key,
        "cell": cell.to_dict(),
        "attempt": attempt.to_dict(),
        "log_excerpt": log_excerpt(attempt),
        "node": {"hostname": socket.gethostname()},  # provenance: where the cell ran
        **({"explain": compact(explained.document)} if explained is not None else {}),
    }
    return attempt, entry


def chains(cells: Sequence[Cell]) -> list[list[Cell]]:
    """The cells in runs that share mode-independent work: a model's modes on one environment
    (with the same options), in plan order, so they follow one another in the same warm worker."""
    runs: dict[tuple[str, str, str, str], list[Cell]] = {}
    for cell in cells:
        options = json.dumps(dict(cell.options), sort_keys=True, default=str)
        runs.setdefault((cell.model, cell.backend, cell.environment, options), []).append(cell)
    return list(runs.values())


@dataclass
class ThreadExecutor:
    """Cells on threads of this process, up to ``jobs`` at once, in one engine's warm workers.

    With the engine's ``reuse`` on, each thread takes a whole chain (``chains``): the modes of a
    model on one environment run back to back, so the work they share is made once and found warm.
    """

    engine: Engine
    jobs: int
    explain: ExplainOptions | None = None

    def run(self, cells: Sequence[Cell], record: Record, progress: MatrixProgress) -> str | None:
        engine = self.engine
        local = threading.local()
        engine.progress = lambda message: progress.on_stage(getattr(local, "slot", "main"), message)

        def one(chain: Sequence[Cell]) -> None:
            local.slot = threading.current_thread().name
            for cell in chain:
                progress.on_start(local.slot, cell)
                try:
                    attempt, entry = run_cell(engine, cell, self.explain)
                except PoolClosed:
                    return  # interrupted: its worker was killed, so there is no real result to journal
                record(cell, attempt, entry)

        pool = concurrent.futures.ThreadPoolExecutor(max_workers=max(1, self.jobs), thread_name_prefix="cell")
        runs = chains(cells) if engine.reuse else [[cell] for cell in cells]
        futures = [pool.submit(one, chain) for chain in runs]
        try:
            for future in concurrent.futures.as_completed(futures):
                future.result()
        except KeyboardInterrupt:
            for future in futures:
                future.cancel()
            engine.close()  # kills busy workers; their cells are not journaled
            pool.shutdown(wait=True, cancel_futures=True)
            raise
        pool.shutdown(wait=True)
        return None


def log_excerpt(attempt: Attempt) -> str | None:
    """The tail of the failing stage's log, kept in the journal because work dirs get cleaned."""
    if attempt.ok or attempt.error is None:
        return None
    log = attempt.error.log
    if not log or not Path(log).is_file():
        return None
    lines = Path(log).read_text(encoding="utf-8", errors="replace").splitlines()
    return "\n".join(lines[-LOG_EXCERPT_LINES:])
