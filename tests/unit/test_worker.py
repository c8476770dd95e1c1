"""The worker protocol through a real subprocess: many jobs, noise on stdout, hangs and crashes."""

from __future__ import annotations

from pathlib import Path

from liteport.runtimes.base import WorkerSession
from liteport.runtimes.local import LocalRuntime
from liteport.types import EnvironmentSpec, Job, ModelSpec

ENV = EnvironmentSpec(name="fake-env", python="3.11", lock="/dev/null")


def _job(tmp_path: Path, behaviour: str = "ok", backend: str = "fake") -> Job:
    return Job(
        kind="convert",
        id=behaviour,
        workdir=str(tmp_path),
        model=ModelSpec(ref="zoo:tiny_cnn"),
        backend=backend,
        options={"behaviour": behaviour, "key_packages": ["pluggy"]},
    )


def _session(tmp_path: Path) -> WorkerSession:
    handle = LocalRuntime().ensure(ENV, lambda m: None)
    return WorkerSession(handle, stderr_log=tmp_path / "worker.log")


def test_one_worker_runs_many_jobs_despite_stdout_noise(fake_plugins: Path, tmp_path: Path) -> None:
    session = _session(tmp_path)
    try:
        results = [session.run(_job(tmp_path), timeout=60, log=tmp_path / f"job{i}.log") for i in range(3)]
    finally:
        session.close()
    assert [r.status for r in results] == ["ok"] * 3
    assert session.starts == 1
    assert results[0].versions["pluggy"]
    assert "noise on stdout" in (tmp_path / "job0.log").read_text()
    assert Path(results[0].artifacts["tflite"]).read_bytes() == b"not a real model"


def test_hang_becomes_timeout_and_next_job_runs(fake_plugins: Path, tmp_path: Path) -> None:
    session = _session(tmp_path)
    try:
        hung = session.run(_job(tmp_path, "hang"), timeout=3, log=None)
        after = session.run(_job(tmp_path), timeout=60, log=None)
    finally:
        session.close()
    assert hung.status == "timeout"
    assert hung.error is not None and "did not finish within 3 s" in hung.error.message
    assert after.status == "ok"
    assert session.starts == 2


def test_crash_becomes_crashed_with_reason_and_next_job_runs(fake_plugins: Path, tmp_path: Path) -> None:
    session = _session(tmp_path)
    try:
        crashed = session.run(_job(tmp_path, "crash"), timeout=60, log=None)
        after = session.run(_job(tmp_path), timeout=60, log=None)
    finally:
        session.close()
    assert crashed.status == "crashed"
    assert crashed.error is not None and "SIGKILL" in crashed.error.message
    assert after.status == "ok"


def test_plain_sigkill_reads_killed_by_sigkill_not_out_of_memory(fake_plugins: Path, tmp_path: Path) -> None:
    # Only the kernel or the engine can tell an OOM kill; a bare SIGKILL may come from anyone.
    session = _session(tmp_path)
    try:
        crashed = session.run(_job(tmp_path, "crash"), timeout=60, log=None)
    finally:
        session.close()
    assert crashed.status == "crashed" and crashed.error is not None
    assert crashed.error.message == "the worker died during convert: killed by SIGKILL"


def test_exception_becomes_one_line_converter_error(fake_plugins: Path, tmp_path: Path) -> None:
    session = _session(tmp_path)
    try:
        result = session.run(_job(tmp_path, "raise"), timeout=60, log=tmp_path / "raise.log")
    finally:
        session.close()
    assert result.status == "failed"
    assert result.error is not None
    assert result.error.kind == "converter_error"
    assert result.error.message == "RuntimeError: the fake converter exploded"
    assert "Traceback" in (tmp_path / "raise.log").read_text()


def test_job_for_a_backend_not_in_this_environment_says_so(fake_plugins: Path, tmp_path: Path) -> None:
    session = _session(tmp_path)
    try:
        result = session.run(_job(tmp_path, backend="nope"), timeout=60, log=None)
    finally:
        session.close()
    assert result.status == "env_error"
    assert result.error is not None and "'nope'" in result.error.message
