"""The ``liteport`` command line."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Callable

from liteport import __version__
from liteport.errors import LiteportError, UsageError
from liteport.types import MODES, BackendInfo, EnvironmentSpec, ModelSpec

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def main(argv: Sequence[str] | None = None) -> None:
    sys.exit(run(argv))


def run(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    try:
        code: int = args.func(args)
        return code
    except LiteportError as exc:
        _error(str(exc), args)
        return EXIT_USAGE if exc.kind == "bad_input" else EXIT_FAILED
    except KeyboardInterrupt:
        _error("interrupted", args)
        return 130


def _error(message: str, args: argparse.Namespace) -> None:
    if getattr(args, "verbose", False):
        traceback.print_exc()
    print(f"liteport: error: {message}", file=sys.stderr)


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--strict-plugins", action="store_true", help="a plugin that fails to load is fatal")
    common.add_argument("-v", "--verbose", action="store_true", help="show tracebacks and logs")

    parser = argparse.ArgumentParser(
        prog="liteport",
        parents=[common],
        description="Convert PyTorch models to TensorFlow Lite through pinned converter backends.",
    )
    parser.add_argument("--version", action="version", version=f"liteport {__version__}")
    sub = parser.add_subparsers(metavar="COMMAND")

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
    e.set_defaults(func=cmd_env_build)
    e = env_sub.add_parser("remove", parents=[common], help="remove built environments")
    e.add_argument("names", nargs="+", metavar="ENV")
    e.set_defaults(func=cmd_env_remove)

    p = sub.add_parser("convert", parents=[common], help="convert a model and validate it against PyTorch")
    p.add_argument(
        "model", metavar="MODELREF", help="path/file.py:factory, package.module:factory or zoo:NAME"
    )
    p.add_argument(
        "--quant", default="fp32", metavar="MODE", help=f"one of {', '.join(MODES)} (default fp32)"
    )
    p.add_argument("--backend", help="use only this backend (default: the fallback chain)")
    p.add_argument("--env", dest="environment", help="use only this environment")
    p.add_argument(
        "--chain",
        help="backends/environments to try in order, e.g. ai-edge-torch,onnx-tf-tf2.15 "
        "(default: [tool.liteport] chain in pyproject.toml or liteport.toml, else built-in order)",
    )
    p.add_argument(
        "--pick",
        default="first",
        choices=("first", "fastest", "smallest", "most-accurate"),
        help="first valid attempt (default), or run all and keep the best valid one by this measure",
    )
    p.add_argument("--runtime", default="venv", help="venv (default), docker or local")
    p.add_argument("-o", "--output", type=Path, help="where to write the .tflite")
    p.add_argument("--weights", help="state_dict file loaded with weights_only=True")
    p.add_argument("--inputs", help=".npz of sample/calibration inputs (leading sample axis)")
    p.add_argument(
        "--channels-last", action="store_true", help="NHWC model inputs/outputs where the backend can"
    )
    p.add_argument(
        "--threshold",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a validation threshold, e.g. cosine=0.99 or sqnr=12",
    )
    p.add_argument(
        "--timeout", type=float, default=1800.0, help="seconds a conversion may take (default 1800)"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the generated inputs")
    p.add_argument("--workdir", type=Path, help="where work files go (default: the cache)")
    p.add_argument("--json", action="store_true", help="print one JSON document on stdout instead of a table")
    p.set_defaults(func=cmd_convert)

    from liteport.matrix_cli import add_parsers

    add_parsers(sub, common)

    from liteport import cli_images

    cli_images.add_parsers(sub, common)
    return parser


# -- helpers ------------------------------------------------------------------------------------


def _plugins(args: argparse.Namespace) -> Any:
    from liteport.plugins import get_plugin_manager

    pm = get_plugin_manager(strict=True if args.strict_plugins else None)
    if pm.failures and not getattr(args, "json", False):
        for failure in pm.failures:
            print(
                f"liteport: warning: plugin {failure.name!r} ({failure.distribution or '?'}) failed to load: "
                f"{failure.error}",
                file=sys.stderr,
            )
    return pm


def _console() -> Any:
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def stdout_console() -> Any:
    """Rich console for results; wide when piped so tables are not truncated in logs."""
    from rich.console import Console

    return Console(highlight=False, width=None if sys.stdout.isatty() else 160)


def _all_environments(pm: Any) -> dict[str, EnvironmentSpec]:
    from liteport.environments import REFERENCE_ENV

    envs: dict[str, EnvironmentSpec] = {REFERENCE_ENV.name: REFERENCE_ENV}
    envs.update(pm.environments())
    return envs


def _pick_environments(pm: Any, names: Sequence[str]) -> list[EnvironmentSpec]:
    envs = _all_environments(pm)
    unknown = [n for n in names if n not in envs]
    if unknown:
        raise UsageError(f"unknown environment {', '.join(unknown)}", hint=f"known: {', '.join(envs)}")
    return [envs[n] for n in names] if names else list(envs.values())


# -- commands -----------------------------------------------------------------------------------


def cmd_backends(args: argparse.Namespace) -> int:
    from liteport.runtimes import get_runtime

    pm = _plugins(args)
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
    console = stdout_console()
    console.print(table)
    for v in validators.values():
        console.print(
            f"validator [bold]{v.name}[/bold] {v.version} runs in {v.environment.name} "
            f"({runtime.status(v.environment)})"
        )
    for failure in pm.failures:
        console.print(f"\n[red]plugin {failure.name!r} ({failure.distribution or '?'}) failed to load:[/red]")
        console.print(failure.traceback, markup=False)
    return EXIT_OK


def cmd_plugins(args: argparse.Namespace) -> int:
    pm = _plugins(args)
    pm.backends(), pm.quantizers(), pm.validators()  # registration problems show up as failures too
    rows = [
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
    from liteport.zoo import MODELS, describe, qat_names

    for name, description, shapes in describe():
        print(f"zoo:{name:<24} {description}  inputs {shapes}")
    print("\nQAT models (--quant qat; not part of zoo:all):")
    for name in qat_names():
        print(f"zoo:{name:<24} {MODELS[name]['description']}")
    return EXIT_OK


def cmd_env_list(args: argparse.Namespace) -> int:
    from liteport.runtimes.venv import VenvRuntime

    pm = _plugins(args)
    runtime = VenvRuntime()
    for env in _all_environments(pm).values():
        print(f"{env.name:<24} python {env.python:<5} {runtime.status(env):<8} {runtime.path_for(env)}")
    return EXIT_OK


def cmd_env_build(args: argparse.Namespace) -> int:
    from liteport.runtimes.venv import VenvRuntime

    pm = _plugins(args)
    runtime = VenvRuntime()
    console = _console()
    failed = 0
    for env in _pick_environments(pm, args.names):
        try:
            with console.status(f"{env.name}…"):
                handle = runtime.ensure(env, lambda m: console.print(f"  {m}"))
            console.print(f"[green]✓[/green] {env.name}: {handle.location}")
        except LiteportError as exc:
            failed += 1
            console.print(f"[red]✗[/red] {env.name}: {exc}")
    return EXIT_FAILED if failed else EXIT_OK


def cmd_env_remove(args: argparse.Namespace) -> int:
    from liteport.runtimes.venv import VenvRuntime

    pm = _plugins(args)
    runtime = VenvRuntime()
    for env in _pick_environments(pm, args.names):
        removed = runtime.remove(env)
        print(f"{env.name}: removed {len(removed)} environment(s)" + "".join(f"\n  {p}" for p in removed))
    return EXIT_OK


def cmd_convert(args: argparse.Namespace) -> int:
    from liteport.chain import configured_chain, default_candidates, resolve, run_chain
    from liteport.pipeline import Engine, StageTimeouts
    from liteport.render import print_attempt, print_attempts
    from liteport.runtimes import get_runtime
    from liteport.thresholds import default_thresholds

    if args.quant not in MODES:
        raise UsageError(f"unknown mode {args.quant!r}", hint=f"choose one of: {', '.join(MODES)}")
    pm = _plugins(args)
    backends = pm.backends()
    if args.chain and (args.backend or args.environment):
        raise UsageError("--chain cannot be combined with --backend/--env", hint="put them in the chain")
    if args.backend or args.environment:
        candidates = [_choose_backend(backends, args.backend, args.environment, args.quant)]
    elif args.chain:
        candidates = resolve(backends, [item.strip() for item in args.chain.split(",") if item.strip()])
    else:
        configured = configured_chain(Path.cwd())
        candidates = resolve(backends, configured) if configured else default_candidates(backends, args.quant)
    if not candidates:
        raise UsageError(f"no installed backend offers mode {args.quant}", hint="see `liteport backends`")
    thresholds = default_thresholds(args.quant).updated(",".join(args.threshold)).to_dict()
    runtime = get_runtime(args.runtime)
    model = ModelSpec(ref=args.model, weights=args.weights, inputs=args.inputs, seed=args.seed)
    _check_input_files(model)
    console = _console()
    options = {"channels_last": True} if args.channels_last else {}

    with (
        console.status("starting…") as status,
        Engine(
            pm=pm,
            runtime=runtime,
            work_root=args.workdir or _default_work_root(),
            cwd=str(Path.cwd()),
            progress=_progress_printer(console, status),
            timeouts=StageTimeouts(convert=args.timeout),
        ) as engine,
    ):
        outcome = run_chain(
            engine, model, candidates, args.quant, pick=args.pick, options=options, thresholds=thresholds
        )

    chosen = outcome.chosen
    shown = chosen or outcome.attempts[-1]
    if chosen and args.output and chosen.tflite:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(chosen.tflite, args.output)
    bad_input = next((a.error for a in outcome.attempts if a.error and a.error.kind == "bad_input"), None)
    if bad_input and not args.json:
        if args.verbose and bad_input.detail:
            print(bad_input.detail, file=sys.stderr)
        print(f"liteport: error: {bad_input.message}", file=sys.stderr)
        return EXIT_USAGE
    if args.json:
        doc = {**shown.to_dict(), **outcome.to_dict()}
        doc["output"] = str(args.output) if chosen and args.output else None
        print(json.dumps(doc, indent=2, default=str))
    else:
        if len(outcome.attempts) > 1:
            print_attempts(outcome.attempts, chosen, pick=outcome.pick)
        print_attempt(shown, output=args.output if chosen else None, verbose=args.verbose)
    if chosen:
        return EXIT_OK
    return EXIT_USAGE if bad_input else EXIT_FAILED


def _progress_printer(console: Any, status: Any) -> Callable[[str], None]:
    """Print each stage as it starts and keep it on the spinner line while it runs."""

    def show(message: str) -> None:
        console.print(f"[dim]▸[/dim] {message}", markup=True, highlight=False)
        status.update(message)

    return show


def _default_work_root() -> Path:
    from liteport.runtimes.venv import default_cache_dir

    return default_cache_dir() / "work"


def _check_input_files(model: ModelSpec) -> None:
    """Fail before building anything when a named file does not exist."""
    from liteport.errors import BadInput

    for label, value in (("weights", model.weights), ("inputs", model.inputs)):
        if value and not Path(value).is_file():
            raise BadInput(f"{label} file {value} does not exist", hint="check the path")


def _choose_backend(
    backends: dict[str, BackendInfo], name: str | None, env_name: str | None, mode: str
) -> tuple[BackendInfo, EnvironmentSpec]:
    if not backends:
        raise UsageError("no backend is installed", hint="run `liteport backends` to see plugin errors")
    if name is None:
        offering = [b for b in backends.values() if mode in b.modes]
        if env_name:
            offering = [b for b in offering if env_name in {e.name for e in b.environments}]
        if not offering:
            raise UsageError(
                f"no installed backend offers mode {mode}"
                + (f" in environment {env_name}" if env_name else "")
            )
        backend = offering[0]
    elif name not in backends:
        raise UsageError(f"unknown backend {name!r}", hint=f"installed: {', '.join(backends)}")
    else:
        backend = backends[name]
    envs = {e.name: e for e in backend.environments}
    if env_name is None:
        return backend, backend.environments[0]
    if env_name not in envs:
        raise UsageError(
            f"backend {backend.name} has no environment {env_name!r}",
            hint=f"its environments: {', '.join(envs)}",
        )
    return backend, envs[env_name]
