"""Work shared between the modes of a model: made once, keyed so nothing stale is reused, off on request."""

from __future__ import annotations

from pathlib import Path

import pytest

from liteport.matrix.cells import Cell
from liteport.matrix.run import chains
from liteport.pipeline import Engine
from liteport.pipeline.runs import shared_dir
from liteport.plugins import PluginManager
from liteport.runtimes.local import LocalRuntime
from liteport.types import BackendInfo, EnvironmentSpec, ModelSpec

MODEL = ModelSpec(ref="zoo:tiny_cnn", calibration_size=4, validation_size=2)


def _engine(work: Path, *, reuse: bool = True) -> Engine:
    import liteport_reuse_probe  # type: ignore[import-not-found]  # on the path only through the fixture

    pm = PluginManager()
    pm.register(liteport_reuse_probe, name="reuse_probe", distribution="liteport-reuse-probe")
    return Engine(pm=pm, runtime=LocalRuntime(), work_root=work, reuse=reuse)


def _made(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("made-*"))


def test_a_shared_convert_runs_once_for_every_mode(reuse_plugins: Path, tmp_path: Path) -> None:
    with _engine(tmp_path / "work") as engine:
        backend = engine.pm.backends()["probe-saved"]
        env = backend.environments[0]
        attempts = [engine.attempt(MODEL, backend, env, mode) for mode in ("fp32", "fp16", "int8")]
        other = engine.attempt(MODEL, backend, env, "fp32", options={"channels_last": True})
    assert [a.status for a in attempts] == ["ok", "ok", "ok"], [a.cause for a in attempts]
    run_dir = engine.run_dir(MODEL)
    shared = sorted((run_dir / "shared").iterdir())
    assert len(shared) == 2, "another option set gets its own shared folder"
    assert len(_made(run_dir)) == 2, "one conversion per option set, not one per mode"
    first, *later = attempts
    assert "reused" not in first.facts and first.timings["convert_s"] == 1.0
    for attempt in later:
        assert attempt.facts["reused"] == ["convert"]
        assert "convert_s" not in attempt.timings, "an earlier attempt's conversion time is not this one's"
        assert attempt.timings["quantize_s"] == 0.5
    saved = {Path(a.tflite or "").read_text().split(" of ")[1] for a in attempts}
    assert len(saved) == 1 and saved.pop().startswith(str(run_dir / "shared"))
    assert {Path(a.tflite or "").read_text().split(" of ")[0] for a in attempts} == {"fp32", "fp16", "int8"}
    assert other.facts.get("reused") is None


def test_no_reuse_converts_every_mode_in_its_own_folder(reuse_plugins: Path, tmp_path: Path) -> None:
    with _engine(tmp_path / "work", reuse=False) as engine:
        saved = engine.pm.backends()["probe-saved"]
        torch_like = engine.pm.backends()["probe-torch"]
        env = saved.environments[0]
        attempts = [engine.attempt(MODEL, saved, env, mode) for mode in ("fp32", "fp16")]
        plain = engine.attempt(MODEL, torch_like, env, "fp32")
    run_dir = engine.run_dir(MODEL)
    assert all(a.status == "ok" for a in attempts)
    assert not (run_dir / "shared").exists()
    assert len(_made(run_dir)) == 2
    assert plain.facts["shared_dir"] is None


def test_other_backends_get_a_shared_folder_keyed_by_options(reuse_plugins: Path, tmp_path: Path) -> None:
    with _engine(tmp_path / "work") as engine:
        backend = engine.pm.backends()["probe-torch"]
        env = backend.environments[0]
        fp32, int8 = (engine.attempt(MODEL, backend, env, mode) for mode in ("fp32", "int8"))
        wrapped = engine.attempt(MODEL, backend, env, "fp32", options={"channels_last": True})
    assert fp32.facts["shared_dir"] == int8.facts["shared_dir"] != wrapped.facts["shared_dir"]
    assert str(fp32.facts["shared_dir"]).startswith(str(engine.run_dir(MODEL) / "shared"))


def test_shared_folder_changes_with_lock_version_and_key(tmp_path: Path) -> None:
    locks = []
    for pins in ("tensorflow-cpu==2.15.1\n", "tensorflow-cpu==2.15.0\n"):
        lock = tmp_path / f"lock-{len(locks)}.txt"
        lock.write_text(pins)
        locks.append(EnvironmentSpec(name="env", python="3.11", lock=str(lock)))
    backend = BackendInfo(name="b", version="1", environments=tuple(locks), modes=("fp32",))
    run = tmp_path / "run"
    base = shared_dir(run, backend, locks[0], {"opset": 13})
    assert base == shared_dir(run, backend, locks[0], {"opset": 13})
    assert base != shared_dir(run, backend, locks[1], {"opset": 13}), "a changed lock"
    assert base != shared_dir(run, backend, locks[0], {"opset": 14}), "a changed option"
    newer = BackendInfo(name="b", version="2", environments=tuple(locks), modes=("fp32",))
    assert base != shared_dir(run, newer, locks[0], {"opset": 13}), "a changed backend version"


@pytest.mark.parametrize("in_plan_order", [True, False])
def test_chains_keep_a_models_modes_on_one_environment_together(in_plan_order: bool) -> None:
    cells = [
        Cell(model=m, backend="b", environment=e, mode=mode, key=f"{m}{e}{mode}")
        for m in ("zoo:a", "zoo:b")
        for e in ("env1", "env2")
        for mode in ("fp32", "int8")
    ]
    if not in_plan_order:
        cells = sorted(cells, key=lambda c: c.mode)  # interleaved modes still come out grouped
    runs = chains(cells)
    assert len(runs) == 4
    for run in runs:
        assert len({(c.model, c.environment) for c in run}) == 1
        assert [c.mode for c in run] == ["fp32", "int8"]


def test_a_folder_that_cannot_be_written_loses_the_reuse_not_the_conversion(tmp_path: Path) -> None:
    from liteport.backends.ai_edge_torch.reuse import FLOAT_TFLITE, SharedWork

    blocker = tmp_path / "run"
    blocker.write_text("a file where the run folder would be")  # what a read-only mount does to mkdir
    shared = SharedWork(str(blocker / "shared" / "ai-edge-torch"))
    assert shared.keep_float_flatbuffer(b"TFL3") is False
    assert shared.float_flatbuffer() is None and shared.reused == []
    writable = SharedWork(str(tmp_path / "ok"))
    assert writable.keep_float_flatbuffer(b"TFL3") is True
    assert writable.float_flatbuffer() == b"TFL3" and writable.reused == [FLOAT_TFLITE]
