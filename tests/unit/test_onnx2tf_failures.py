"""How the onnx2tf plugin reads onnx2tf's failures (its output, as measured on 1.29 and 2.6)."""

from __future__ import annotations

import importlib.util

import pytest

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("liteport_onnx2tf") is None,
    reason="liteport-onnx2tf is not installed on the host (pip install -e plugins/liteport-onnx2tf)",
)

# The tail of onnx2tf 2.6's output on an exact-GELU model in int8 (measured: zoo:gelu_mixer).
CALIBRATION_WITHOUT_FLEX = """\
  File ".../tensorflow/lite/python/optimize/calibrator.py", line 143, in _feed_tensors
    self._calibrator.Prepare([list(s.shape) for s in input_array])
RuntimeError: Select TensorFlow op(s), included in the given model, is(are) not supported by this \
interpreter. Make sure you apply/link the Flex delegate before inference. See instructions: \
https://www.tensorflow.org/lite/guide/ops_selectNode number 13 (FlexErf) failed to prepare.
\x1b[33mWARNING:\x1b[0m Full INT8 Quantization tflite output failed.
"""


def test_int8_calibration_on_a_flex_op_is_unsupported_op_naming_it() -> None:
    from liteport_onnx2tf import failures

    wanted = "model_full_integer_quant.tflite"
    error = failures.classify(CALIBRATION_WITHOUT_FLEX, "gelu_mixer", exit_code=0, wanted=wanted)
    assert error.kind == "unsupported_op"
    assert "Erf (Flex" in str(error) and "\n" not in str(error)


def test_an_op_onnx2tf_lacks_is_unsupported_op() -> None:
    from liteport_onnx2tf import failures

    error = failures.classify("ERROR: Foo OP is not yet implemented.", "m", exit_code=1, wanted="m.tflite")
    assert error.kind == "unsupported_op" and "Foo" in str(error)
