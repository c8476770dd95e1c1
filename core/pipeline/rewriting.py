"""Attempts with graph rewrites: when a backend fails on an op a rewrite replaces, try again rewritten.

An attempt that fails with ``unsupported_op`` (or ``invalid_model``: the runtime refused the
converted graph, naming the node it refused; or ``quantizer_error``: the quantizer could not take
an op, e.g. PT2E "expecting GRU to have two outputs") whose message names an op some registered rewrite
declares (``RewriteInfo.ops``) is followed by an attempt at the model with those rewrites applied
(the rewrite stage writes it as a ``.pt2``; the original's reference judges it). A rewritten attempt
that fails on another rewritable op adds that rewrite too, up to ``MAX_ROUNDS`` times. A model in
which no named rewrite finds its op gets no second attempt.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from liteport.pipeline.engine import Engine
from liteport.types import Attempt, BackendInfo, EnvironmentSpec, ErrorKind, ModelSpec, RewriteInfo, evolve

TRIGGERS: tuple[ErrorKind, ...] = ("unsupported_op", "invalid_model", "quantizer_error")
MAX_ROUNDS = 3


def rewrites_for(
    attempt: Attempt, rewrites: Mapping[str, RewriteInfo], applied: Sequence[str] = ()
) -> list[str]:
    """Names of the rewrites (not yet applied) whose ops ``attempt``'s failure names, in registry order."""
    error = attempt.error
    if attempt.ok or error is None or error.kind not in TRIGGERS:
        return []
    return [
        name
        for name, info in rewrites.items()
        if name not in applied and any(_names(op, error.message) for op in info.ops)
    ]


def _names(op: str, text: str) -> bool:
    """Whether ``text`` names ``op`` as a whole word (``aten.gelu.default`` names ``aten.gelu``)."""
    return re.search(rf"(?<![A-Za-z0-9_]){re.escape(op)}(?![A-Za-z0-9_])", text) is not None


def attempts_with_rewrites(
    engine: Engine,
    model: ModelSpec,
    backend: BackendInfo,
    environment: EnvironmentSpec,
    mode: str,
    *,
    options: Mapping[str, Any] | None = None,
    thresholds: Mapping[str, Any] | None = None,
    rewrites: bool = True,
) -> list[Attempt]:
    """The plain attempt, then (``rewrites``) rewritten ones while a rewritable op is the cause."""
    attempts = [engine.attempt(model, backend, environment, mode, options=options, thresholds=thresholds)]
    if not rewrites:
        return attempts
    registered = engine.pm.rewrites()
    applied: list[str] = []
    for _ in range(MAX_ROUNDS):
        wanted = rewrites_for(attempts[-1], registered, applied)
        if not wanted:
            break
        engine.progress(f"rewrite {', '.join(wanted)}: {backend.name} in {environment.name} failed on its op")
        made = engine.rewrite(model, [*applied, *wanted])
        if not made.ok:  # nothing to rewrite in this model, or the rewrite failed: the cause stays
            note = made.error.message if made.error else "rewrite failed"
            attempts[-1] = evolve(attempts[-1], facts={**attempts[-1].facts, "rewrite_note": note})
            break
        applied = [str(name) for name in made.facts.get("rewrites", [*applied, *wanted])]
        variant = ModelSpec(
            ref=made.artifacts["pt2"],
            seed=model.seed,
            calibration_size=model.calibration_size,
            validation_size=model.validation_size,
        )
        attempt = engine.attempt(
            model,
            backend,
            environment,
            mode,
            options=options,
            thresholds=thresholds,
            variant=variant,
            rewrites=applied,
        )
        facts = {**attempt.facts, "rewritten_from": attempts[-1].cause, **_rewrite_facts(made.facts)}
        attempts.append(evolve(attempt, facts=facts))
        if attempts[-1].ok:
            break
    return attempts


def _rewrite_facts(facts: Mapping[str, Any]) -> dict[str, Any]:
    return {k: facts[k] for k in ("rewrite_nodes", "rewrite_max_abs") if k in facts}
