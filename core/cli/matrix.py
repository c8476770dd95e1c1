"""``liteport matrix`` and ``liteport report``: run the compatibility matrix, render reports."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

from liteport.cli.common import console, default_work_root, plugins
from liteport.errors import UsageError
from liteport.matrix.cells import parse_shard, plan, shard
from liteport.matrix.journal import Journal
from liteport.matrix.run import MatrixProgress, run_matrix
from liteport.pipeline import Engine, StageTimeouts
from liteport.reports import build, entries_from, write_reports
from liteport.runtimes import get_runtime
from liteport.types import MODES

DEFAULT_MODES = ("fp32", "fp16", "dynamic", "int8")


def add_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("matrix", parents=[common], help="run models x backends x environments x modes")
    p.add_argument("--models", default="zoo:all", help="comma-separated ModelRefs or zoo:all (default)")
    p.add_argument("--backends", default="", help="comma-separated backends (default: all installed)")
    p.add_argument("--envs", default="", help="comma-separated environments (default: all of those backends)")
    p.add_argument("--modes", default=",".join(DEFAULT_MODES), help="comma-separated modes")
    p.add_argument("--jobs", type=int, default=0, help="cells run at once (default: number of cores)")
    p.add_argument("--timeout", type=float, default=1800.0, help="seconds a conversion may take per cell")
    p.add_argument("--runtime", default="venv", help="venv (default) or local")
    p.add_argument("-o", "--out", type=Path, default=Path("liteport-matrix"), help="report folder")
    p.add_argument("--journal", type=Path, help="JSONL journal (default: OUT/journal.jsonl)")
    p.add_argument("--resume", action="store_true", help="skip cells already in the journal")
    p.add_argument("--shard", help="run the k-th of n deterministic slices, e.g. 1/2")
    p.add_argument("--workdir", type=Path, help="where work files go (default: the cache)")
    p.set_defaults(func=cmd_matrix)

    p = sub.add_parser("report", parents=[common], help="render reports from matrix journals")
    p.add_argument("journals", nargs="+", type=Path, metavar="JOURNAL")
    p.add_argument("-o", "--out", type=Path, default=Path("liteport-matrix"), help="report folder")
    p.set_defaults(func=cmd_report)


def _split(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def cmd_matrix(args: argparse.Namespace) -> int:
    modes = _split(args.modes)
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        raise UsageError(f"unknown mode {', '.join(unknown)}", hint=f"choose from: {', '.join(MODES)}")
    pm = plugins(args)
    cells = plan(
        pm, _split(args.models), modes, backends=_split(args.backends), environments=_split(args.envs)
    )
    if args.shard:
        cells = shard(cells, *parse_shard(args.shard))
    journal_path = args.journal or args.out / "journal.jsonl"
    journal = Journal(journal_path)
    if journal_path.exists() and journal_path.stat().st_size and not args.resume:
        raise UsageError(
            f"journal {journal_path} already holds results",
            hint="add --resume to continue it, or choose another --journal/--out",
        )
    jobs = args.jobs or os.cpu_count() or 1
    err = console()
    display = _Display(err, len(cells))
    engine = Engine(
        pm=pm,
        runtime=get_runtime(args.runtime),
        work_root=args.workdir or default_work_root(),
        cwd=str(Path.cwd()),
        timeouts=StageTimeouts(convert=args.timeout),
        workers_per_env=jobs,
    )
    with display:
        try:
            outcome = run_matrix(
                engine, cells, journal, jobs=jobs, resume=args.resume, progress=display.hooks()
            )
        finally:
            engine.close()
    done = outcome.skipped + len(outcome.finished)
    if outcome.interrupted:
        again = " ".join(a for a in sys.argv[1:] if a != "--resume")
        err.print(
            f"[yellow]interrupted[/yellow]: {done}/{outcome.total} cells are in {journal_path}; "
            f"resume with: liteport {again} --resume"
        )
        return 130
    convert_sum = sum(float(a.timings.get("total_s") or 0) for _, a in outcome.finished)
    err.print(
        f"{len(outcome.finished)} cells run ({outcome.skipped} already journaled) in "
        f"{outcome.wall_s:.0f} s wall; sum of per-cell times {convert_sum:.0f} s"
    )
    paths = write_reports(build(entries_from([journal_path])), args.out)
    for path in paths:
        print(path)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    document = build(entries_from(args.journals))
    for path in write_reports(document, args.out):
        print(path)
    return 0


class _Display:
    """Rich progress (cells done/total, ETA, the cell each worker is on) or plain lines off a TTY."""

    def __init__(self, console: Any, total: int) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.console = console
        self.total = total
        self.live = console.is_terminal
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
            disable=not self.live,
        )
        self.overall = self.progress.add_task("cells", total=total)
        self.slots: dict[str, Any] = {}
        self.started = time.perf_counter()

    def __enter__(self) -> _Display:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.__exit__(None, None, None)

    def hooks(self) -> Any:
        return MatrixProgress(on_start=self._start, on_stage=self._stage, on_done=self._done)

    def _slot(self, slot: str) -> Any:
        if slot not in self.slots:
            self.slots[slot] = self.progress.add_task("", total=None)
        return self.slots[slot]

    def _start(self, slot: str, cell: Any) -> None:
        self.progress.update(self._slot(slot), description=f"  {cell.label}")

    def _stage(self, slot: str, message: str) -> None:
        if slot in self.slots:
            label = self.progress.tasks[self.slots[slot]].description.split("  ▸")[0]
            self.progress.update(self.slots[slot], description=f"{label}  ▸ {message}")

    def _done(self, cell: Any, attempt: Any, done: int, total: int) -> None:
        self.progress.update(self.overall, completed=done)
        line = f"[{done}/{total}] {attempt.status:<11} {cell.label}  {attempt.cause}"
        if self.live:
            self.progress.console.print(line, markup=False, highlight=False)
        else:
            print(line, flush=True)
