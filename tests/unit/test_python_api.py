"""The Python API (liteport.convert / liteport.matrix) with a fake backend and validator, local runtime."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import liteport
from liteport.errors import BadInput, UsageError
from liteport.plugins import PluginManager
from liteport.python_api import Conversion, MatrixRun
from liteport.types import Attempt


@pytest.fixture
def pm(fake_plugins: Path) -> PluginManager:
    import liteport_fake  # type: ignore[import-not-found]  # on the path only through the fixture

    manager = PluginManager()
    manager.register(liteport_fake, name="fake", distribution="liteport-fake")
    return manager


def test_import_stays_cheap_and_names_resolve_lazily() -> None:
    script = (
        "import sys, liteport\n"
        "assert 'liteport.python_api' not in sys.modules and 'torch' not in sys.modules\n"
        "assert callable(liteport.convert) and callable(liteport.matrix)\n"
        "import liteport.matrix.cells\n"  # the subpackage stays a package, and callable
        "assert callable(liteport.matrix) and liteport.matrix.cells.Cell\n"
        "assert 'torch' not in sys.modules\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_convert_returns_the_records_of_the_json_output(pm: PluginManager, tmp_path: Path) -> None:
    result = liteport.convert(
        "zoo:tiny_cnn",
        backend="fake",
        plugins=pm,
        runtime="local",
        workdir=tmp_path,
        output=tmp_path / "m.tflite",
    )
    assert isinstance(result, Conversion) and result.ok
    assert isinstance(result.chosen, Attempt) and result.chosen.backend == "fake"
    assert result.output == tmp_path / "m.tflite" and result.tflite == result.output
    assert result.output.read_bytes() == b"not a real model"
    doc = json.loads(json.dumps(result.to_dict(), default=str))
    assert doc["status"] == "ok" and doc["chosen"] == 0 and doc["pick"] == "first"
    assert doc["attempts"][0]["backend"] == "fake" and doc["output"] == str(result.output)


def test_convert_takes_an_in_memory_module(pm: PluginManager, tmp_path: Path) -> None:
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4)).train()
    result = liteport.convert(
        model, (torch.randn(1, 3, 8, 8),), backend="fake", plugins=pm, runtime="local", workdir=tmp_path
    )
    assert result.ok and model.training  # exported in eval mode, handed back as it was
    assert result.chosen is not None and result.chosen.model.endswith(".pt2")
    assert Path(result.chosen.model).parent == tmp_path / "programs"
    with pytest.raises(BadInput, match="needs example_inputs"):
        liteport.convert(model, plugins=pm, runtime="local", workdir=tmp_path)
    with pytest.raises(UsageError, match="unknown mode"):
        liteport.convert("zoo:tiny_cnn", quant="int4", plugins=pm)


def test_a_failing_model_is_a_result_not_an_error(pm: PluginManager, tmp_path: Path) -> None:
    result = liteport.convert(
        "zoo:tiny_cnn", backend="fake", quant="int8", plugins=pm, runtime="local", workdir=tmp_path
    )
    assert not result.ok and result.chosen is None and result.tflite is None
    assert [a.status for a in result.attempts] == ["invalid"]


def test_matrix_returns_cells_attempts_and_coverage(pm: PluginManager, tmp_path: Path) -> None:
    run = liteport.matrix(
        ["zoo:tiny_cnn"],
        modes=["fp32", "int8"],
        backends=["fake"],
        jobs=1,
        out=tmp_path / "out",
        plugins=pm,
        runtime="local",
        workdir=tmp_path / "work",
    )
    assert isinstance(run, MatrixRun) and not run.interrupted
    assert sorted((c.mode, a.status) for c, a in run.cells) == [("fp32", "ok"), ("int8", "invalid")]
    assert run.coverage["fp32"] == {
        "models": 1,
        "chain": 1,
        "environments": {"fake-env": 1},
        "with_rewrites": {"fake-env": 1},
    }
    assert run.coverage["int8"]["chain"] == 0
    assert json.loads((tmp_path / "out" / "matrix.json").read_text()) == json.loads(json.dumps(run.document))
    with pytest.raises(UsageError, match="already holds results"):
        liteport.matrix(["zoo:tiny_cnn"], modes="fp32", out=tmp_path / "out", plugins=pm, runtime="local")
