"""The rewrite stage: the model's ``torch.export`` graph with graph rewrites applied, as a ``.pt2``.

Runs in a worker inside the torch environment. ``job.options["rewrites"]`` names the rewrites
(``RewriteInfo`` names) in order; each is applied by the plugin that registered it
(``liteport_rewrite``) to the unlifted graph of ``torch.export.export(model)``. The result is
exported again (so the replacement functions become ATen ops with fresh metadata), compared with
the original on the example inputs, and saved with ``torch.export.save`` as
``<job.workdir>/<model>+<rewrites>.pt2`` — a ModelRef every backend takes. Facts: ``rewrites``
(the names that replaced something, in order), ``rewrite_nodes`` (nodes replaced per rewrite) and
``rewrite_max_abs`` (largest difference from the original's outputs on the example inputs).
A model where none of them finds its op raises ``UnsupportedOp`` ("nothing to rewrite").
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

from liteport.errors import ExportError, UnsupportedOp, describe_exception
from liteport.plugins import PluginManager
from liteport.stages.modelref import load_model
from liteport.stages.tensors import flatten_outputs
from liteport.stages.workfiles import written_atomically
from liteport.types import Job, Result, evolve


def rewritten_name(model: str, rewrites: list[str]) -> str:
    """The file name of a rewritten model: readable, and distinct per set of rewrites."""
    stem = "".join(c if c.isalnum() or c in "-_" else "_" for c in model)[:40]
    return f"{stem}+{'+'.join(rewrites)}.pt2"


def run_rewrite(pm: PluginManager, job: Job) -> Result:
    """Apply ``job.options["rewrites"]`` to the model and write the rewritten program."""
    import torch

    started = time.perf_counter()
    names = [str(name) for name in job.options.get("rewrites", ())]
    loaded = load_model(job.model)
    model, args = loaded.name, tuple(loaded.example_inputs)
    try:
        graph = torch.export.export(loaded.module, args, strict=False).module()
    except Exception as exc:
        raise ExportError(
            f"{model}: torch.export failed, so no graph rewrite applies: {describe_exception(exc)}"
        ) from exc

    applied: dict[str, int] = {}
    for name in names:
        result = pm.rewrite(evolve(job, options={**job.options, "rewrite": name}), graph)
        replaced = int(result.facts.get("replaced", 0))
        if replaced:
            applied[name] = replaced
    if not applied:
        raise UnsupportedOp(f"{model}: nothing to rewrite: {', '.join(names)} found no op to replace")

    try:
        program = torch.export.export(graph, args, strict=False)
    except Exception as exc:
        raise ExportError(
            f"{model}: the graph rewritten by {', '.join(applied)} does not export: {describe_exception(exc)}"
        ) from exc
    with torch.no_grad():
        want = flatten_outputs(loaded.module(*args))
        got = flatten_outputs(program.module()(*args))
    if [tuple(t.shape) for t in want] != [tuple(t.shape) for t in got]:
        raise ExportError(f"{model}: the rewritten graph ({', '.join(applied)}) changes the output shapes")
    max_abs = max(
        (float((w.float() - g.float()).abs().max()) for w, g in zip(want, got) if w.numel()), default=0.0
    )
    if not math.isfinite(max_abs):
        raise ExportError(f"{model}: the rewritten graph ({', '.join(applied)}) gives non-finite outputs")

    path = Path(job.workdir) / rewritten_name(model, list(applied))
    path.parent.mkdir(parents=True, exist_ok=True)
    with written_atomically(path) as partial:
        torch.export.save(program, str(partial))
    facts: dict[str, Any] = {
        "rewrites": list(applied),
        "rewrite_nodes": applied,
        "rewrite_max_abs": max_abs,
        "rewrites_not_applicable": [n for n in names if n not in applied],
    }
    return Result(
        status="ok",
        job_id=job.id,
        kind=job.kind,
        artifacts={"pt2": str(path)},
        facts=facts,
        versions={"torch": str(torch.__version__)},
        timings={"rewrite_s": round(time.perf_counter() - started, 3)},
    )
