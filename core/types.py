"""Records exchanged between the host, plugins and workers.

Registration hooks yield the *Info records; work hooks take a Job and return a Result.
Every record is a frozen dataclass that round-trips through JSON (``to_dict``/``from_dict``),
because jobs and results cross environment boundaries as JSON lines.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal, TypeVar, get_args

T = TypeVar("T")

# kw_only needs Python 3.10; workers also run on 3.9 (TensorFlow 2.8), where fields are
# simply declared required-first so positional construction is never needed.
if sys.version_info >= (3, 10):
    _dataclass_kwargs: dict[str, Any] = {"frozen": True, "kw_only": True}
else:  # pragma: no cover - exercised inside Python 3.9 environments
    _dataclass_kwargs = {"frozen": True}


if TYPE_CHECKING:
    from typing import dataclass_transform

    @dataclass_transform(kw_only_default=True, frozen_default=True)
    def record(cls: type[T]) -> type[T]: ...

else:

    def record(cls):
        """Make ``cls`` a frozen, keyword-only dataclass (keyword-only where Python allows)."""
        return dataclasses.dataclass(**_dataclass_kwargs)(cls)


def as_dict(obj: Any) -> dict[str, Any]:
    """A record as plain JSON-ready data (nested records included)."""
    data: dict[str, Any] = dataclasses.asdict(obj)
    return data


def evolve(obj: T, **changes: Any) -> T:
    """A copy of record ``obj`` with ``changes`` applied."""
    changed: T = dataclasses.replace(obj, **changes)  # type: ignore[type-var]
    return changed


MODES = ("fp32", "fp16", "dynamic", "int8", "int16x8", "qat")

# Closed vocabularies: a status or error kind outside them fails type-checking.
Status = Literal["ok", "invalid", "failed", "unsupported", "timeout", "crashed", "env_error"]
ErrorKind = Literal[
    "bad_input",
    "export_error",
    "unsupported_op",
    "unsupported_mode",
    "converter_error",
    "quantizer_error",
    "validator_error",
    "validation_failed",
    "invalid_model",  # converted, but the runtime refuses to load or run it (its reason in the message)
    "worker_error",
    "env_error",
    "timeout",
    "crashed",
]
STATUSES: tuple[Status, ...] = get_args(Status)
ERROR_KINDS: tuple[ErrorKind, ...] = get_args(ErrorKind)
LAYOUTS = ("NCHW", "NHWC")


@record
class EnvironmentSpec:
    """A pinned, named environment: one Python version and one complete lock file."""

    name: str
    python: str  # "3.11"
    lock: str  # absolute path of the lock file (exact == pins)
    no_deps: bool = True  # locks are complete: install exactly them, nothing resolved
    key_packages: tuple[str, ...] = ()  # versions worth showing in results
    modes: tuple[str, ...] = ()  # modes this environment can do; empty: all of its backend's
    # Host distributions installed into the environment besides liteport; the plugin manager
    # adds the distribution of a third-party plugin that declares the environment.
    distributions: tuple[str, ...] = ()
    # ONNX opsets a needs="onnx" backend handles here, in order of preference: the first one the
    # model exports at is used (the exporter's advice may skip ahead). Opset 18 also admits the
    # dynamo exporter when the TorchScript one cannot trace the model. Empty: opset 13 only.
    onnx_opsets: tuple[int, ...] = ()
    description: str = ""

    def offers(self, mode: str, backend_modes: tuple[str, ...]) -> bool:
        return mode in backend_modes and (not self.modes or mode in self.modes)


@record
class BackendInfo:
    """A converter backend, as registered by ``liteport_backends``.

    ``environments`` are in order of preference: the chain tries them in that order.
    """

    name: str
    version: str
    environments: tuple[EnvironmentSpec, ...]
    modes: tuple[str, ...]
    needs: str = "torch"  # "torch" | "onnx" | "qat"
    layouts: tuple[str, ...] = ("NCHW",)  # input layouts it can emit; first is the default
    # When set, the convert stage may return artifacts["saved_model"] instead of a .tflite and
    # this quantizer (a liteport_quantize plugin, run in the same environment) makes the .tflite.
    quantizer: str | None = None
    # True when the convert stage makes the same artifacts for every mode (the quantizer applies the
    # mode): the engine then runs it once per model, environment, lock and options, and every mode
    # of a matrix reuses it (``liteport matrix --no-reuse`` turns that off).
    shared_convert: bool = False
    # Place in the default fallback chain: higher is tried first, ties by name. Built-ins use
    # 100-300; a third-party backend that should come first declares more.
    priority: int = 0
    description: str = ""
    provider: str = ""  # filled by the plugin manager: the plugin that registered it


@record
class QuantizerInfo:
    """A quantizer that backends can delegate a mode to (``liteport_quantizers``)."""

    name: str
    version: str
    modes: tuple[str, ...]
    description: str = ""
    provider: str = ""


@record
class ValidatorInfo:
    """A validator run on every converted model (``liteport_validators``)."""

    name: str
    version: str
    environment: EnvironmentSpec
    modes: tuple[str, ...] = MODES
    description: str = ""
    provider: str = ""


@record
class RewriteInfo:
    """A graph rewrite, as registered by ``liteport_rewrites``: it replaces an op some backend lacks.

    ``ops`` are the op's names as converters and runtimes spell them in failures (ONNX ``Erf``, aten
    ``aten.gelu``, TFLite ``LOG_SOFTMAX``...): when an attempt fails with ``unsupported_op`` (or
    ``invalid_model``) naming one of them, the chain tries the model again with this rewrite applied.
    """

    name: str
    version: str
    ops: tuple[str, ...]
    exact: bool = True  # False: a close approximation (the validator judges it like any attempt)
    description: str = ""
    provider: str = ""  # filled by the plugin manager: the plugin that registered it


@record
class ModelSpec:
    """What the user asked to convert: a ModelRef plus optional weights and data."""

    ref: str  # "path/file.py:factory", "pkg.module:factory" or "zoo:NAME"
    weights: str | None = None
    inputs: str | None = None  # .npz with sample/calibration inputs, leading sample axis
    seed: int = 0
    calibration_size: int = 32
    validation_size: int = 8


@record
class Job:
    """One unit of work for a worker. ``kind`` picks the hook; ``options`` carry stage data."""

    kind: str  # "reference" | "convert" | "quantize" | "validate"
    id: str
    workdir: str
    model: ModelSpec
    mode: str = "fp32"
    backend: str | None = None
    environment: str | None = None
    validator: str | None = None
    quantizer: str | None = None
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return as_dict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Job:
        fields = dict(data)
        fields["model"] = ModelSpec(**fields["model"])
        return cls(**fields)


@record
class ErrorInfo:
    """Why a stage did not succeed: a kind from ERROR_KINDS and a one-line message."""

    kind: ErrorKind
    message: str
    log: str | None = None
    detail: str | None = None  # traceback or long text, shown with --verbose


@record
class Result:
    """What a worker returns for a job."""

    status: Status
    job_id: str = ""
    kind: str = ""
    error: ErrorInfo | None = None
    metrics: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    facts: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    artifacts: Mapping[str, str] = dataclasses.field(default_factory=dict)
    timings: Mapping[str, float] = dataclasses.field(default_factory=dict)
    versions: Mapping[str, str] = dataclasses.field(default_factory=dict)
    environment: str | None = None
    lock_hash: str | None = None
    log: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_dict(self) -> dict[str, Any]:
        return as_dict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Result:
        fields = dict(data)
        if fields.get("error") is not None:
            fields["error"] = ErrorInfo(**fields["error"])
        return cls(**fields)

    def replace(self, **changes: Any) -> Result:
        return evolve(self, **changes)


def failure(
    job: Job, kind: ErrorKind, message: str, *, status: Status = "failed", detail: str | None = None
) -> Result:
    """A failed Result for ``job`` with a one-line message."""
    first_line = message.strip().splitlines()[0] if message.strip() else kind
    return Result(
        status=status,
        job_id=job.id,
        kind=job.kind,
        error=ErrorInfo(kind=kind, message=first_line, detail=detail),
    )


@record
class Attempt:
    """Everything known about one conversion attempt, as reported and journaled."""

    model: str
    backend: str
    environment: str
    mode: str
    status: Status
    error: ErrorInfo | None = None
    metrics: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    facts: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    timings: Mapping[str, float] = dataclasses.field(default_factory=dict)
    versions: Mapping[str, str] = dataclasses.field(default_factory=dict)
    lock_hash: str | None = None
    runtime: str = ""
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    validations: Mapping[str, str] = dataclasses.field(default_factory=dict)  # validator -> status
    tflite: str | None = None
    workdir: str | None = None
    # Graph rewrites (RewriteInfo names) applied to the model before this attempt, in order.
    rewrites: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def cause(self) -> str:
        """Short reason for a non-ok attempt: the error kind and its message."""
        if self.error is None:
            return ""
        return f"{self.error.kind}: {self.error.message}"

    def to_dict(self) -> dict[str, Any]:
        return as_dict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Attempt:
        fields = dict(data)
        if fields.get("error") is not None:
            fields["error"] = ErrorInfo(**fields["error"])
        fields["rewrites"] = tuple(fields.get("rewrites") or ())  # a JSON list
        return cls(**fields)
