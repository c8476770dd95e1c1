"""``.pt2`` files (torch.export.save) as ModelRefs: parsing, loading, hashing, the reference stage."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from liteport import zoo
from liteport.errors import BadInput
from liteport.stages.modelref import load_model, model_hash, parse_ref
from liteport.stages.reference import run_reference
from liteport.types import Job, ModelSpec


@pytest.fixture(scope="module")
def program(tmp_path_factory: pytest.TempPathFactory) -> Path:
    module, inputs = zoo.get("multi_io")()  # two inputs, two outputs
    path = tmp_path_factory.mktemp("pt2") / "multi.pt2"
    torch.export.save(torch.export.export(module, inputs), str(path))
    return path


def test_a_pt2_file_is_a_modelref(program: Path) -> None:
    parsed = parse_ref(str(program))
    assert (parsed.kind, parsed.name, parsed.factory) == ("pt2", "multi", "")
    with pytest.raises(BadInput, match=r"program file 'nope\.pt2' does not exist"):
        parse_ref("nope.pt2")


def test_load_takes_the_programs_example_inputs(program: Path) -> None:
    loaded = load_model(ModelSpec(ref=str(program)))
    assert [tuple(t.shape) for t in loaded.example_inputs] == [(1, 3, 32, 32), (1, 8)]
    module, inputs = zoo.get("multi_io")()
    assert loaded.module.eval() is loaded.module  # the exported module refuses eval(); liteport's does not
    with torch.no_grad():
        for got, want in zip(loaded.module(*loaded.example_inputs), module(*inputs)):
            torch.testing.assert_close(got, want)
    with pytest.raises(BadInput, match="holds its weights"):
        load_model(ModelSpec(ref=str(program), weights=str(program)))


def test_hash_follows_the_file(program: Path, tmp_path: Path) -> None:
    copy = tmp_path / "multi.pt2"
    copy.write_bytes(program.read_bytes())
    assert model_hash(ModelSpec(ref=str(copy))) == model_hash(ModelSpec(ref=str(program)))
    copy.write_bytes(program.read_bytes() + b"\0")
    assert model_hash(ModelSpec(ref=str(copy))) != model_hash(ModelSpec(ref=str(program)))


def test_reference_stage_on_a_program(program: Path, tmp_path: Path) -> None:
    spec = ModelSpec(ref=str(program), validation_size=2, calibration_size=3)
    result = run_reference(Job(kind="reference", id="p", workdir=str(tmp_path), model=spec))
    assert result.ok, result.error
    with np.load(result.artifacts["reference"]) as ref:
        assert ref["input_1"].shape == (2, 1, 8) and ref["output_1"].shape == (2, 1, 16)
    assert result.facts["model_name"] == "multi"


def test_export_stage_takes_a_program(program: Path, tmp_path: Path) -> None:
    pytest.importorskip("onnx")
    from liteport.stages.export import run_export

    job = Job(
        kind="export", id="e", workdir=str(tmp_path), model=ModelSpec(ref=str(program)), options={"opset": 12}
    )
    result = run_export(job)
    assert result.ok and result.facts["onnx_opset"] == 12 and result.facts["onnx_exporter"] == "torchscript"
    assert result.facts["onnx_input_names"] == ["input_0", "input_1"]
    assert result.facts["onnx_op_counts"].get("Squeeze") == 2
