"""``liteport explain``: where a converted model drifts from PyTorch, layer by layer."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from liteport.chain import default_candidates
from liteport.cli.common import EXIT_FAILED, EXIT_OK, console, plugins, stdout_console, usable_work_root
from liteport.cli.convert import _check_input_files, _choose_backend, _progress_printer
from liteport.errors import UsageError
from liteport.explain import document
from liteport.explain.thresholds import layer_thresholds
from liteport.pipeline import Engine, StageTimeouts
from liteport.pipeline.explain import ANCHORS, ExplainOptions, explain
from liteport.runtimes import get_runtime
from liteport.types import MODES, ModelSpec
from liteport.validators.thresholds import default_thresholds


def add_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "explain", parents=[common], help="per-layer comparison with PyTorch: where a conversion drifts"
    )
    p.add_argument(
        "model", metavar="MODELREF", help="path/file.py:factory, package.module:factory or zoo:NAME"
    )
    p.add_argument(
        "--quant", default="fp32", metavar="MODE", help=f"one of {', '.join(MODES)} (default fp32)"
    )
    p.add_argument("--backend", help="the backend (default: the first of the chain that offers MODE)")
    p.add_argument("--env", dest="environment", help="the environment (default: the backend's first)")
    p.add_argument("--json", action="store_true", help="print the liteport-explain/1 document on stdout")
    p.add_argument(
        "--html", type=Path, metavar="FILE", help="also write a page with the table and SQNR chart"
    )
    p.add_argument("--all", action="store_true", help="list fused, pass-through and unmatched modules too")
    p.add_argument("--samples", type=int, default=4, help="validation samples compared per layer (default 4)")
    p.add_argument(
        "--max-activation-mb",
        type=float,
        default=1024.0,
        help="memory for PyTorch's module outputs; later modules are dropped past it (default 1024)",
    )
    p.add_argument(
        "--anchor",
        choices=ANCHORS,
        default="auto",
        help="borrow the fp32 conversion's matches in quantized modes: when names match < 90%% (auto)",
    )
    p.add_argument(
        "--reference",
        choices=("float", "int8"),
        help="per-layer reference: the PyTorch model (float), or PyTorch's int8 model (qat's default)",
    )
    p.add_argument(
        "--layer-threshold",
        default="",
        metavar="KEY=VALUE",
        help="override the per-layer thresholds, e.g. sqnr=12,added=6",
    )
    p.add_argument("--threshold", action="append", default=[], metavar="KEY=VALUE", help="output threshold")
    p.add_argument("--runtime", default="venv", help="venv (default), docker or local")
    p.add_argument("--weights", help="state_dict file loaded with weights_only=True")
    p.add_argument("--inputs", help=".npz of sample/calibration inputs (leading sample axis)")
    p.add_argument("--channels-last", action="store_true", help="NHWC model inputs/outputs where possible")
    p.add_argument("--timeout", type=float, default=1800.0, help="seconds a conversion may take")
    p.add_argument("--seed", type=int, default=0, help="seed of the generated inputs")
    p.add_argument("--workdir", type=Path, help="where work files go (default: the cache)")
    p.set_defaults(func=cmd_explain)


def cmd_explain(args: argparse.Namespace) -> int:
    if args.quant not in MODES:
        raise UsageError(f"unknown mode {args.quant!r}", hint=f"choose one of: {', '.join(MODES)}")
    if args.samples < 1:
        raise UsageError("--samples must be at least 1")
    layer_thresholds(args.quant).updated(args.layer_threshold)  # a typo fails before any work
    pm = plugins(args)
    backends = pm.backends()
    if args.backend or args.environment:
        backend, environment = _choose_backend(backends, args.backend, args.environment, args.quant)
    else:
        candidates = default_candidates(backends, args.quant)
        if not candidates:
            raise UsageError(f"no installed backend offers mode {args.quant}", hint="see `liteport backends`")
        backend, environment = candidates[0]
    model = ModelSpec(ref=args.model, weights=args.weights, inputs=args.inputs, seed=args.seed)
    _check_input_files(model)
    thresholds = default_thresholds(args.quant).updated(",".join(args.threshold)).to_dict()
    settings = ExplainOptions(
        samples=args.samples,
        max_mb=args.max_activation_mb,
        anchor=args.anchor,
        reference=args.reference,
        layer_thresholds=args.layer_threshold or None,
    )
    err = console()
    with (
        err.status("starting…") as status,
        Engine(
            pm=pm,
            runtime=get_runtime(args.runtime),
            work_root=usable_work_root(args.runtime, args.workdir),
            cwd=str(Path.cwd()),
            progress=_progress_printer(err, status),
            timeouts=StageTimeouts(convert=args.timeout),
        ) as engine,
    ):
        explained = explain(
            engine,
            model,
            backend,
            environment,
            args.quant,
            options={"channels_last": True} if args.channels_last else {},
            thresholds=thresholds,
            settings=settings,
        )
    doc = explained.document
    if args.html:
        from liteport.reports.explain_html import render_explain_html

        args.html.parent.mkdir(parents=True, exist_ok=True)
        args.html.write_text(render_explain_html(doc), encoding="utf-8")
    if args.json:
        print(json.dumps(doc, indent=2, default=str))
    else:
        _print(doc, every=args.all)
        if args.html:
            print(f"page: {args.html}")
    return EXIT_FAILED if doc.get("error") else EXIT_OK


def _print(doc: dict[str, Any], *, every: bool) -> None:
    from rich.table import Table

    out = stdout_console()
    title = f"{doc['model']} · {doc['backend']} in {doc['environment']} · {doc['mode']} · {doc['status']}" + (
        f" ({doc['cause']})" if doc.get("cause") else ""
    )
    table = Table(title=title, title_justify="left")
    for column in document.COLUMNS:
        table.add_column(column, justify="right" if column in ("cosine", "SQNR dB", "added dB") else "left")
    first = (doc.get("first_divergent") or {}).get("module")
    for row in document.table_rows(doc, every=every):
        table.add_row(*row, style="bold red" if row[0] == first else None)
    if doc.get("layers"):
        out.print(table)
    output = doc.get("output") or {}
    if output.get("cosine") is not None:
        out.print(f"output: cosine {output['cosine']:.6f}, SQNR {output.get('sqnr_db') or 0:.1f} dB")
    for line in document.summary_lines(doc):
        out.print(line, markup=False, highlight=False)
    sys.stdout.flush()
