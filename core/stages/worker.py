"""The worker: ``python -m liteport.stages.worker`` runs inside an environment and executes jobs.

Protocol (JSON lines): the worker first writes ``{"event": "ready", ...}`` on stdout, then for
every line ``{"job": {...}, "log": "path"}`` read from stdin it writes one
``{"event": "result", "result": {...}}`` line. Converters print freely to stdout, so the
protocol keeps a private copy of the original stdout and fd 1 is pointed at the job log.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import sys
import time
import traceback
from collections.abc import Iterator, Sequence
from importlib import metadata
from typing import IO, Any

from liteport.errors import LiteportError, NotProvided
from liteport.plugins import PluginManager, get_plugin_manager
from liteport.stages.export import run_export
from liteport.stages.reference import run_reference
from liteport.types import ErrorKind, Job, Result, failure

# What an unexpected exception in each stage is called when no plugin classified it.
_STAGE_ERROR_KIND: dict[str, ErrorKind] = {
    "reference": "bad_input",
    "export": "export_error",
    "convert": "converter_error",
    "quantize": "quantizer_error",
    "validate": "validator_error",
    "rewrite": "export_error",
    "activations": "bad_input",
    "layers": "validator_error",
}


def package_versions(names: Sequence[str]) -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in names:
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[name] = metadata.version(name)
    return versions


@contextlib.contextmanager
def _output_to(log_path: str | None) -> Iterator[None]:
    """Send fds 1 and 2 (C libraries included) to ``log_path`` for the duration of a job."""
    if not log_path:
        yield
        return
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(2)
    with open(log_path, "a", encoding="utf-8") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.dup2(saved, 1)
            os.close(saved)


def run_job(pm: PluginManager, job: Job) -> Result:
    """Dispatch one job to the stage or hook it names and turn every outcome into a Result."""
    started = time.perf_counter()
    try:
        result = _dispatch(pm, job)
    except NotProvided as exc:  # the environment lacks the plugin: not the converter's failure
        result = failure(job, exc.kind, str(exc), status="env_error")
    except LiteportError as exc:
        traceback.print_exc()
        result = failure(job, exc.kind, str(exc), detail=traceback.format_exc())
    except MemoryError as exc:
        traceback.print_exc()
        result = failure(job, "crashed", f"out of memory in {job.kind}: {exc}", status="crashed")
    except Exception as exc:
        traceback.print_exc()
        kind = _STAGE_ERROR_KIND.get(job.kind, "worker_error")
        message = f"{type(exc).__name__}: {exc}".strip()
        result = failure(job, kind, message, detail=traceback.format_exc())
    elapsed = time.perf_counter() - started
    timings = dict(result.timings)
    timings.setdefault(f"{job.kind}_s", round(elapsed, 4))
    versions = package_versions(list(job.options.get("key_packages", ())))
    versions.update(result.versions)
    return result.replace(job_id=job.id, kind=job.kind, timings=timings, versions=versions)


def _dispatch(pm: PluginManager, job: Job) -> Result:
    if job.kind == "reference":
        return run_reference(job)
    if job.kind == "export":
        return run_export(job)
    if job.kind == "convert":
        return pm.convert(job)
    if job.kind == "quantize":
        return pm.quantize(job)
    if job.kind == "validate":
        return pm.validate(job)
    if job.kind == "rewrite":  # graph rewrites, torch side; imported here: torch envs only
        from liteport.stages.rewrite import run_rewrite

        return run_rewrite(pm, job)
    if job.kind == "tensor_map":
        return pm.tensor_map(job)
    if job.kind == "activations":  # liteport explain, torch side; imported here: torch envs only
        from liteport.stages.activations import run_activations

        return run_activations(job)
    if job.kind == "layers":  # liteport explain, TFLite side (validation runtime)
        from liteport.stages.layers import run_layers

        return run_layers(job)
    return failure(job, "worker_error", f"unknown job kind {job.kind!r}")


def serve(stdin: IO[str], protocol: IO[str]) -> None:
    pm = get_plugin_manager(strict=False)
    ready = {
        "event": "ready",
        "pid": os.getpid(),
        "python": sys.executable,
        "plugins": [e.name for e in pm.entries],
        "failures": [{"name": f.name, "error": f.error} for f in pm.failures],
    }
    _send(protocol, ready)
    for line in stdin:
        if not line.strip():
            continue
        request: dict[str, Any] = json.loads(line)
        job = Job.from_dict(request["job"])
        with _output_to(request.get("log")):
            result = run_job(pm, job)
        _send(protocol, {"event": "result", "result": result.to_dict()})


def _send(protocol: IO[str], message: dict[str, Any]) -> None:
    protocol.write(json.dumps(message, default=_json_default) + "\n")
    protocol.flush()


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def main() -> None:
    # Keep the protocol on a private copy of stdout; anything else printing to fd 1 goes to stderr.
    protocol = os.fdopen(os.dup(1), "w", encoding="utf-8", buffering=1)
    os.dup2(2, 1)
    serve(sys.stdin, protocol)


if __name__ == "__main__":
    main()
