# Over 400 lines on purpose: one validation run (feed, compare, time, classify) read top to bottom.
"""The built-in ``numeric`` validator: run a .tflite in a current LiteRT interpreter and compare
its outputs with PyTorch's reference outputs.

Registration is instant (no numpy / ai_edge_litert at import); the work hook runs in the shared
``litert-runtime`` environment so every backend's model is judged and timed by one interpreter
(DESIGN.md: "Never judge a model with an old interpreter").

Job options (``job.options``):

* ``tflite``: model path (default ``<workdir>/model.tflite``)
* ``reference``: reference .npz with ``input_<i>`` / ``output_<j>`` arrays of shape (V, ...) in
  PyTorch layout (default ``<workdir>/reference.npz``, else the run folder's one level up)
* ``input_layout`` / ``output_layout``: "NCHW" (default) or "NHWC", or a list with one per
  tensor; NHWC transposes 4-D inputs NCHW->NHWC before feeding and 4-D outputs back after
* ``input_names`` / ``output_names``: optional PyTorch-ordered names to map tensors by name
  (signature names, or tensor names with the "serving_default_" prefix / ":0" suffix dropped)
* ``thresholds``: mapping or "cosine=..,sqnr=.." overriding the mode's defaults
* ``latency_runs`` (default 50, at least 20), ``num_threads`` (default 1)
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from liteport.errors import ValidatorError
from liteport.hookspecs import hookimpl
from liteport.stages.workfiles import REFERENCE_NPZ, TFLITE
from liteport.types import (
    LAYOUTS,
    MODES,
    EnvironmentSpec,
    ErrorInfo,
    ErrorKind,
    Job,
    Result,
    Status,
    ValidatorInfo,
)
from liteport.validators.thresholds import Thresholds, default_thresholds, judge

if TYPE_CHECKING:
    import numpy.typing as npt

NAME = "numeric"
VERSION = "0.1.0"
ENVIRONMENT_NAME = "litert-runtime"
# The lock ships inside the package (package-data "locks/*.txt"), next to this folder.
LOCK = Path(__file__).resolve().parent.parent / "locks" / "litert-runtime.txt"
DEFAULT_LATENCY_RUNS = 50
MIN_LATENCY_RUNS = 20
WARMUP_RUNS = 5


def environment() -> EnvironmentSpec:
    """The shared runtime environment every model is judged in."""
    return EnvironmentSpec(
        name=ENVIRONMENT_NAME,
        python="3.11",
        lock=str(LOCK),
        key_packages=("ai-edge-litert", "numpy"),
        description="current ai-edge-litert interpreter that judges and times every backend's model",
    )


@hookimpl
def liteport_validators() -> list[ValidatorInfo]:
    return [
        ValidatorInfo(
            name=NAME,
            version=VERSION,
            environment=environment(),
            modes=MODES,
            description="outputs vs PyTorch (cosine, max_abs, SQNR, top-1), op inventory, latency",
        )
    ]


@hookimpl
def liteport_validate(job: Job) -> Result:
    return _Validation(job).run()


class _Validation:
    """One validation job: load, feed every sample, compare, measure, judge."""

    def __init__(self, job: Job) -> None:
        self.job = job
        opts: Mapping[str, Any] = job.options or {}
        workdir = Path(job.workdir)
        self.tflite = Path(opts.get("tflite") or workdir / TFLITE)
        self.reference = Path(
            opts.get("reference")
            or _first_existing([workdir / REFERENCE_NPZ, workdir.parent / REFERENCE_NPZ])
        )
        self.thresholds: Thresholds = default_thresholds(job.mode).updated(opts.get("thresholds"))
        self.input_layout = opts.get("input_layout") or "NCHW"
        self.output_layout = opts.get("output_layout") or "NCHW"
        self.input_names: Sequence[str] | None = opts.get("input_names")
        self.output_names: Sequence[str] | None = opts.get("output_names")
        # Fewer runs make the median noise; a floor keeps latency columns comparable.
        self.latency_runs = max(MIN_LATENCY_RUNS, int(opts.get("latency_runs") or DEFAULT_LATENCY_RUNS))
        self.num_threads = int(opts.get("num_threads") or 1)

    def run(self) -> Result:
        from liteport.validators import metrics, tflite_facts  # numpy: not on the host at registration

        started = time.perf_counter()
        if not self.tflite.is_file():
            raise ValidatorError(f"no model file at {self.tflite}")
        inputs, outputs = _load_reference(self.reference)
        try:
            inventory = tflite_facts.op_inventory(self.tflite)
        except Exception as exc:
            raise ValidatorError(
                f"{self.tflite.name} is not a readable TFLite flatbuffer: {_line(exc)}"
            ) from exc
        facts: dict[str, Any] = {"size_bytes": tflite_facts.file_size(self.tflite), **inventory}

        try:
            interp = self._load(inventory)
        except _Refused as exc:  # the converter's fault, not the validator's: say what the runtime said
            return self._result("invalid", facts, {}, started, ErrorInfo(kind=exc.kind, message=str(exc)))
        in_details = _ordered(interp, "inputs", self.input_names)
        out_details = _ordered(interp, "outputs", self.output_names)
        facts["inputs"] = tflite_facts.tensor_facts(in_details)
        facts["outputs"] = tflite_facts.tensor_facts(out_details)
        facts["input_layout"] = self.input_layout
        facts["output_layout"] = self.output_layout
        in_layouts = _layouts(self.input_layout, len(in_details), "input_layout")
        out_layouts = _layouts(self.output_layout, len(out_details), "output_layout")

        def invalid(message: str) -> Result:
            return self._result(
                "invalid", facts, {}, started, ErrorInfo(kind="validation_failed", message=message)
            )

        if len(inputs) != len(in_details):
            return invalid(f"model takes {len(in_details)} inputs, reference has {len(inputs)}")
        if len(outputs) != len(out_details):
            return invalid(f"model gives {len(out_details)} outputs, reference has {len(outputs)}")
        samples = {int(a.shape[0]) for a in (*inputs, *outputs)}
        if len(samples) != 1 or 0 in samples:
            raise ValidatorError(
                f"reference arrays disagree on the sample count or are empty: {sorted(samples)}"
            )
        count = samples.pop()

        # One sample per invoke, shaped, laid out and typed the way the model takes it.
        def feed(k: int) -> list[npt.NDArray[Any]]:
            fed = []
            for i, (ref, detail, layout) in enumerate(zip(inputs, in_details, in_layouts)):
                rank = len(detail["shape"])
                if ref.ndim == rank + 1:  # reference carries the model's own batch axis per sample
                    x = ref[k]
                elif ref.ndim == rank:  # the sample axis is the batch axis: feed batches of one
                    x = ref[k : k + 1]
                else:
                    raise _Invalid(
                        f"input {i}: reference {list(ref.shape)} does not fit model {_shape(detail)}"
                    )
                if layout == "NHWC":
                    x = metrics.nchw_to_nhwc(x)
                scale, zero_point = detail["quantization"]
                fed.append(metrics.to_input_dtype(x, detail["dtype"], scale, zero_point))
            return fed

        try:
            first = feed(0)
            resized = [i for i, (x, d) in enumerate(zip(first, in_details)) if list(x.shape) != _shape(d)]
            if resized:
                # Static batch or layout mismatch: try the reference's shape, judge if it runs.
                try:
                    for i in resized:
                        interp.resize_tensor_input(in_details[i]["index"], list(first[i].shape))
                    interp.allocate_tensors()
                except Exception as exc:
                    i = resized[0]
                    raise _Invalid(
                        f"input {i}: fed {list(first[i].shape)} ({in_layouts[i]}) but the model takes "
                        f"{_shape(in_details[i])} and cannot be resized: {_line(exc)}"
                    ) from exc
        except _Invalid as exc:
            return invalid(str(exc))
        facts["resized_inputs"] = resized

        collected: list[list[npt.NDArray[Any]]] = [[] for _ in out_details]
        for k in range(count):
            try:
                batch = first if k == 0 else feed(k)
            except _Invalid as exc:
                return invalid(str(exc))
            for x, detail in zip(batch, in_details):
                interp.set_tensor(detail["index"], x)
            try:
                interp.invoke()
            except Exception as exc:
                message = f"LiteRT cannot run {self.tflite.name}: {_runtime_reason(exc)}"
                return self._result(
                    "invalid", facts, {}, started, ErrorInfo(kind="invalid_model", message=message)
                )
            for j, (detail, layout) in enumerate(zip(out_details, out_layouts)):
                scale, zero_point = detail["quantization"]
                y = metrics.from_output_dtype(interp.get_tensor(detail["index"]), scale, zero_point)
                collected[j].append(metrics.nhwc_to_nchw(y) if layout == "NHWC" else y)

        per_output = []
        for j, (ref, outs) in enumerate(zip(outputs, collected)):
            got = _combine(outs, ref.ndim)
            if got is None or got.shape != ref.shape:
                shown = list(outs[0].shape)
                how = " after NHWC->NCHW" if out_layouts[j] == "NHWC" else ""
                return invalid(
                    f"output {j}: model gives {shown} per sample{how}, reference is {list(ref.shape)}"
                )
            per_output.append(metrics.output_metrics(ref, got))

        # The last sample's inputs are still set: time exactly what was validated.
        latency = tflite_facts.measure_latency(interp, self.latency_runs, warmup=WARMUP_RUNS)
        facts.update(latency, latency_runs=self.latency_runs, num_threads=self.num_threads)
        # What ran outside XNNPACK explains an int8 model slower than its fp32 one (reports flag it).
        facts["ops_outside_delegate"] = tflite_facts.ops_outside_delegate(interp)

        misses = judge(self.thresholds, metrics.json_safe(per_output))
        result_metrics = {
            **metrics.worst(per_output),
            "outputs": per_output,
            "samples": count,
            "thresholds": self.thresholds.to_dict(),
            "thresholds_text": self.thresholds.describe(),
            "misses": misses,
        }
        error = None
        if misses:
            extra = f" (+{len(misses) - 1} more)" if len(misses) > 1 else ""
            error = ErrorInfo(kind="validation_failed", message=misses[0] + extra, detail="\n".join(misses))
        return self._result("invalid" if misses else "ok", facts, result_metrics, started, error)

    def _load(self, inventory: Mapping[str, Any]) -> Any:
        from ai_edge_litert.interpreter import Interpreter

        try:
            interp = Interpreter(model_path=str(self.tflite), num_threads=self.num_threads)
            interp.allocate_tensors()
        except Exception as exc:
            # Name the likely cause: the runtime has no TensorFlow kernels and no custom ops.
            reason = _runtime_reason(exc)
            name = self.tflite.name
            if inventory.get("flex_op_names"):
                ops = ", ".join(op[len("Flex") :] for op in inventory["flex_op_names"][:5])
                raise _Refused(
                    "unsupported_op", f"{name} needs TensorFlow ops through Flex, which LiteRT lacks: {ops}"
                ) from exc
            if inventory.get("custom_op_names"):
                ops = ", ".join(inventory["custom_op_names"][:5])
                message = f"{name} needs custom ops LiteRT lacks ({ops}): {reason}"
                raise _Refused("unsupported_op", message) from exc
            raise _Refused("invalid_model", f"LiteRT refuses {name}: {reason}") from exc
        return interp

    def _result(
        self,
        status: Status,
        facts: dict[str, Any],
        result_metrics: dict[str, Any],
        started: float,
        error: ErrorInfo | None,
    ) -> Result:
        from liteport.validators.metrics import json_safe

        return Result(
            status=status,
            job_id=self.job.id,
            kind=self.job.kind,
            error=error,
            metrics=json_safe(result_metrics),
            facts=json_safe(facts),
            artifacts={"tflite": str(self.tflite)},
            timings={"validate_s": round(time.perf_counter() - started, 3)},
            versions=_versions(),
        )


class _Invalid(Exception):
    """The model cannot take or give the reference's tensors: a validation failure, not a crash."""


class _Refused(Exception):
    """The runtime will not load the model: invalid_model, or unsupported_op for Flex / custom ops."""

    def __init__(self, kind: ErrorKind, message: str) -> None:
        super().__init__(message)
        self.kind: ErrorKind = kind


def _load_reference(path: Path) -> tuple[list[npt.NDArray[Any]], list[npt.NDArray[Any]]]:
    """input_<i> and output_<j> arrays of reference.npz, in index order, with no gaps."""
    import numpy as np

    if not path.is_file():
        raise ValidatorError(f"no reference outputs at {path}")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: np.asarray(data[k]) for k in data.files}
    except Exception as exc:
        raise ValidatorError(f"cannot read reference {path.name}: {_line(exc)}") from exc
    found: dict[str, dict[int, npt.NDArray[Any]]] = {"input": {}, "output": {}}
    for key, value in arrays.items():
        match = re.fullmatch(r"(input|output)_(\d+)", key)
        if match:
            found[match.group(1)][int(match.group(2))] = value
    lists = []
    for kind in ("input", "output"):
        indexed = found[kind]
        if sorted(indexed) != list(range(len(indexed))) or not indexed:
            raise ValidatorError(f"reference {path.name} needs {kind}_0..{kind}_N, has {sorted(arrays)}")
        lists.append([indexed[i] for i in range(len(indexed))])
    return lists[0], lists[1]


def _ordered(interp: Any, which: str, names: Sequence[str] | None) -> list[dict[str, Any]]:
    """Interpreter tensor details in PyTorch order.

    By explicit names when given; else by the signature (names sorted naturally, so args_10
    follows args_9: the runtime lists signature names alphabetically); else subgraph order.
    """
    details: list[dict[str, Any]] = list(
        interp.get_input_details() if which == "inputs" else interp.get_output_details()
    )
    by_index = {int(d["index"]): d for d in details}
    signature: dict[str, int] = {}
    try:
        keys = list(interp.get_signature_list())
        if keys:
            key = "serving_default" if "serving_default" in keys else keys[0]
            runner = interp.get_signature_runner(key)
            sig = runner.get_input_details() if which == "inputs" else runner.get_output_details()
            signature = {str(n): int(d["index"]) for n, d in sig.items()}
    except Exception:  # a model without usable signatures: fall back to subgraph order
        signature = {}
    if signature and sorted(signature.values()) != sorted(by_index):
        signature = {}  # signature of another subgraph: its indices are not ours
    if names:
        table = dict(signature)
        for d in details:
            table.setdefault(_plain_name(str(d["name"])), int(d["index"]))
            table.setdefault(str(d["name"]), int(d["index"]))
        missing = [n for n in names if n not in table]
        if missing or len(names) != len(details):
            raise ValidatorError(f"{which} names {list(names)} do not match the model's {sorted(table)}")
        return [by_index[table[n]] for n in names]
    if signature:
        return [by_index[signature[n]] for n in sorted(signature, key=_natural_key)]
    return details


def _plain_name(name: str) -> str:
    """serving_default_x:0 -> x (how TF-based converters name signature tensors)."""
    name = re.sub(r":\d+$", "", name)
    return name[len("serving_default_") :] if name.startswith("serving_default_") else name


def _natural_key(name: str) -> list[Any]:
    return [(0, int(t), "") if t.isdigit() else (1, 0, t) for t in re.split(r"(\d+)", name) if t]


def _layouts(value: Any, count: int, option: str) -> list[str]:
    """One layout per tensor from "NCHW"/"NHWC" or a list of them."""
    layouts = [value] * count if isinstance(value, str) else list(value)
    bad = [v for v in layouts if v not in LAYOUTS]
    if bad or len(layouts) != count:
        raise ValidatorError(f"{option} must be NCHW, NHWC or a list of {count} of them, got {value!r}")
    return [str(v) for v in layouts]


def _combine(outs: list[npt.NDArray[Any]], ref_ndim: int) -> npt.NDArray[Any] | None:
    """Per-sample outputs -> one (V, ...) array shaped like the reference, or None."""
    import numpy as np

    if any(o.shape != outs[0].shape for o in outs):
        return None
    if ref_ndim == outs[0].ndim + 1:
        return np.stack(outs)
    if ref_ndim == outs[0].ndim and outs[0].ndim > 0:
        return np.concatenate(outs, axis=0)
    return None


def _first_existing(paths: Sequence[Path]) -> Path:
    return next((p for p in paths if p.exists()), paths[0])


def _shape(detail: Mapping[str, Any]) -> list[int]:
    return [int(d) for d in detail["shape"]]


def _line(exc: BaseException) -> str:
    """The first non-empty line of an exception, for one-line messages."""
    text = str(exc).strip()
    line = text.splitlines()[0] if text else type(exc).__name__
    return line if len(line) <= 200 else line[:197] + "..."


def _runtime_reason(exc: BaseException, limit: int = 300) -> str:
    """LiteRT's whole error text on one line (it spreads one reason over several lines)."""
    text = " ".join(line.strip() for line in str(exc).splitlines() if line.strip()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _versions() -> dict[str, str]:
    from importlib import metadata

    found = {}
    for package in ("ai-edge-litert", "numpy"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return found
