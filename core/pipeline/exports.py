"""Which ONNX export an attempt of a ``needs="onnx"`` backend gets, per environment.

Every environment declares the opsets it handles in order of preference
(``EnvironmentSpec.onnx_opsets``; onnx-tf 1.10 has no Squeeze/Unsqueeze-13 handler, so it
prefers 12, while attention needs 14). The first opset the model exports at wins:

* the TorchScript exporter is tried at each opset in turn; when its failure names the opset an op
  needs ("the exporter advises opset 14") and the environment declares that opset, it is tried
  next; a failure that names no opset is the tracer's, the same at every opset, so the other
  TorchScript opsets are skipped;
* at opset 18, when the environment declares it, the dynamo exporter is tried too (it writes
  opset 18 only) — it traces models, and ``torch.export`` programs, the TorchScript one cannot;
* ``options["opset"]`` (a user's explicit choice) replaces the environment's list.

Every (model, opset, exporter) is exported once per run folder (``RunFolders.export_onnx``); a
failed export is remembered for the life of the engine, so a matrix does not repeat it per cell.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any

from liteport.pipeline.runs import RunFolders
from liteport.stages.export import DEFAULT_OPSET, advised_opset
from liteport.types import EnvironmentSpec, ErrorInfo, ModelSpec, Result, evolve

DYNAMO_OPSET = 18  # the only opset torch.onnx.export(dynamo=True) writes (measured on torch 2.13)


def opsets_for(environment: EnvironmentSpec, options: Mapping[str, Any]) -> list[int]:
    """The opsets to try for ``environment``, in order: the user's ``opset`` option, else its own."""
    if options.get("opset") is not None:
        return [int(options["opset"])]
    return [int(o) for o in environment.onnx_opsets] or [DEFAULT_OPSET]


class OnnxExports:
    """Picks and makes the ONNX export of a model for an environment (shared by an engine's attempts)."""

    def __init__(self, runs: RunFolders) -> None:
        self.runs = runs
        self._failed: dict[tuple[str, int, str], Result] = {}
        self._lock = threading.Lock()

    def for_environment(
        self, model: ModelSpec, environment: EnvironmentSpec, options: Mapping[str, Any]
    ) -> Result:
        """The first export ``environment`` can take; else the first failure, naming what else was tried."""
        declared = opsets_for(environment, options)
        queue = list(declared)
        tried: list[tuple[int, str]] = []
        failures: list[Result] = []
        tracer_failed = False
        while queue:
            opset = queue.pop(0)
            exporters = [] if tracer_failed else ["torchscript"]
            if opset == DYNAMO_OPSET:
                exporters.append("dynamo")
            for exporter in exporters:
                if (opset, exporter) in tried:
                    continue
                tried.append((opset, exporter))
                result = self.export(model, opset, exporter)
                if result.ok:
                    return result
                failures.append(result)
                message = result.error.message if result.error else ""
                advice = advised_opset(message) if exporter == "torchscript" else None
                if advice is not None and advice in declared and (advice, "torchscript") not in tried:
                    queue.insert(0, advice)  # the exporter knows which opset the op needs
                elif exporter == "torchscript" and advice is None:
                    tracer_failed = True  # the same at every opset: only dynamo is left
                    queue = [o for o in queue if o == DYNAMO_OPSET]
        if not failures:  # nothing could be tried: the environment declares no usable opset
            return Result(
                status="failed",
                kind="export",
                error=ErrorInfo(kind="export_error", message=f"{environment.name} declares no ONNX opset"),
            )
        return _with_tried(failures[0], tried[1:])

    def export(self, model: ModelSpec, opset: int, exporter: str) -> Result:
        """One export, made once per run folder; a deterministic failure is remembered too."""
        key = (str(self.runs.run_dir(model)), opset, exporter)
        with self._lock:
            known = self._failed.get(key)
        if known is not None:
            return known
        result = self.runs.export_onnx(model, opset, exporter)
        if not result.ok and result.error is not None and result.error.kind == "export_error":
            with self._lock:
                self._failed[key] = result
        return result


def export_facts(result: Result) -> dict[str, Any]:
    """What an attempt records of its export: opset, exporter and the file."""
    facts = {k: result.facts[k] for k in ("onnx_opset", "onnx_exporter") if k in result.facts}
    if "onnx" in result.artifacts:
        facts["onnx_file"] = result.artifacts["onnx"]
    return facts


def _with_tried(failure: Result, others: Sequence[tuple[int, str]]) -> Result:
    """``failure`` whose message also names the other opsets / exporters that failed."""
    if not others or failure.error is None:
        return failure
    also = ", ".join(f"opset {opset} ({exporter})" for opset, exporter in others)
    return failure.replace(
        error=evolve(failure.error, message=f"{failure.error.message}; also failed: {also}")
    )
