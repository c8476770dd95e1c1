"""Per-environment ONNX exports: declared opsets in order, the exporter's advice, dynamo at 18, caching."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from liteport.pipeline.exports import OnnxExports, export_facts, opsets_for
from liteport.stages.export import advised_opset, onnx_path
from liteport.types import EnvironmentSpec, ErrorInfo, ModelSpec, Result

MODEL = ModelSpec(ref="zoo:tiny_cnn")
ADVICE_14 = (
    "m: ONNX export (torchscript, opset 12) failed: UnsupportedOperatorError: Exporting the operator "
    "'aten::scaled_dot_product_attention' to ONNX opset version 12 is not supported. "
    "(the exporter advises opset 14)"
)


class FakeRuns:
    """Scripted exports: ``outcome(opset, exporter)`` is None for success or an error message."""

    def __init__(self, outcome: Callable[[int, str], str | None]) -> None:
        self.outcome = outcome
        self.calls: list[tuple[int, str]] = []

    def run_dir(self, model: ModelSpec) -> Path:
        return Path("/runs/m")

    def export_onnx(self, model: ModelSpec, opset: int, exporter: str = "torchscript") -> Result:
        self.calls.append((opset, exporter))
        message = self.outcome(opset, exporter)
        if message is None:
            return Result(
                status="ok",
                artifacts={"onnx": str(onnx_path("/runs/m", opset, exporter))},
                facts={"onnx_opset": 18 if exporter == "dynamo" else opset, "onnx_exporter": exporter},
            )
        return Result(status="failed", error=ErrorInfo(kind="export_error", message=message))


def env(*opsets: int) -> EnvironmentSpec:
    return EnvironmentSpec(name="e", python="3.11", lock="/x", onnx_opsets=opsets)


def exports(outcome: Callable[[int, str], str | None]) -> tuple[OnnxExports, FakeRuns]:
    runs = FakeRuns(outcome)
    return OnnxExports(runs), runs  # type: ignore[arg-type]


def test_first_declared_opset_that_exports_wins() -> None:
    chooser, runs = exports(lambda opset, exporter: None)
    result = chooser.for_environment(MODEL, env(12, 13, 14), {})
    assert result.ok and result.facts["onnx_opset"] == 12 and runs.calls == [(12, "torchscript")]
    assert export_facts(result) == {
        "onnx_opset": 12,
        "onnx_exporter": "torchscript",
        "onnx_file": "/runs/m/model-opset12.onnx",
    }


def test_the_exporters_advice_is_followed_within_the_declared_opsets() -> None:
    chooser, runs = exports(lambda opset, exporter: ADVICE_14 if opset < 14 else None)
    result = chooser.for_environment(MODEL, env(12, 13, 14, 15), {})
    assert result.ok and result.facts["onnx_opset"] == 14
    assert runs.calls == [(12, "torchscript"), (14, "torchscript")]  # 13 skipped: the exporter named 14
    chooser, runs = exports(lambda opset, exporter: ADVICE_14 if opset < 14 else None)
    refused = chooser.for_environment(MODEL, env(12, 13), {})  # 14 is not declared: not tried
    assert not refused.ok and runs.calls == [(12, "torchscript"), (13, "torchscript")]
    assert refused.error is not None and "also failed: opset 13 (torchscript)" in refused.error.message


def test_a_tracer_failure_skips_to_dynamo_at_18() -> None:
    chooser, runs = exports(
        lambda opset, exporter: "m: TorchScript cannot trace this" if exporter == "torchscript" else None
    )
    result = chooser.for_environment(MODEL, env(13, 14, 18), {})
    assert result.ok and result.facts["onnx_exporter"] == "dynamo"
    assert runs.calls == [(13, "torchscript"), (18, "dynamo")]  # 14 and 18-torchscript would fail alike
    chooser, runs = exports(lambda opset, exporter: "m: TorchScript cannot trace this")
    assert not chooser.for_environment(MODEL, env(12, 13), {}).ok and runs.calls == [(12, "torchscript")]


def test_user_opset_replaces_the_environments_and_failures_are_remembered() -> None:
    assert opsets_for(env(12, 13), {"opset": 17}) == [17] and opsets_for(env(), {}) == [13]
    chooser, runs = exports(lambda opset, exporter: ADVICE_14)
    for _ in range(3):  # a matrix asks once per cell: the failed export runs once
        assert not chooser.for_environment(MODEL, env(12), {}).ok
    assert runs.calls == [(12, "torchscript")]


def test_advice_is_read_from_the_exporters_words() -> None:
    raw = "Support for this operator was added in version 14, try exporting with this version."
    assert advised_opset(raw) == 14 and advised_opset(ADVICE_14) == 14
    assert advised_opset("Unsupported: ONNX export of operator unique") is None
    assert onnx_path("/r", 18, "dynamo").name == "model-opset18-dynamo.onnx"
    assert onnx_path("/r", 13).name == "model-opset13.onnx"
