"""What every command shares: exit codes, the plugin manager, consoles, environment lookup."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from liteport.errors import BadInput, UsageError
from liteport.plugins import PluginManager, get_plugin_manager
from liteport.runtimes.venv import default_cache_dir
from liteport.stages.environment import REFERENCE_ENV
from liteport.types import EnvironmentSpec

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def plugins(args: argparse.Namespace) -> PluginManager:
    pm = get_plugin_manager(strict=True if args.strict_plugins else None)
    if pm.failures and not getattr(args, "json", False):
        for failure in pm.failures:
            print(
                f"liteport: warning: plugin {failure.name!r} ({failure.distribution or '?'}) failed to load: "
                f"{failure.error}",
                file=sys.stderr,
            )
    return pm


def console() -> Any:
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def stdout_console() -> Any:
    """Rich console for results; wide when piped so tables are not truncated in logs."""
    from rich.console import Console

    return Console(highlight=False, width=None if sys.stdout.isatty() else 160)


def all_environments(pm: PluginManager) -> dict[str, EnvironmentSpec]:
    envs: dict[str, EnvironmentSpec] = {REFERENCE_ENV.name: REFERENCE_ENV}
    envs.update(pm.environments())
    return envs


def pick_environments(pm: PluginManager, names: Sequence[str]) -> list[EnvironmentSpec]:
    envs = all_environments(pm)
    unknown = [n for n in names if n not in envs]
    if unknown:
        raise UsageError(f"unknown environment {', '.join(unknown)}", hint=f"known: {', '.join(envs)}")
    return [envs[n] for n in names] if names else list(envs.values())


def default_work_root() -> Path:
    return default_cache_dir() / "work"


def writable_folder(folder: Path, what: str, *, hint: str, note: str = "") -> Path:
    """Create ``folder`` when missing and check a file can be written in it, before any work is done."""
    named = f"{what} {folder}{f' ({note})' if note else ''}"
    if folder.exists() and not folder.is_dir():
        raise BadInput(f"{named} is a file, not a folder", hint=hint)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        blocker = f" at {exc.filename}" if exc.filename and str(exc.filename) != str(folder) else ""
        raise BadInput(f"{named} cannot be created: {exc.strerror or exc}{blocker}", hint=hint) from None
    try:  # a real write: os.access says yes to root even on a read-only mount
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise BadInput(f"{named} is not writable: {exc.strerror or exc}", hint=hint) from None
    return folder


def usable_cache() -> Path:
    """liteport's cache (environments, overlays, logs), checked: one line when it cannot be used."""
    note = "from LITEPORT_CACHE" if os.environ.get("LITEPORT_CACHE") else "the default"
    return writable_folder(
        default_cache_dir(), "cache folder", note=note, hint="set LITEPORT_CACHE to a writable folder"
    )


def usable_work_root(runtime: str, workdir: Path | None) -> Path:
    """The work folder of a run, and the cache the runtime needs, both checked before any work."""
    if runtime != "local" or workdir is None:  # the local runtime needs the cache only for its workdir
        usable_cache()
    return writable_folder(
        workdir or default_work_root(), "work folder", hint="choose another with --workdir"
    )


def side_by_side(
    specs: Sequence[EnvironmentSpec], jobs: int, noun: str, build: Callable[[EnvironmentSpec, str], bool]
) -> list[bool]:
    """``build(spec, label)`` for every spec, ``jobs`` at a time (``--jobs``); ``label`` prefixes each
    line of a build when several run at once, so their interleaved lines say whose they are.

    Every build waits on a subprocess or the Docker engine: threads only wait.
    """
    if jobs < 1:
        raise UsageError(f"--jobs {jobs}: build at least one {noun} at a time")
    at_once = min(jobs, len(specs)) or 1
    with ThreadPoolExecutor(max_workers=at_once) as pool:
        return list(pool.map(lambda spec: build(spec, f"{spec.name}: " if at_once > 1 else ""), specs))
