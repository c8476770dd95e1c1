"""What every command shares: exit codes, the plugin manager, consoles, environment lookup."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from liteport.errors import UsageError
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
