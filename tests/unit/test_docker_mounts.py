"""What the docker runtime binds into a container, decided from a job alone (no engine needed).

The engine-side proof (a job really cannot write or see what is not bound) is in
tests/integration/test_docker.py; these pin the plan itself for every kind of job.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from argparse import Namespace
from pathlib import Path
from typing import Any

import pytest

from liteport.runtimes.docker import (
    Launcher,
    MountRefused,
    describe_container_exit,
    mount_args,
    plan_mounts,
    too_wide,
)


@pytest.fixture
def layout(tmp_path: Path) -> dict[str, Path]:
    """A user's home with a project, and a work folder holding two models' run folders."""
    home = tmp_path / "home" / "user"
    project = home / "project"
    project.mkdir(parents=True)
    (project / "model.py").write_text("def build(): ...\n")
    (project / "weights.pt").write_bytes(b"w")
    (home / "loose.py").write_text("def build(): ...\n")
    run = tmp_path / "work" / "runs" / "model-build-abc"
    attempt = run / "onnx2tf--onnx2tf-1.29--fp32"
    attempt.mkdir(parents=True)
    for name in ("reference.npz", "calibration.npz", "model-opset13.onnx"):
        (run / name).write_bytes(b"x")
    other = tmp_path / "work" / "runs" / "other-model-def"
    other.mkdir(parents=True)
    return {"home": home, "project": project, "run": run, "attempt": attempt, "other": other}


def _job(kind: str, workdir: Path, ref: str, **options: Any) -> dict[str, Any]:
    return {"kind": kind, "id": "j", "workdir": str(workdir), "model": {"ref": ref}, "options": options}


def test_convert_writes_only_its_attempt_and_reads_reference_files(layout: dict[str, Path]) -> None:
    run, attempt = layout["run"], layout["attempt"]
    job = _job(
        "convert",
        attempt,
        "zoo:tiny_cnn",
        reference=str(run / "reference.npz"),
        calibration=str(run / "calibration.npz"),
        onnx=str(run / "model-opset13.onnx"),
        key_packages=["numpy"],
    )
    plan = plan_mounts(job, str(attempt / "convert.log"), layout["project"], home=layout["home"])
    assert plan == {
        attempt: True,
        run / "reference.npz": False,
        run / "calibration.npz": False,
        run / "model-opset13.onnx": False,
    }


def test_convert_writes_the_folder_its_modes_share(layout: dict[str, Path]) -> None:
    # ai-edge-torch keeps its float flatbuffer there for the model's other modes on that environment
    run, attempt = layout["run"], layout["attempt"]
    shared = run / "shared" / "ai-edge-torch--litert-torch-0.10--0123456789ab"
    shared.mkdir(parents=True)
    job = _job("convert", attempt, "zoo:tiny_cnn", shared_dir=str(shared))
    plan = plan_mounts(job, str(attempt / "convert.log"), layout["project"], home=layout["home"])
    assert plan == {attempt: True, shared: True}
    assert layout["other"] not in plan and run not in plan


def test_reference_stage_gets_its_own_run_folder_not_runs(layout: dict[str, Path]) -> None:
    run = layout["run"]
    ref = f"{layout['project'] / 'model.py'}:build"
    plan = plan_mounts(_job("reference", run, ref), str(run / "reference.log"), run, home=layout["home"])
    assert plan == {run: True, layout["project"]: False}
    assert not any(layout["other"] == p or p in layout["other"].parents for p in plan)


def test_model_in_the_home_folder_mounts_the_file_alone(layout: dict[str, Path]) -> None:
    run, home = layout["run"], layout["home"]
    plan = plan_mounts(_job("reference", run, f"{home / 'loose.py'}:build"), None, run, home=home)
    assert plan == {run: True, home / "loose.py": False}


def test_model_at_the_root_or_a_top_level_folder_mounts_the_file_alone(layout: dict[str, Path]) -> None:
    run = layout["run"]
    for folder in (Path("/"), Path("/tmp")):
        assert too_wide(folder, layout["home"])
    loose = Path("/etc/passwd")  # a real file directly under a top-level folder
    plan = plan_mounts(_job("reference", run, f"{loose}:build"), None, run, home=layout["home"])
    assert plan == {run: True, loose: False}


def test_model_folder_holding_the_work_folder_mounts_the_file_alone(tmp_path: Path) -> None:
    project = tmp_path / "project"
    run = project / "work" / "runs" / "m-1"
    run.mkdir(parents=True)
    (project / "model.py").write_text("def build(): ...\n")
    plan = plan_mounts(_job("reference", run, "model.py:build"), None, project, home=tmp_path / "home")
    assert plan == {run: True, project / "model.py": False}


def test_weights_and_inputs_are_mounted_as_files(layout: dict[str, Path]) -> None:
    run, project = layout["run"], layout["project"]
    job = _job("reference", run, f"{project / 'model.py'}:build")
    job["model"]["weights"] = str(project / "weights.pt")
    job["model"]["inputs"] = str(layout["home"] / "loose.py")  # any file: what matters is its folder
    plan = plan_mounts(job, None, run, home=layout["home"])
    assert plan == {run: True, project: False, layout["home"] / "loose.py": False}


def test_module_ref_mounts_its_top_package_not_the_working_directory(layout: dict[str, Path]) -> None:
    run, home = layout["run"], layout["home"]
    (home / "mypkg").mkdir()
    (home / "mypkg" / "__init__.py").write_text("")
    plan = plan_mounts(_job("reference", run, "mypkg.models:build"), None, home, home=home)
    assert plan == {run: True, home / "mypkg": False}


def test_pythonpath_entries_that_are_too_wide_are_left_out(layout: dict[str, Path]) -> None:
    attempt, home = layout["attempt"], layout["home"]
    entries = [home, layout["project"], Path("/")]
    plan = plan_mounts(_job("validate", attempt, "zoo:tiny_cnn"), None, attempt, entries, home=home)
    assert plan == {attempt: True, layout["project"]: False}


@pytest.mark.parametrize("what", ["option", "workdir"])
def test_a_job_needing_root_or_home_whole_is_refused_with_the_reason(
    layout: dict[str, Path], what: str
) -> None:
    home = layout["home"]
    if what == "option":
        job = _job("convert", layout["attempt"], "zoo:tiny_cnn", data="/")
    else:
        job = _job("convert", home, "zoo:tiny_cnn")
    with pytest.raises(MountRefused, match="will not mount"):
        plan_mounts(job, None, home, home=home)


def test_launcher_refusal_is_the_cause_and_lands_in_the_job_log(layout: dict[str, Path]) -> None:
    """No container is started: the refusal comes back as the job's result, and its log exists."""
    attempt = layout["attempt"]
    log = attempt / "convert.log"
    request = {"job": _job("convert", attempt, "zoo:tiny_cnn", data="/"), "log": str(log)}
    options = Namespace(image="sha256:none", env_name="test", memory="1g", pids=64, cpus=None, docker="false")
    out = io.StringIO()
    Launcher(options, io.StringIO(json.dumps(request) + "\n"), out).serve()
    messages = [json.loads(line) for line in out.getvalue().splitlines()]
    assert messages[0]["event"] == "ready"
    result = messages[1]["result"]
    assert result["status"] == "failed" and result["error"]["kind"] == "bad_input"
    assert "will not mount / (job option 'data')" in result["error"]["message"]
    assert result["error"]["message"] in log.read_text()


def test_container_exit_codes_name_the_signal() -> None:
    assert describe_container_exit(137) == "killed by SIGKILL"
    assert describe_container_exit(143) == "killed by SIGTERM"
    assert describe_container_exit(1) == "exit code 1"
    assert "exit code 125" in describe_container_exit(125)


def test_mount_args_are_read_only_unless_writable_and_quote_commas(tmp_path: Path) -> None:
    odd = tmp_path / "a,b"
    args = mount_args({tmp_path: True, odd: False})
    assert args == [
        "--mount",
        f"type=bind,source={tmp_path},target={tmp_path}",
        "--mount",
        f'type=bind,"source={odd}","target={odd}",readonly',
    ]


def test_the_guard_imports_with_only_the_standard_library() -> None:
    """Images hold only their lock's packages: the in-container guard must not need filelock or docker."""
    code = (
        "import sys\n"
        "for name in ('filelock', 'docker', 'pluggy', 'numpy'):\n"
        "    sys.modules[name] = None  # importing any of them now fails\n"
        "import liteport.runtimes.docker_guard\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
