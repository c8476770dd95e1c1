"""Running matrix cells in parallel: each finished cell is journaled at once; Ctrl-C stops cleanly."""

from __future__ import annotations

import concurrent.futures
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from liteport.matrix.cells import Cell
from liteport.matrix.journal import Journal
from liteport.pipeline import Engine, PoolClosed
from liteport.types import Attempt, ModelSpec

LOG_EXCERPT_LINES = 25


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
        try:
            attempt = engine.attempt(ModelSpec(ref=cell.model), backend, env, cell.mode, options=cell.options)
        except PoolClosed:
            return  # interrupted: its worker was killed, so there is no real result to journal
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
