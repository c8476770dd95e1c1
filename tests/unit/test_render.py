"""The verdict table shows only what was measured for the attempt."""

from __future__ import annotations

from liteport.cli.render import verdict_rows
from liteport.types import Attempt, ErrorInfo

# What the reference stage knows before any converter ran: PyTorch's tensors, not the model's.
REFERENCE_FACTS = {
    "inputs": [{"name": "input_0", "shape": [3, 16, 16], "dtype": "float32"}],
    "outputs": [{"name": "output_0", "shape": [10], "dtype": "float32"}],
    "model_hash": "abc",
}


def _labels(attempt: Attempt) -> list[str]:
    return [label for label, _ in verdict_rows(attempt)]


def test_crashed_attempt_shows_no_io_dtypes_it_never_measured() -> None:
    crashed = Attempt(
        model="zoo:tiny_cnn",
        backend="fake",
        environment="fake-env",
        mode="int8",
        status="crashed",
        error=ErrorInfo(kind="crashed", message="the worker died during convert: killed by SIGKILL"),
        facts=REFERENCE_FACTS,
    )
    rows = dict(verdict_rows(crashed))
    assert "I/O dtypes" not in rows
    assert rows["cause"] == "crashed: the worker died during convert: killed by SIGKILL"


def test_validator_that_could_not_load_the_model_shows_no_io_dtypes() -> None:
    refused = Attempt(
        model="zoo:tiny_cnn",
        backend="fake",
        environment="fake-env",
        mode="fp32",
        status="failed",
        error=ErrorInfo(kind="validator_error", message="cannot load model.tflite"),
        facts=REFERENCE_FACTS,
        validations={"numeric": "failed"},
    )
    assert "I/O dtypes" not in _labels(refused)


def test_validated_attempt_shows_the_models_io_dtypes() -> None:
    judged = Attempt(
        model="zoo:tiny_cnn",
        backend="fake",
        environment="fake-env",
        mode="int8",
        status="ok",
        facts={
            **REFERENCE_FACTS,
            "inputs": [{"name": "x", "shape": [1, 16, 16, 3], "dtype": "int8", "quantization": None}],
            "outputs": [{"name": "y", "shape": [1, 10], "dtype": "int8", "quantization": None}],
        },
        validations={"numeric": "ok"},
    )
    assert dict(verdict_rows(judged))["I/O dtypes"] == "int8 -> int8"


def test_flex_ops_count_in_the_custom_flex_total() -> None:
    flex = Attempt(
        model="m",
        backend="b",
        environment="e",
        mode="fp32",
        status="failed",
        facts={"op_counts": {"CONV_2D": 2, "FlexErf": 1}, "custom_ops": 0, "flex_ops": 1},
    )
    assert "custom/Flex 1, total 3" in dict(verdict_rows(flex))["ops"]
