"""The pipeline with a fake backend and validator: statuses, causes, journaled result files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from liteport.pipeline import Engine
from liteport.plugins import PluginManager
from liteport.runtimes.local import LocalRuntime
from liteport.types import ModelSpec


@pytest.fixture
def engine(fake_plugins: Path, tmp_path: Path) -> Engine:
    import liteport_fake  # type: ignore[import-not-found]  # on the path only through the fixture

    pm = PluginManager()
    pm.register(liteport_fake, name="fake", distribution="liteport-fake")
    return Engine(pm=pm, runtime=LocalRuntime(), work_root=tmp_path / "work")


def test_attempt_statuses(engine: Engine) -> None:
    backend = engine.pm.backends()["fake"]
    env = backend.environments[0]
    model = ModelSpec(ref="zoo:tiny_cnn", calibration_size=4, validation_size=2)
    with engine:
        ok = engine.attempt(model, backend, env, "fp32")
        invalid = engine.attempt(model, backend, env, "int8")
        unsupported = engine.attempt(model, backend, env, "fp16")
        failed = engine.attempt(model, backend, env, "fp32", options={"behaviour": "raise"})
    assert ok.status == "ok", ok
    assert ok.metrics["cosine"] == 1.0
    assert ok.validations == {"fake-check": "ok"}
    assert json.loads((Path(ok.workdir or "") / "result.json").read_text())["status"] == "ok"
    assert invalid.status == "invalid" and invalid.error is not None
    assert invalid.error.kind == "validation_failed"
    assert unsupported.status == "unsupported"
    assert (
        failed.status == "failed"
        and failed.cause == "converter_error: RuntimeError: the fake converter exploded"
    )
    # the reference stage ran once and was reused by every later attempt
    assert len(list((engine.work_root / "runs").iterdir())) == 1
