"""The built-in model zoo: torch-free metadata, deterministic O(1) models, the reference stage on one."""

from __future__ import annotations

import functools
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from liteport import zoo
from liteport.errors import BadInput
from liteport.stages.modelref import load_model
from liteport.stages.reference import run_reference
from liteport.stages.tensors import flatten_outputs
from liteport.types import Job, ModelSpec


@functools.cache
def built(name: str) -> tuple[torch.nn.Module, tuple[torch.Tensor, ...]]:
    # Building MobileNetV2 takes about a second: build each model once per test session.
    module, inputs = zoo.get(name)()
    return module, inputs


def test_describe_and_lookups_do_not_import_torch() -> None:
    script = (
        "import sys, liteport.zoo as z, liteport.stages.modelref, liteport.stages.reference\n"
        "rows = z.describe()\n"
        "assert [r[0] for r in rows] == z.names() == list(z.ZOO)\n"
        "assert 'tiny_cnn' in z.ZOO and len(z.ZOO) == len(rows)\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_describe_rows() -> None:
    rows = zoo.describe()
    names = [name for name, _, _ in rows]
    assert names == [
        "tiny_cnn",
        "mobilenet_v2",
        "resnet",
        "hardswish_se",
        "attention_encoder",
        "lstm",
        *("sdpa_encoder", "gru", "groupnorm_net", "gelu_mixer", "logsoftmax_head", "unet", "multi_io"),
        "adaptive_maxpool",
    ]
    for _name, description, shapes in rows:
        assert description and "\n" not in description
        assert shapes and all(isinstance(dim, int) for shape in shapes for dim in shape)


def test_metadata_matches_factories() -> None:
    from liteport.zoo.models import ZOO

    assert list(ZOO) == zoo.names()
    assert zoo.ZOO["lstm"] is ZOO["lstm"]


def test_every_qat_factory_is_a_zoo_model() -> None:
    """A QAT factory missing from the metadata cannot be named ``zoo:NAME`` nor listed."""
    from liteport.zoo.qat import ZOO

    assert list(ZOO) == zoo.qat_names()


def test_unknown_name() -> None:
    with pytest.raises(BadInput, match="known: tiny_cnn"):
        zoo.get("nope")
    with pytest.raises(KeyError):
        zoo.ZOO["nope"]


@pytest.mark.parametrize("name", zoo.names())
def test_model_is_eval_o1_and_matches_metadata(name: str) -> None:
    module, inputs = built(name)
    assert isinstance(module, torch.nn.Module) and not module.training
    assert all(not m.training for m in module.modules())
    assert [tuple(t.shape) for t in inputs] == [tuple(s) for s in zoo.MODELS[name]["inputs"]]
    with torch.no_grad():
        outputs = flatten_outputs(module(*inputs))  # multi_io gives two
    for out in outputs:
        assert isinstance(out, torch.Tensor) and bool(torch.isfinite(out).all())
        assert 0.1 <= float(out.abs().max()) <= 10.0, float(out.abs().max())
        assert float(out.std()) > 0.01  # not collapsed to a constant


@pytest.mark.parametrize("name", [n for n in zoo.names() if n != "mobilenet_v2"])
def test_model_is_deterministic(name: str) -> None:
    module, inputs = built(name)
    again, again_inputs = zoo.get(name)()
    for a, b in zip(inputs, again_inputs):
        assert torch.equal(a, b)
    for (key, a), (_, b) in zip(module.state_dict().items(), again.state_dict().items()):
        assert torch.equal(a, b), key
    with torch.no_grad():
        for a, b in zip(flatten_outputs(module(*inputs)), flatten_outputs(again(*again_inputs))):
            assert torch.equal(a, b)


def test_mobilenet_v2_is_the_real_architecture() -> None:
    module, _ = built("mobilenet_v2")
    params = sum(p.numel() for p in module.parameters())
    assert params == 3_504_872  # the reference MobileNetV2 (width 1.0, 1000 classes)
    convs = [m for m in module.modules() if isinstance(m, torch.nn.Conv2d)]
    depthwise = [c for c in convs if c.groups == c.in_channels == c.out_channels and c.groups > 1]
    assert len(convs) == 52 and len(depthwise) == 17
    assert sum(isinstance(m, torch.nn.ReLU6) for m in module.modules()) == 35
    assert sum(getattr(m, "use_residual", False) for m in module.modules()) == 10


def test_hardswish_se_covers_its_ops() -> None:
    module, _ = built("hardswish_se")
    kinds = {type(m).__name__ for m in module.modules()}
    assert {"Hardswish", "SqueezeExcite"} <= kinds


def test_reference_stage_on_zoo_model(tmp_path: Path) -> None:
    spec = ModelSpec(ref="zoo:tiny_cnn", validation_size=3, calibration_size=4)
    result = run_reference(Job(kind="reference", id="z", workdir=str(tmp_path), model=spec))
    assert result.ok
    with np.load(result.artifacts["reference"]) as ref, np.load(result.artifacts["calibration"]) as cal:
        assert ref["input_0"].shape == (3, 1, 3, 32, 32)
        assert ref["output_0"].shape == (3, 1, 10) and ref["output_0"].dtype == np.float32
        assert cal["input_0"].shape == (4, 1, 3, 32, 32)
        module, inputs = built("tiny_cnn")
        np.testing.assert_array_equal(ref["input_0"][0], inputs[0].numpy())
        with torch.no_grad():
            expected = module(torch.from_numpy(ref["input_0"][1])).numpy()
        np.testing.assert_allclose(ref["output_0"][1], expected, rtol=1e-5, atol=1e-6)
    assert result.facts["inputs"] == [{"name": "input_0", "shape": [1, 3, 32, 32], "dtype": "float32"}]
    assert 0.1 <= result.facts["max_abs_reference"] <= 10.0
    assert load_model(spec).name == "tiny_cnn"
