"""``liteport explain``, host side: one attempt, then where its model drifts from PyTorch, layer by layer.

1. the attempt (reference, convert, validate) as ``liteport convert`` runs it, while the torch
   environment captures every module's output on the first validation samples (``activations``
   job, kept in the run folder and shared by every backend of the model);
2. the backend's ``liteport_tensor_map`` hook, when its plugin has one (in its environment);
3. the ``layers`` job in the validation runtime: the model with every tensor kept, matched
   against the capture and judged per layer;
4. in a quantized mode, when names leave more than ``ANCHOR_BELOW`` of the layers unmatched, the
   same backend's fp32 conversion (the *anchor*), matched by values and carried over, and the
   ``layers`` job again with it.

The document (``liteport-explain/1``, see ``liteport.explain.document``) is written beside the
attempt as ``explain.json``.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from filelock import FileLock

from liteport.explain import document
from liteport.explain.thresholds import FLOAT_MODES
from liteport.pipeline.engine import Engine
from liteport.pipeline.runs import write_atomically
from liteport.stages.environment import REFERENCE_ENV
from liteport.types import Attempt, BackendInfo, EnvironmentSpec, Job, ModelSpec, Result

ANCHOR_BELOW = 0.9  # matched fraction under which a quantized mode borrows the fp32 conversion's matches
ANCHORS = ("auto", "always", "never")
EXPLAIN_JSON = "explain.json"


@dataclass(frozen=True)
class ExplainOptions:
    samples: int = 4
    max_mb: float = 1024.0
    anchor: str = "auto"  # "auto" | "always" | "never"
    reference: str | None = None  # "float" | "int8" (qat's default: PyTorch's int8 model)
    layer_thresholds: str | Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Explained:
    attempt: Attempt
    document: dict[str, Any]
    anchor: Attempt | None = None


def explain(
    engine: Engine,
    model: ModelSpec,
    backend: BackendInfo,
    environment: EnvironmentSpec,
    mode: str,
    *,
    options: Mapping[str, Any] | None = None,
    thresholds: Mapping[str, Any] | None = None,
    settings: ExplainOptions | None = None,
) -> Explained:
    """Convert and validate like ``liteport convert``, then localise the drift per layer."""
    settings = settings or ExplainOptions()
    started = time.perf_counter()
    reference = engine.reference(model)
    # One after the other, not side by side: on 2 cores the capture's torch threads beside the
    # backend's own (PT2E calibration) made the attempt 2.3x slower (118 s against 52 s, mobilenet_v2
    # int8 on litert-torch-0.10), far more than the capture's 11 s.
    attempt = engine.attempt(model, backend, environment, mode, options=options, thresholds=thresholds)
    captured = _capture(engine, model, reference, mode, settings) if reference.ok else None
    return explain_attempt(
        engine, model, backend, environment, attempt, settings=settings, captured=captured, started=started
    )


def explain_attempt(
    engine: Engine,
    model: ModelSpec,
    backend: BackendInfo,
    environment: EnvironmentSpec,
    attempt: Attempt,
    *,
    settings: ExplainOptions | None = None,
    captured: Result | None = None,
    started: float | None = None,
) -> Explained:
    """Localise the drift of a finished attempt (the matrix explains its invalid cells this way)."""
    settings = settings or ExplainOptions()
    started = time.perf_counter() if started is None else started
    base = _base(model, attempt)
    if not attempt.tflite or not attempt.workdir:
        return Explained(
            attempt, {**base, **document.empty(f"no converted model to explain: {attempt.cause}")}
        )
    reference = engine.reference(model)  # made by the attempt already: read from the run folder
    if captured is None:
        captured = _capture(engine, model, reference, attempt.mode, settings)
    if not captured.ok:
        return Explained(
            attempt, {**base, **document.empty(f"activation capture failed: {_cause(captured)}")}
        )
    runtime_env = _runtime_environment(engine)
    workdir = Path(attempt.workdir)
    modules = _module_list(captured)
    layer_options: dict[str, Any] = {
        "tflite": attempt.tflite,
        "activations": captured.artifacts["activations"],
        "arrays": captured.artifacts["arrays"],
        "reference": reference.artifacts.get("reference"),
        "out": str(workdir / "explain-layers.json"),
        **_layout_options(attempt, ""),
        **_tensor_map(engine, backend, environment, attempt, modules, workdir, ""),
    }
    if settings.layer_thresholds:
        layer_options["layer_thresholds"] = settings.layer_thresholds
    layered = _run(engine, runtime_env, attempt, "layers", layer_options, "explain-layers.log")
    anchor: Attempt | None = None
    if layered.ok and _wants_anchor(settings, attempt, environment, backend, layered):
        anchor = engine.attempt(model, backend, environment, "fp32", options=attempt.options)
        if anchor.tflite:
            layer_options.update(
                anchor_tflite=anchor.tflite,
                **_layout_options(anchor, "anchor_"),
                **_tensor_map(engine, backend, environment, anchor, modules, workdir, "anchor_"),
            )
            layered = _run(engine, runtime_env, attempt, "layers", layer_options, "explain-layers.log")
    if not layered.ok:
        return Explained(
            attempt, {**base, **document.empty(f"per-layer run failed: {_cause(layered)}")}, anchor
        )
    layers_doc = json.loads(Path(layered.artifacts["explain_layers"]).read_text(encoding="utf-8"))
    doc = {
        **base,
        **layers_doc,
        "anchor": document.anchor_entry(anchor, layers_doc.pop("anchor_coverage", None)),
        "timings": {
            "explain_s": round(time.perf_counter() - started, 3),
            "attempt_s": attempt.timings.get("total_s"),
            "activations_s": captured.timings.get("activations_s"),
            "layers_s": layered.timings.get("layers_s"),
        },
    }
    write_atomically(workdir / EXPLAIN_JSON, json.dumps(doc, indent=1, default=str))
    return Explained(attempt, doc, anchor)


def _base(model: ModelSpec, attempt: Attempt) -> dict[str, Any]:
    return {
        "schema": document.SCHEMA,
        "model": model.ref,
        "backend": attempt.backend,
        "environment": attempt.environment,
        "mode": attempt.mode,
        "status": attempt.status,
        "cause": attempt.cause,
        "output": {k: attempt.metrics.get(k) for k in ("cosine", "sqnr_db", "max_abs", "top1")},
        "tflite": attempt.tflite,
        "workdir": attempt.workdir,
    }


def _capture(
    engine: Engine, model: ModelSpec, reference: Result, mode: str, settings: ExplainOptions
) -> Result:
    """Module outputs of the model on the first samples, made once per run folder and settings."""
    if not reference.ok:
        return reference
    kind = settings.reference or ("int8" if mode == "qat" else "float")
    run_dir = Path(reference.artifacts["reference"]).parent
    name = f"activations-{kind}-s{settings.samples}-m{settings.max_mb:g}"
    folder = run_dir / "explain"
    done = folder / f"{name}.result.json"
    folder.mkdir(parents=True, exist_ok=True)
    with FileLock(str(folder / f".{name}.lock")):
        if done.exists():
            return Result.from_dict(json.loads(done.read_text(encoding="utf-8")))
        engine.progress(f"module outputs from PyTorch ({REFERENCE_ENV.name}, {kind} reference)")
        job = Job(
            kind="activations",
            id=uuid.uuid4().hex[:12],
            workdir=str(folder),
            model=model,
            mode=mode,
            environment=REFERENCE_ENV.name,
            options={
                "out": str(folder / name),
                "reference": reference.artifacts["reference"],
                "samples": settings.samples,
                "max_mb": settings.max_mb,
                "reference_kind": kind,
            },
        )
        result = engine.pool.run(
            REFERENCE_ENV, job, timeout=engine.timeouts.reference, log=folder / f"{name}.log"
        )
        if result.ok:
            write_atomically(done, json.dumps(result.to_dict(), indent=2))
        return result


def _module_list(captured: Result) -> list[dict[str, str]]:
    manifest = json.loads(Path(captured.artifacts["activations"]).read_text(encoding="utf-8"))
    seen: dict[str, str] = {}
    for module in manifest["modules"]:
        seen.setdefault(str(module["path"]), str(module["type"]))
    return [{"path": path, "type": kind} for path, kind in seen.items()]


def _tensor_map(
    engine: Engine,
    backend: BackendInfo,
    environment: EnvironmentSpec,
    attempt: Attempt,
    modules: list[dict[str, str]],
    workdir: Path,
    prefix: str,
) -> dict[str, Any]:
    """``{prefix + "tensor_map": {...}}`` from the backend's hook, or nothing when it has none or fails."""
    if not engine.pm.implements("liteport_tensor_map", backend.name):
        return {}
    job = Job(
        kind="tensor_map",
        id=uuid.uuid4().hex[:12],
        workdir=str(workdir),
        model=ModelSpec(ref=attempt.model),
        mode=attempt.mode,
        backend=backend.name,
        environment=environment.name,
        options={"tflite": attempt.tflite, "modules": modules},
    )
    result = engine.pool.run(
        environment, job, timeout=engine.timeouts.validate, log=workdir / "tensor-map.log"
    )
    mapping = result.facts.get("tensor_map") if result.ok else None
    return {prefix + "tensor_map": dict(mapping)} if isinstance(mapping, Mapping) else {}


def _layout_options(attempt: Attempt, prefix: str) -> dict[str, Any]:
    facts = attempt.facts
    found = {
        k: facts[k] for k in ("input_layout", "output_layout", "input_names", "output_names") if k in facts
    }
    return {prefix + k: v for k, v in found.items()}


def _wants_anchor(
    settings: ExplainOptions,
    attempt: Attempt,
    environment: EnvironmentSpec,
    backend: BackendInfo,
    layered: Result,
) -> bool:
    if (
        settings.anchor == "never"
        or attempt.mode in FLOAT_MODES
        or not environment.offers("fp32", backend.modes)
    ):
        return False
    fraction = layered.facts.get("matched_fraction")
    return settings.anchor == "always" or not isinstance(fraction, (int, float)) or fraction < ANCHOR_BELOW


def _runtime_environment(engine: Engine) -> EnvironmentSpec:
    """Where every model is judged: the numeric validator's runtime (a current ai-edge-litert)."""
    validators = engine.pm.validators()
    chosen = validators.get("numeric") or next(iter(validators.values()), None)
    if chosen is None:
        from liteport.errors import UsageError

        raise UsageError("explain needs the numeric validator's runtime", hint="see `liteport plugins`")
    return chosen.environment


def _run(
    engine: Engine,
    environment: EnvironmentSpec,
    attempt: Attempt,
    kind: str,
    options: Mapping[str, Any],
    log: str,
) -> Result:
    engine.progress(f"per-layer comparison in {environment.name}")
    job = Job(
        kind=kind,
        id=uuid.uuid4().hex[:12],
        workdir=str(attempt.workdir),
        model=ModelSpec(ref=attempt.model),
        mode=attempt.mode,
        backend=attempt.backend,
        environment=environment.name,
        options=dict(options),
    )
    return engine.pool.run(
        environment, job, timeout=engine.timeouts.validate, log=Path(str(attempt.workdir)) / log
    )


def _cause(result: Result) -> str:
    return f"{result.error.kind}: {result.error.message}" if result.error else result.status
