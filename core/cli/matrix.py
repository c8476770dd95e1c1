"""``liteport matrix`` and ``liteport report``: run the compatibility matrix, render reports."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from liteport.cli.common import EXIT_FAILED, console, plugins, usable_work_root, writable_folder
from liteport.errors import UsageError
from liteport.matrix.cells import parse_shard, plan, shard
from liteport.matrix.journal import Journal
from liteport.matrix.run import NO_REWRITES, MatrixProgress, run_matrix
from liteport.pipeline import Engine, StageTimeouts
from liteport.pipeline.explain import ExplainOptions
from liteport.reports import build, entries_from, write_reports
from liteport.runtimes import get_runtime
from liteport.types import MODES

if TYPE_CHECKING:  # the executor module is imported only for --executor ray
    from liteport.matrix.cells import Cell
    from liteport.matrix.ray_executor import RayExecutor
    from liteport.plugins import PluginManager

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
    p.add_argument(
        "--no-rewrites", action="store_true", help="never retry a cell with the model's graph rewritten"
    )
    p.add_argument(
        "--no-reuse",
        action="store_true",
        help="convert every mode from scratch: no SavedModel, capture or float model shared between a "
        "model's modes (also LITEPORT_NO_REUSE=1); for measuring, or to rule reuse out",
    )
    p.add_argument(
        "--explain", action="store_true", help="attach per-layer data (liteport explain) to invalid cells"
    )
    p.add_argument(
        "--executor",
        choices=("local", "ray"),
        default="local",
        help="where cells run: threads here (default) or a Ray cluster (pip install 'liteport[ray]')",
    )
    p.add_argument(
        "--ray-address",
        metavar="ADDRESS",
        help="with --executor ray: the cluster's head, e.g. 10.0.0.5:6379 (default: $RAY_ADDRESS, "
        "else a local Ray instance)",
    )
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
        pm,
        _split(args.models),
        modes,
        backends=_split(args.backends),
        environments=_split(args.envs),
        options={NO_REWRITES: True} if args.no_rewrites else None,
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
    writable_folder(journal_path.parent, "journal folder", hint="choose another with -o or --journal")
    if args.journal:
        writable_folder(args.out, "report folder", hint="choose another with -o")
    if args.ray_address and args.executor != "ray":
        raise UsageError("--ray-address needs --executor ray")
    on_ray = args.executor == "ray"
    # On Ray the nodes need work folders and environments; the driver only keeps the journal.
    work_root = None if on_ray else usable_work_root(args.runtime, args.workdir)
    journal.repair_tail()  # a line torn by a kill goes to a side file, with a warning, before any work
    jobs = args.jobs or os.cpu_count() or 1
    err = console()
    display = _Display(err, len(cells))
    explain = ExplainOptions() if args.explain else None
    engine = (
        None
        if work_root is None
        else Engine(
            pm=pm,
            runtime=get_runtime(args.runtime),
            work_root=work_root,
            cwd=str(Path.cwd()),
            timeouts=StageTimeouts(convert=args.timeout),
            workers_per_env=jobs,
            reuse=_reuse(args),
        )
    )
    executor = _ray_executor(args, pm, cells, explain) if on_ray else None
    with display:
        try:
            outcome = run_matrix(
                engine,
                cells,
                journal,
                jobs=jobs,
                resume=args.resume,
                progress=display.hooks(),
                explain=explain,
                executor=executor,
            )
        finally:
            if engine is not None:
                engine.close()
    done = outcome.skipped + len(outcome.finished)
    if outcome.interrupted:
        print_resume(err, done, outcome.total, journal_path, getattr(args, "argv", None) or sys.argv[1:])
        return 130
    if outcome.stopped:
        print(f"liteport: error: {outcome.stopped}", file=sys.stderr, flush=True)
        print_resume(err, done, outcome.total, journal_path, getattr(args, "argv", None) or sys.argv[1:])
        return EXIT_FAILED
    convert_sum = sum(float(a.timings.get("total_s") or 0) for _, a in outcome.finished)
    err.print(
        f"{len(outcome.finished)} cells run ({outcome.skipped} already journaled) in "
        f"{outcome.wall_s:.0f} s wall; sum of per-cell times {convert_sum:.0f} s"
    )
    paths = write_reports(build(entries_from([journal_path])), args.out)
    for path in paths:
        print(path)
    return 0


def _reuse(args: argparse.Namespace) -> bool:
    """Share mode-independent work between a model's modes, unless --no-reuse or LITEPORT_NO_REUSE=1."""
    return not (args.no_reuse or os.environ.get("LITEPORT_NO_REUSE", "") not in ("", "0"))


def _ray_executor(
    args: argparse.Namespace, pm: PluginManager, cells: Sequence[Cell], explain: ExplainOptions | None
) -> RayExecutor:
    """The Ray executor for this run; Ray is imported only here, when --executor ray asks for it."""
    from liteport.matrix.ray_executor import NodeSettings, RayExecutor, expected_environments, import_ray
    from liteport.runtimes import RUNTIMES

    import_ray()  # no Ray installed: say so now, before any work
    if args.runtime not in RUNTIMES:
        raise UsageError(f"unknown runtime {args.runtime!r}", hint=f"choose one of: {', '.join(RUNTIMES)}")
    envs, validators = expected_environments(pm, cells)
    workdir = args.workdir.resolve() if args.workdir else None  # the same path on every node
    return RayExecutor(
        address=args.ray_address or os.environ.get("RAY_ADDRESS") or None,
        jobs=args.jobs or None,
        settings=NodeSettings(
            runtime=args.runtime,
            timeouts=StageTimeouts(convert=args.timeout),
            slots=1,
            workdir=str(workdir) if workdir else None,
            cwd=str(Path.cwd()),
            explain=explain,
            strict_plugins=bool(getattr(args, "strict_plugins", False)),
            reuse=_reuse(args),
        ),
        expected=envs,
        validators=validators,
        say=lambda message: print(f"liteport: warning: {message}", file=sys.stderr, flush=True),
    )


def print_resume(err: Any, done: int, total: int, journal: Path, argv: Sequence[str]) -> None:
    """Say where the finished cells are and how to resume, the command alone on one line."""
    from rich.markup import escape

    err.print(
        f"[yellow]interrupted[/yellow]: {done}/{total} cells are in {escape(str(journal))}; resume with:"
    )
    again = shlex.join(a for a in argv if a != "--resume")
    # Plain print: rich would wrap it at the console width, and a wrapped command breaks when pasted.
    print(f"liteport {again} --resume", file=sys.stderr, flush=True)


def cmd_report(args: argparse.Namespace) -> int:
    writable_folder(args.out, "report folder", hint="choose another with -o")
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
