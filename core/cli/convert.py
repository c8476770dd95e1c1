"""``liteport convert``: one model through the fallback chain (or one backend), with its verdict."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any, Callable

from liteport.chain import configured_chain, default_candidates, resolve, run_chain
from liteport.cli.common import EXIT_FAILED, EXIT_OK, EXIT_USAGE, console, plugins, usable_work_root
from liteport.cli.render import print_attempt, print_attempts
from liteport.errors import BadInput, LiteportError, UsageError
from liteport.explain.document import command as explain_command
from liteport.pipeline import Engine, StageTimeouts
from liteport.runtimes import get_runtime
from liteport.types import MODES, BackendInfo, EnvironmentSpec, ModelSpec
from liteport.validators.thresholds import default_thresholds


def add_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
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
        "--opset",
        type=int,
        help="export ONNX at this opset for ONNX backends (default: each environment's preferred opsets)",
    )
    p.add_argument(
        "--no-rewrites",
        action="store_true",
        help="never retry a backend that failed on an op with the model's graph rewritten",
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


def cmd_convert(args: argparse.Namespace) -> int:
    if args.quant not in MODES:
        raise UsageError(f"unknown mode {args.quant!r}", hint=f"choose one of: {', '.join(MODES)}")
    pm = plugins(args)
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
    _check_output(args.output)
    work_root = usable_work_root(args.runtime, args.workdir)
    err = console()
    options: dict[str, Any] = {"channels_last": True} if args.channels_last else {}
    if args.opset is not None:
        options["opset"] = args.opset

    with (
        err.status("starting…") as status,
        Engine(
            pm=pm,
            runtime=runtime,
            work_root=work_root,
            cwd=str(Path.cwd()),
            progress=_progress_printer(err, status),
            timeouts=StageTimeouts(convert=args.timeout),
        ) as engine,
    ):
        outcome = run_chain(
            engine,
            model,
            candidates,
            args.quant,
            pick=args.pick,
            options=options,
            thresholds=thresholds,
            rewrites=not args.no_rewrites,
        )

    chosen = outcome.chosen
    shown = chosen or outcome.attempts[-1]
    if chosen and args.output and chosen.tflite:
        _write_output(Path(chosen.tflite), args.output)
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
        invalid = [a for a in outcome.attempts if a.status == "invalid"]
        if invalid and not chosen:  # converted but disagrees with PyTorch: say where to look next
            print("to see which layer drifts from PyTorch:", file=sys.stderr)
            for attempt in invalid:
                line = explain_command(args.model, attempt.mode, attempt.backend, attempt.environment)
                print(f"  {line}", file=sys.stderr)
    if chosen:
        return EXIT_OK
    return EXIT_USAGE if bad_input else EXIT_FAILED


def _progress_printer(out: Any, status: Any) -> Callable[[str], None]:
    """Print each stage as it starts and keep it on the spinner line while it runs."""

    def show(message: str) -> None:
        out.print(f"[dim]▸[/dim] {message}", markup=True, highlight=False)
        status.update(message)

    return show


def _check_input_files(model: ModelSpec) -> None:
    """Fail before building anything when a named file does not exist."""
    for label, value in (("weights", model.weights), ("inputs", model.inputs)):
        if value and not Path(value).is_file():
            raise BadInput(f"{label} file {value} does not exist", hint="check the path")


def _check_output(output: Path | None) -> None:
    """Fail before any work when ``-o`` names a folder or a place the .tflite cannot be written to."""
    if output is None:
        return
    if output.is_dir():
        raise BadInput(
            f"output {output} is a directory", hint=f"name the file to write, e.g. {output / 'model.tflite'}"
        )
    folder = output.absolute().parent
    while not folder.exists() and folder != folder.parent:  # the folders -o needs are made at the end
        folder = folder.parent
    if not folder.is_dir():
        raise BadInput(
            f"output {output} cannot be created: {folder} is not a folder", hint="choose another -o"
        )
    if not os.access(folder, os.W_OK | os.X_OK):
        raise BadInput(
            f"output {output} cannot be written: {folder} is not writable", hint="choose another -o"
        )


def _write_output(source: Path, output: Path) -> None:
    """Copy the kept model to ``output`` in one step: a reader sees the old file or the new one, whole."""
    partial = output.with_name(f".{output.name}.{os.getpid()}.partial")
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, partial)
        os.replace(partial, output)
    except OSError as exc:  # a full disk, or the folder changed since the check at the start
        raise LiteportError(
            f"cannot write {output}: {exc.strerror or exc}", hint=f"the converted model stays in {source}"
        ) from None
    finally:
        partial.unlink(missing_ok=True)


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
