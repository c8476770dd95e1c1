"""The docker runtime: same results as venv, a locked-down container, timeouts and OOM kills.

Needs a reachable engine (skipped otherwise) and builds the images it uses when missing:
litert-runtime (the probe jobs and validation), torch-2.13 and litert-torch-0.10 (the
venv-vs-docker comparison), onnx2tf-1.29 (a third-party plugin's image, ~3 GB; only when
liteport-onnx2tf is installed on the host). ``python3 -m nox -s docker`` sets all of that up.
"""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from liteport.errors import EnvironmentBuildError
from liteport.pipeline import Engine
from liteport.plugins import get_plugin_manager
from liteport.runtimes.base import WorkerSession
from liteport.runtimes.venv import VenvRuntime
from liteport.stages.environment import REFERENCE_ENV
from liteport.types import Attempt, EnvironmentSpec, Job, ModelSpec, Result

PROBE_PLUGINS = Path(__file__).parents[1] / "fixtures" / "plugins_docker"


def _engine_or_skip() -> Any:
    try:
        from liteport.runtimes.docker import connect, docker_cli

        client = connect(timeout=60)
        docker_cli()
    except EnvironmentBuildError as exc:
        pytest.skip(f"no Docker engine for the docker runtime: {exc}")
    return client


@pytest.fixture(scope="module")
def client() -> Any:
    return _engine_or_skip()


@pytest.fixture(scope="module")
def runtime_env() -> EnvironmentSpec:
    return get_plugin_manager(strict=True).environments()["litert-runtime"]


@pytest.fixture
def probe_path(monkeypatch: pytest.MonkeyPatch) -> Path:
    # The launcher mounts PYTHONPATH entries read-only and sets them inside the container,
    # so the worker there discovers the probe plugin through its entry point.
    monkeypatch.setenv("PYTHONPATH", str(PROBE_PLUGINS))
    return PROBE_PLUGINS


def _worker_containers(client: Any) -> set[str]:
    return {c.name for c in client.containers.list(filters={"label": "org.liteport.worker=1"})}


def _session(client: Any, spec: EnvironmentSpec, tmp_path: Path, **limits: Any) -> Iterator[WorkerSession]:
    from liteport.runtimes.docker import DockerRuntime

    handle = DockerRuntime(**limits).ensure(spec, lambda m: print(f"  ▸ {m}", flush=True))
    assert handle.location.startswith("sha256:")
    session = WorkerSession(handle, cwd=str(tmp_path), stderr_log=tmp_path / "worker.log")
    try:
        yield session
    finally:
        session.close()


@pytest.fixture
def session(
    client: Any, runtime_env: EnvironmentSpec, tmp_path: Path, probe_path: Path
) -> Iterator[WorkerSession]:
    yield from _session(client, runtime_env, tmp_path)


def _probe(
    session: WorkerSession,
    tmp_path: Path,
    probe: str,
    *,
    timeout: float = 120,
    folder: str | None = None,
    model: str = "zoo:tiny_cnn",
    **options: Any,
) -> Result:
    # A container serves one work folder: probes that must share a container share a folder.
    workdir = tmp_path / "work" / "runs" / "run" / (folder or probe)
    workdir.mkdir(parents=True, exist_ok=True)
    job = Job(
        kind="convert",
        id=f"probe-{probe}",
        workdir=str(workdir),
        model=ModelSpec(ref=model),
        backend="probe",
        options={"probe": probe, **options},
    )
    started = time.perf_counter()
    result = session.run(job, timeout=timeout, log=workdir / "probe.log")
    print(f"{probe}: {result.status} in {time.perf_counter() - started:.2f} s {result.error or ''}")
    return result


def _wait_gone(client: Any, names: set[str], seconds: float = 20) -> set[str]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        left = names & _worker_containers(client)
        if not left:
            return left
        time.sleep(0.5)
    return names & _worker_containers(client)


# -- isolation ---------------------------------------------------------------------------------


def test_job_cannot_open_a_network_connection(session: WorkerSession, tmp_path: Path) -> None:
    result = _probe(session, tmp_path, "network")
    assert result.status == "ok", result.error
    outcomes = result.facts["network"]
    assert outcomes and all(v.startswith("blocked") for v in outcomes.values()), outcomes
    assert result.facts["uid"] != 0, "the job runs as a non-root user"


def test_job_cannot_write_outside_its_work_directory(session: WorkerSession, tmp_path: Path) -> None:
    outside = [tmp_path, tmp_path / "work", tmp_path / "work" / "runs", PROBE_PLUGINS, Path.home()]
    result = _probe(session, tmp_path, "write", outside=[str(p) for p in outside])
    assert result.status == "ok", result.error
    outcomes = result.facts["write"]
    workdir_file = str(tmp_path / "work" / "runs" / "run" / "write" / "probe.txt")
    assert outcomes.pop(workdir_file) == "written"
    assert Path(workdir_file).read_text() == "written from inside the container"
    assert outcomes and all(v.startswith("refused") for v in outcomes.values()), outcomes
    for folder in outside:
        assert not (folder / "probe.txt").exists()


# -- kills -------------------------------------------------------------------------------------


def test_hanging_worker_is_killed_at_the_timeout_and_the_next_job_runs(
    client: Any, session: WorkerSession, tmp_path: Path
) -> None:
    before = _worker_containers(client)
    assert _probe(session, tmp_path, "ok", folder="kill").ok
    container = _worker_containers(client) - before
    assert len(container) == 1

    hung = _probe(session, tmp_path, "hang", timeout=5, folder="kill")
    assert hung.status == "timeout" and hung.error is not None
    assert "did not finish within 5 s" in hung.error.message
    assert not _wait_gone(client, container), "the container of the killed worker is still running"

    after = _probe(session, tmp_path, "ok", folder="kill")
    assert after.ok and after.metrics["answer"] == 42.0


def test_memory_limit_kill_is_crashed_with_the_reason_and_the_next_job_runs(
    client: Any, runtime_env: EnvironmentSpec, tmp_path: Path, probe_path: Path
) -> None:
    for session in _session(client, runtime_env, tmp_path, memory="300m"):
        assert _probe(session, tmp_path, "ok", folder="oom").ok
        crashed = _probe(session, tmp_path, "oom", folder="oom")
        assert crashed.status == "crashed" and crashed.error is not None
        assert crashed.error.kind == "crashed"
        assert "out of memory" in crashed.error.message and "0.3 GiB" in crashed.error.message
        after = _probe(session, tmp_path, "ok", folder="oom")
        assert after.ok and after.metrics["answer"] == 42.0


def test_plain_sigkill_of_the_worker_is_killed_by_sigkill_not_out_of_memory(
    session: WorkerSession, tmp_path: Path
) -> None:
    crashed = _probe(session, tmp_path, "sigkill", folder="sigkill")
    assert crashed.status == "crashed" and crashed.error is not None
    assert crashed.error.message == "the worker died during convert: killed by SIGKILL"
    assert _probe(session, tmp_path, "ok", folder="sigkill").ok


def test_container_killed_from_outside_is_killed_by_sigkill_not_out_of_memory(
    client: Any, session: WorkerSession, tmp_path: Path
) -> None:
    before = _worker_containers(client)
    outcome: list[Result] = []
    job = threading.Thread(target=lambda: outcome.append(_probe(session, tmp_path, "hang", timeout=600)))
    job.start()
    marker = tmp_path / "work" / "runs" / "run" / "hang" / "hanging"
    deadline = time.monotonic() + 300  # a bound, not a pace: the loop ends when the job says it runs
    while not marker.exists() and job.is_alive() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert marker.exists(), "the hang probe never started"
    (name,) = _worker_containers(client) - before
    client.containers.get(name).kill()  # SIGKILL, as `docker kill` sends: the engine, not the memory limit
    job.join()
    (crashed,) = outcome
    assert crashed.status == "crashed" and crashed.error is not None
    assert crashed.error.message == "the container died during convert: killed by SIGKILL"
    assert crashed.error.message in (marker.parent / "probe.log").read_text()


# -- what a container sees -----------------------------------------------------------------------


def test_convert_job_writes_only_its_attempt_and_sees_no_other_model(
    session: WorkerSession, tmp_path: Path
) -> None:
    runs = tmp_path / "work" / "runs"
    run = runs / "run"
    for name in ("reference.npz", "calibration.npz"):
        (run / name).parent.mkdir(parents=True, exist_ok=True)
        (run / name).write_bytes(b"reference data")
    sibling = run / "other-backend--env--fp32"
    other_model = runs / "other-model"
    for folder in (sibling, other_model):
        folder.mkdir(parents=True)
        (folder / "result.json").write_text("{}")
    files = {k: str(run / f"{k}.npz") for k in ("reference", "calibration")}
    result = _probe(
        session,
        tmp_path,
        "write",
        folder="attempt",
        outside=[str(run), str(sibling), str(runs)],
        append=list(files.values()),
        see=[*files.values(), str(sibling / "result.json"), str(other_model / "result.json")],
        **files,
    )
    assert result.status == "ok", result.error
    outcomes = result.facts["write"]
    assert outcomes.pop(str(run / "attempt" / "probe.txt")) == "written"
    assert all(v.startswith("refused") for v in outcomes.values()), outcomes
    assert (run / "reference.npz").read_bytes() == b"reference data"
    seen = result.facts["see"]
    assert seen == {
        files["reference"]: True,
        files["calibration"]: True,
        str(sibling / "result.json"): False,
        str(other_model / "result.json"): False,
    }


def test_model_file_in_the_home_folder_is_mounted_alone(
    client: Any,
    runtime_env: EnvironmentSpec,
    tmp_path: Path,
    probe_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "model.py").write_text("def build(): ...\n")
    (home / "private.txt").write_text("not for containers")
    monkeypatch.setenv("HOME", str(home))  # the launcher (a child process) takes its home from here
    for session in _session(client, runtime_env, tmp_path):
        seen = _probe(
            session,
            tmp_path,
            "ok",
            model=f"{home / 'model.py'}:build",
            see=[str(home / n) for n in ("model.py", "private.txt")],
        )
        assert seen.ok, seen.error
        assert seen.facts["see"] == {str(home / "model.py"): True, str(home / "private.txt"): False}


def test_refused_mount_is_the_cause_and_the_log_exists(session: WorkerSession, tmp_path: Path) -> None:
    refused = _probe(session, tmp_path, "ok", folder="refused", data="/")
    assert refused.status == "failed" and refused.error is not None
    assert refused.error.kind == "bad_input"
    assert refused.error.message.startswith("the docker runtime will not mount / (job option 'data')")
    log = tmp_path / "work" / "runs" / "run" / "refused" / "probe.log"
    assert refused.error.message in log.read_text()
    assert _probe(session, tmp_path, "ok", folder="refused").ok, "the session goes on after a refusal"


# -- same results as venv ----------------------------------------------------------------------


def _attempt(runtime: Any, work: Path) -> Attempt:
    pm = get_plugin_manager(strict=True)
    backend = pm.backends()["ai-edge-torch"]
    env = next(e for e in backend.environments if e.name == "litert-torch-0.10")
    progress = lambda message: print(f"  ▸ [{runtime.name}] {message}", flush=True)  # noqa: E731
    with Engine(pm=pm, runtime=runtime, work_root=work, progress=progress) as engine:
        attempt = engine.attempt(ModelSpec(ref="zoo:tiny_cnn"), backend, env, "fp32")
    print(
        json.dumps({k: attempt.to_dict()[k] for k in ("status", "error", "metrics", "timings")}, default=str)
    )
    return attempt


def test_venv_and_docker_give_equal_metrics_and_docker_records_the_image(client: Any, tmp_path: Path) -> None:
    from liteport.runtimes.docker import DockerRuntime
    from liteport.runtimes.images import image_tag

    venv = _attempt(VenvRuntime(), tmp_path / "venv")
    docker = _attempt(DockerRuntime(), tmp_path / "docker")
    assert venv.status == "ok", venv.cause
    assert docker.status == "ok", docker.cause
    assert docker.runtime == "docker" and docker.lock_hash == venv.lock_hash
    assert set(docker.metrics) == set(venv.metrics)
    for key, value in venv.metrics.items():
        other = docker.metrics[key]
        if isinstance(value, float):
            assert math.isclose(value, other, rel_tol=1e-5, abs_tol=1e-6), (key, value, other)
        else:
            assert value == other, key
    envs = {REFERENCE_ENV.name: REFERENCE_ENV, **get_plugin_manager(strict=True).environments()}
    expected = {
        "image_reference": "torch-2.13",
        "image_convert": "litert-torch-0.10",
        "image_validate": "litert-runtime",
    }
    for fact, env_name in expected.items():
        assert docker.facts[fact] == client.images.get(image_tag(envs[env_name])).id, fact
    assert docker.versions["image"] == docker.facts["image_convert"]


def test_modes_in_containers_share_the_float_flatbuffer(client: Any, tmp_path: Path) -> None:
    # fp32's container keeps it in the shared folder (mounted writable); dynamic's container reads it
    from liteport.runtimes.docker import DockerRuntime

    pm = get_plugin_manager(strict=True)
    backend = pm.backends()["ai-edge-torch"]
    env = next(e for e in backend.environments if e.name == "litert-torch-0.10")
    with Engine(pm=pm, runtime=DockerRuntime(), work_root=tmp_path) as engine:
        fp32, dynamic = (
            engine.attempt(ModelSpec(ref="zoo:tiny_cnn"), backend, env, m) for m in ("fp32", "dynamic")
        )
    assert fp32.status == "ok" and dynamic.status == "ok", (fp32.cause, dynamic.cause)
    assert dynamic.facts.get("reused") == ["fp32.tflite"], dynamic.facts.get("reused")


def test_cli_converts_end_to_end_in_containers(client: Any, tmp_path: Path) -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "liteport",
            "convert",
            "zoo:tiny_cnn",
            "--quant",
            "fp32",
            "--runtime",
            "docker",
            "--workdir",
            str(tmp_path / "work"),
            "--json",
            "-o",
            str(tmp_path / "tiny.tflite"),
        ],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    doc = json.loads(out.stdout)
    assert doc["status"] == "ok" and doc["runtime"] == "docker"
    assert doc["versions"]["image"].startswith("sha256:")
    assert (tmp_path / "tiny.tflite").stat().st_size > 0


@pytest.mark.skipif(
    importlib.util.find_spec("liteport_onnx2tf") is None,
    reason="liteport-onnx2tf is not installed on the host (pip install -e plugins/liteport-onnx2tf)",
)
def test_third_party_plugin_is_staged_into_its_image(client: Any, tmp_path: Path) -> None:
    """liteport-onnx2tf is not part of liteport: its image gets the plugin's wheel, or the worker lacks it."""
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "liteport",
            "convert",
            "zoo:tiny_cnn",
            "--backend",
            "onnx2tf",
            "--env",
            "onnx2tf-1.29",
            "--quant",
            "fp32",
            "--runtime",
            "docker",
            "--workdir",
            str(tmp_path / "work"),
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=3600,
    )
    doc = json.loads(out.stdout)
    print(json.dumps({k: doc.get(k) for k in ("status", "error", "versions")}, default=str))
    assert out.returncode == 0, out.stderr[-2000:]
    assert doc["status"] == "ok" and doc["backend"] == "onnx2tf" and doc["runtime"] == "docker"
    assert doc["facts"]["image_convert"] == doc["versions"]["image"]
