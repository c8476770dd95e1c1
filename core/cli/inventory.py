"""Commands that show and manage what is installed: backends, plugins, the zoo, environments."""

from __future__ import annotations

import argparse
import json
from typing import Any

from liteport.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    all_environments,
    console,
    pick_environments,
    plugins,
    side_by_side,
    stdout_console,
    usable_cache,
)
from liteport.errors import LiteportError
from liteport.runtimes import get_runtime
from liteport.runtimes.venv import VenvRuntime
from liteport.types import BackendInfo, EnvironmentSpec
from liteport.zoo import MODELS, describe, qat_names


def add_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("backends", parents=[common], help="list backends, their environments and modes")
    p.add_argument("--runtime", default="venv", help="runtime whose build status to show (default: venv)")
    p.add_argument("--json", action="store_true", help="print a JSON document")
    p.set_defaults(func=cmd_backends)

    p = sub.add_parser("plugins", parents=[common], help="list plugins: distribution, hooks, status, errors")
    p.add_argument("--json", action="store_true", help="print a JSON document")
    p.set_defaults(func=cmd_plugins)

    p = sub.add_parser("zoo", parents=[common], help="the built-in model zoo")
    zoo_sub = p.add_subparsers(metavar="ACTION")
    z = zoo_sub.add_parser("list", parents=[common], help="list zoo models (use them as zoo:NAME)")
    z.set_defaults(func=cmd_zoo_list)

    p = sub.add_parser("env", parents=[common], help="build, list or remove environments")
    env_sub = p.add_subparsers(metavar="ACTION")
    e = env_sub.add_parser("list", parents=[common], help="list environments and whether they are built")
    e.set_defaults(func=cmd_env_list)
    e = env_sub.add_parser("build", parents=[common], help="build environments (all when none is named)")
    e.add_argument("names", nargs="*", metavar="ENV")
    e.add_argument(
        "--jobs",
        type=int,
        default=2,
        help="environments built at once (default 2: downloads of one overlap the unpacking of another)",
    )
    e.set_defaults(func=cmd_env_build)
    e = env_sub.add_parser("remove", parents=[common], help="remove built environments")
    e.add_argument("names", nargs="+", metavar="ENV")
    e.set_defaults(func=cmd_env_remove)


def cmd_backends(args: argparse.Namespace) -> int:
    pm = plugins(args)
    runtime = get_runtime(args.runtime)
    backends: dict[str, BackendInfo] = pm.backends()
    validators = pm.validators()
    if args.json:
        doc = {
            "backends": [
                {
                    "name": b.name,
                    "version": b.version,
                    "modes": list(b.modes),
                    "layouts": list(b.layouts),
                    "provider": b.provider,
                    "environments": [
                        {"name": e.name, "python": e.python, "status": runtime.status(e)}
                        for e in b.environments
                    ],
                }
                for b in backends.values()
            ],
            "validators": [{"name": v.name, "environment": v.environment.name} for v in validators.values()],
            "rewrites": [
                {"name": r.name, "ops": list(r.ops), "exact": r.exact, "provider": r.provider}
                for r in pm.rewrites().values()
            ],
            "plugin_failures": [
                {"name": f.name, "distribution": f.distribution, "error": f.error, "traceback": f.traceback}
                for f in pm.failures
            ],
        }
        print(json.dumps(doc, indent=2))
        return EXIT_OK
    from rich.table import Table

    table = Table(title="liteport backends", title_justify="left")
    for column in (
        "backend",
        "version",
        "environment",
        "python",
        f"{runtime.name} status",
        "modes",
        "layouts",
        "plugin",
    ):
        table.add_column(column)
    for b in backends.values():
        for i, env in enumerate(b.environments):
            first = i == 0
            table.add_row(
                b.name if first else "",
                b.version if first else "",
                env.name,
                env.python,
                runtime.status(env),
                ", ".join(b.modes) if first else "",
                ", ".join(b.layouts) if first else "",
                b.provider if first else "",
            )
    out = stdout_console()
    out.print(table)
    for v in validators.values():
        out.print(
            f"validator [bold]{v.name}[/bold] {v.version} runs in {v.environment.name} "
            f"({runtime.status(v.environment)})"
        )
    for r in pm.rewrites().values():  # tried when a backend fails on one of their ops
        out.print(f"rewrite [bold]{r.name}[/bold] {r.version} ({r.provider}): {r.description}")
    for failure in pm.failures:
        out.print(f"\n[red]plugin {failure.name!r} ({failure.distribution or '?'}) failed to load:[/red]")
        out.print(failure.traceback, markup=False)
    return EXIT_OK


def cmd_plugins(args: argparse.Namespace) -> int:
    pm = plugins(args)
    pm.backends(), pm.quantizers(), pm.validators(), pm.rewrites()  # registration problems show up too
    rows: list[dict[str, Any]] = [
        {
            "name": e.name,
            "distribution": e.distribution,
            "version": e.version,
            "hooks": list(e.hooks),
            "status": "loaded",
            "error": None,
        }
        for e in pm.entries
    ]
    for failure in pm.failures:
        known = next((r for r in rows if r["name"] == failure.name), None)
        if known is not None:
            known.update(status="failed", error=failure.error)
        else:
            rows.append(
                {
                    "name": failure.name,
                    "distribution": failure.distribution,
                    "version": "",
                    "hooks": [],
                    "status": "failed",
                    "error": failure.error,
                }
            )
    rows += [
        {
            "name": n,
            "distribution": "",
            "version": "",
            "hooks": [],
            "status": "disabled",
            "error": "LITEPORT_DISABLE_PLUGINS",
        }
        for n in pm.disabled
    ]
    if args.json:
        print(json.dumps({"plugins": rows}, indent=2))
        return EXIT_OK
    from rich.table import Table
    from rich.text import Text

    table = Table(title="liteport plugins", title_justify="left")
    for column in ("plugin", "distribution", "version", "hooks", "status", "error"):
        table.add_column(column)
    style = {"loaded": "green", "failed": "red", "disabled": "dim"}
    for row in rows:
        hooks = ", ".join(h.removeprefix("liteport_") for h in row["hooks"])
        table.add_row(
            row["name"],
            row["distribution"],
            row["version"],
            hooks,
            Text(row["status"], style=style[row["status"]]),
            Text(row["error"] or ""),
        )
    stdout_console().print(table)
    return EXIT_OK


def cmd_zoo_list(args: argparse.Namespace) -> int:
    for name, description, shapes in describe():
        print(f"zoo:{name:<24} {description}  inputs {shapes}")
    print("\nQAT models (--quant qat; not part of zoo:all):")
    for name in qat_names():
        print(f"zoo:{name:<24} {MODELS[name]['description']}")
    return EXIT_OK


def cmd_env_list(args: argparse.Namespace) -> int:
    pm = plugins(args)
    runtime = VenvRuntime()
    for env in all_environments(pm).values():
        print(f"{env.name:<24} python {env.python:<5} {runtime.status(env):<8} {runtime.path_for(env)}")
    return EXIT_OK


def cmd_env_build(args: argparse.Namespace) -> int:
    pm = plugins(args)
    usable_cache()  # one line, not a traceback per environment, when the cache cannot be written
    runtime = VenvRuntime()
    out = console()
    envs = pick_environments(pm, args.names)

    def build(env: EnvironmentSpec, label: str) -> bool:
        # soft_wrap: a log path or an environment's folder stays on one line, whole, in CI logs too
        try:
            handle = runtime.ensure(env, lambda m: out.print(f"  {label}{m}", markup=False, soft_wrap=True))
        except LiteportError as exc:
            out.print(f"[red]✗[/red] {env.name}: {exc}", soft_wrap=True)
            return False
        out.print(f"[green]✓[/green] {env.name}: {handle.location}", soft_wrap=True)
        return True

    at_once = max(1, min(args.jobs, len(envs)))
    what = envs[0].name if len(envs) == 1 else f"{len(envs)} environments, {at_once} at a time"
    with out.status(f"{what}…"):
        built = side_by_side(envs, args.jobs, "environment", build)
    return EXIT_OK if all(built) else EXIT_FAILED


def cmd_env_remove(args: argparse.Namespace) -> int:
    pm = plugins(args)
    runtime = VenvRuntime()
    for env in pick_environments(pm, args.names):
        removed = runtime.remove(env)
        print(f"{env.name}: removed {len(removed)} environment(s)" + "".join(f"\n  {p}" for p in removed))
    return EXIT_OK
