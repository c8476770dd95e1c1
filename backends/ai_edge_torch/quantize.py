"""Quantization setups for each mode, using only the converter's own tools.

* ``int8`` (and ``dynamic`` on the nightly): PT2E with the converter's ``PT2EQuantizer`` (both
  environments take ``prepare_pt2e``/``convert_pt2e`` from ``torchao.quantization.pt2e``, which
  is also where their quantizers import observers from); the converter then lowers the Q/DQ graph.
* ``fp16``: the converter's ``full_fp16_recipe``, which runs ai-edge-quantizer's float-casting
  algorithm on the converted flatbuffer (fp16 weights, DEQUANTIZE to fp32 at load).
* ``dynamic`` on litert-torch: the converter's ``full_dynamic_recipe`` (ai-edge-quantizer's
  dynamic-range quantization of the converted flatbuffer). Measured against PT2E dynamic on the 14
  zoo models (Dec 2026): the same SQNR to 0.1 dB on 13 (multi_io 43.9 against 41.8 dB), the same
  latency and ops outside XNNPACK on mobilenet_v2, in 0.01-0.8 s instead of a second lowering
  (21.6 s on mobilenet_v2): a matrix makes it from the fp32 flatbuffer it already has.

Imported only inside the convert hook: it imports torch and the converter package.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import logging
from collections.abc import Callable, Iterator, Sequence
from typing import Any
from unittest import mock

import numpy as np
import torch
from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

from liteport.api import BadInput, ExportError, QuantizerError
from liteport.backends.ai_edge_torch.failures import one_line

FLOAT32 = "none (float32)"
FLOAT16 = "float16 weights (ai-edge-quantizer float casting), float32 compute and I/O"


@dataclasses.dataclass(frozen=True)
class Recipe:
    """A converter recipe (``<package>.generative.quantize.quant_recipes.<function>``) for a mode."""

    function: str
    description: str


RECIPES = {
    "fp16": Recipe("full_fp16_recipe", FLOAT16),
    "dynamic": Recipe(
        "full_dynamic_recipe",
        "dynamic range (ai-edge-quantizer, the converter's full_dynamic_recipe): int8 per-channel "
        "weights, activations quantized at run time, float32 I/O",
    ),
}
# The modes each package makes with a recipe; the nightly's dynamic stays PT2E (its recipes go
# through TensorFlow's converter, where PT2E dynamic is what it was measured with).
RECIPE_MODES = {"litert_torch": ("fp16", "dynamic"), "ai_edge_torch": ("fp16",)}


@dataclasses.dataclass(frozen=True)
class Quantized:
    """What to hand the converter: the (possibly PT2E-converted) module and its QuantConfig."""

    module: Any
    quant_config: Any
    description: str
    pt2e: bool = False  # the module is PT2E-quantized (its quantization is done before convert)


def for_mode(
    package: str,
    mode: str,
    module: Any,
    args: tuple[Any, ...],
    calibration: Sequence[tuple[Any, ...]],
    model: str,
) -> Quantized:
    """Prepare ``module`` for conversion in ``mode`` with ``package`` (litert_torch or ai_edge_torch)."""
    graph = lambda: capture(module, args, model)  # noqa: E731 - captured only by the PT2E modes
    if mode == "fp32":
        return Quantized(module=module, quant_config=None, description=FLOAT32)
    if mode in RECIPE_MODES[package]:
        recipes = importlib.import_module(f"{package}.generative.quantize.quant_recipes")
        recipe = RECIPES[mode]
        return Quantized(
            module=module,
            quant_config=getattr(recipes, recipe.function)(),
            description=recipe.description,
        )
    if mode == "dynamic":
        # Dynamic-range observers need no data; one forward only satisfies prepare_pt2e's flow.
        captured, config = _pt2e(package, graph, [args], dynamic=True, model=model)
        return Quantized(
            pt2e=True,
            module=captured,
            quant_config=config,
            description="PT2E dynamic range: int8 per-channel symmetric weights, "
            "activations quantized at run time, float32 I/O",
        )
    if mode == "int8":
        if not calibration:
            raise BadInput(f"{model}: int8 needs calibration data (job option 'calibration')")
        captured, config = _pt2e(package, graph, calibration, dynamic=False, model=model)
        return Quantized(
            pt2e=True,
            module=captured,
            quant_config=config,
            description="PT2E static int8: per-channel symmetric weights, per-tensor affine "
            f"activations (histogram observers) calibrated on {len(calibration)} samples",
        )
    raise BadInput(f"ai-edge-torch does not offer mode {mode!r}")


def _pt2e(
    package: str,
    graph: Callable[[], Any],
    samples: Sequence[tuple[Any, ...]],
    *,
    dynamic: bool,
    model: str,
) -> tuple[Any, Any]:
    """PT2E-quantize the captured ``graph()`` after running ``samples``; returns (module, QuantConfig)."""
    pt2e = importlib.import_module(f"{package}.quantize.pt2e_quantizer")
    quant_config = importlib.import_module(f"{package}.quantize.quant_config")
    quantizer = pt2e.PT2EQuantizer().set_global(
        pt2e.get_symmetric_quantization_config(is_per_channel=True, is_dynamic=dynamic)
    )
    captured = graph()
    try:
        prepared = prepare_pt2e(captured, quantizer)
        with torch.no_grad():
            for sample in samples:
                prepared(*sample)
        # The converter lowers explicit quantize/dequantize pairs; folding them would lose that.
        converted = convert_pt2e(prepared, fold_quantize=False)
    except Exception as exc:
        raise QuantizerError(f"{model}: PT2E quantization failed: {one_line(exc)}") from exc
    return converted, quant_config.QuantConfig(pt2e_quantizer=quantizer)


def capture(module: Any, args: tuple[Any, ...], model: str) -> Any:
    """The graph PT2E quantizes: strict (dynamo) torch.export, else non-strict.

    Only strict export records the ``source_fn_stack`` the quantizer's ``add`` annotator matches
    on; from a non-strict graph every residual ADD stays float between a DEQUANTIZE and a
    QUANTIZE (22 extra ops on MobileNetV2).
    """
    try:
        with _hide_jax_accelerator():
            return torch.export.export(module, args, strict=True).module()
    except Exception as exc:
        logging.getLogger(__name__).warning(
            "%s: strict torch.export failed (%s); capturing non-strict, residual adds will stay float",
            model,
            one_line(exc),
        )
    try:
        return torch.export.export(module, args, strict=False).module()
    except Exception as exc:
        raise ExportError(f"{model}: torch.export failed for PT2E capture: {one_line(exc)}") from exc


@contextlib.contextmanager
def _hide_jax_accelerator() -> Iterator[None]:
    """Hide torch_xla2's "jax" device (the nightly's ai_edge_torch imports it) from dynamo.

    torch_xla2 registers it as an accelerator that claims to be available; dynamo then asks it
    for a stream and strict export fails with "PyTorch is not linked with support for jax devices".
    """
    try:
        jax_device = torch.get_device_module("jax")
    except RuntimeError:  # torch_xla2 not imported: nothing to hide
        yield
        return
    with mock.patch.object(jax_device, "is_available", lambda: False):
        yield


def from_float(package: str, mode: str, float_model: bytes) -> bytes:
    """The ``mode`` model from the float32 flatbuffer: what ``convert`` does with the mode's recipe
    after making those bytes (ai-edge-quantizer, litert-torch only)."""
    recipes = importlib.import_module(f"{package}.generative.quantize.quant_recipes")
    translate = importlib.import_module(f"{package}.quantize.translate_recipe")
    config = getattr(recipes, RECIPES[mode].function)()
    recipe = translate.translate_to_ai_edge_recipe(config.generative_recipe)
    return bytes(translate.quantize_model(float_model, recipe))


def load_calibration(path: str, example: Sequence[Any], model: str) -> list[tuple[Any, ...]]:
    """Calibration samples from ``path``: arrays ``input_<i>`` of shape (C, *example_shape).

    A leading sample axis that replaces the batch axis, (C, *example_shape[1:]), is accepted too.
    """
    try:
        with np.load(path) as data:
            arrays = [data.get(f"input_{i}") for i in range(len(example))]
    except (OSError, ValueError) as exc:  # missing file, or not an .npz
        raise BadInput(f"{model}: cannot read calibration file {path}: {one_line(exc)}") from exc
    columns = []
    for i, (array, tensor) in enumerate(zip(arrays, example)):
        shape = tuple(tensor.shape)
        if array is None:
            raise BadInput(f"{model}: calibration file {path} has no array input_{i}")
        if tuple(array.shape[1:]) == shape:
            samples = [array[k] for k in range(array.shape[0])]
        elif tuple(array.shape[1:]) == shape[1:]:
            samples = [array[k : k + 1] for k in range(array.shape[0])]
        else:
            raise BadInput(f"{model}: calibration input_{i} has shape {array.shape}, expected (C, *{shape})")
        columns.append([torch.from_numpy(np.ascontiguousarray(s)).to(tensor.dtype) for s in samples])
    if len({len(column) for column in columns}) > 1:
        raise BadInput(f"{model}: calibration inputs in {path} have different sample counts")
    return list(zip(*columns))
