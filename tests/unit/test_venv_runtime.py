"""The venv runtime on a tiny real lock: atomic builds, reuse, rebuild on lock change, concurrency."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from liteport.errors import EnvironmentBuildError
from liteport.runtimes.base import WorkerSession, lock_hash
from liteport.runtimes.interpreters import find_python
from liteport.runtimes.venv import MARKER, VenvRuntime
from liteport.types import EnvironmentSpec, Job, ModelSpec


def _spec(tmp_path: Path, pins: str = "pluggy==1.6.0\n") -> EnvironmentSpec:
    lock = tmp_path / "tiny.txt"
    lock.write_text(pins)
    return EnvironmentSpec(name="tiny", python="3.11", lock=str(lock), key_packages=("pluggy",))


def test_console_scripts_run_from_a_cache_deeper_than_a_shebang_may_be(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Linux reads at most 127 bytes of a shebang; past that pip writes an exec line under
    # "#!/bin/sh", which the relocation after the staging rename must rewrite as well.
    deep = tmp_path / ("d" * 60) / ("e" * 60) / "cache"
    monkeypatch.setenv("LITEPORT_CACHE", str(deep))
    handle = VenvRuntime(deep).ensure(_spec(tmp_path), lambda message: None)
    pip = Path(handle.location) / "bin" / "pip"
    assert pip.read_text().startswith("#!/bin/sh"), "the path is short enough for a plain shebang"
    run = subprocess.run([str(pip), "--version"], capture_output=True, text=True, check=False)
    assert run.returncode == 0 and str(handle.location) in run.stdout, run.stdout + run.stderr


def test_build_reuse_and_rebuild_on_lock_change(tmp_path: Path, cache_dir: Path, fake_plugins: Path) -> None:
    runtime = VenvRuntime(cache_dir)
    spec = _spec(tmp_path)
    assert runtime.status(spec) == "missing"
    messages: list[str] = []
    handle = runtime.ensure(spec, messages.append)
    path = Path(handle.location)
    assert path.name == f"tiny-{lock_hash(spec)}"
    assert (path / MARKER).exists()
    assert not list(cache_dir.glob("envs/.building-*"))
    assert any("building environment tiny" in m for m in messages)
    assert runtime.status(spec) == "built"
    # Console scripts point at the final folder, not the staging one it was built in. pip writes
    # the interpreter on the shebang line, or on an exec line under "#!/bin/sh" when the path is
    # longer than a shebang may be (a deep cache folder): both must name the final folder.
    pip_script = (path / "bin" / "pip").read_text()
    assert f"{path}/bin/python" in pip_script and ".building-" not in pip_script, pip_script

    # A worker in it runs jobs with the plugins installed there (the fake one via PYTHONPATH).
    session = WorkerSession(handle, stderr_log=tmp_path / "w.log")
    job = Job(
        kind="convert",
        id="1",
        workdir=str(tmp_path),
        model=ModelSpec(ref="zoo:x"),
        backend="fake",
        options={"key_packages": ["pluggy"]},
    )
    try:
        result = session.run(job, timeout=120, log=None)
    finally:
        session.close()
    assert result.status == "ok", result
    assert result.versions["pluggy"] == "1.6.0"

    # Reuse: nothing rebuilt.
    built_at = (path / MARKER).stat().st_mtime_ns
    again: list[str] = []
    runtime.ensure(spec, again.append)
    assert again == []
    assert (path / MARKER).stat().st_mtime_ns == built_at

    # Comments do not change the hash; a changed pin does, and gives a new environment.
    Path(spec.lock).write_text("# a comment\npluggy==1.6.0\n")
    assert lock_hash(spec) == path.name.rsplit("-", 1)[1]
    Path(spec.lock).write_text("pluggy==1.5.0\n")
    assert runtime.status(spec) == "stale"
    newer = runtime.ensure(spec, lambda m: None)
    assert newer.location != handle.location
    assert json.loads((Path(newer.location) / MARKER).read_text())["lock_hash"] == lock_hash(spec)

    # remove takes every build of the environment, current and stale
    assert sorted(runtime.remove(spec)) == sorted([path, Path(newer.location)])
    assert runtime.status(spec) == "missing"


def test_two_processes_building_one_environment(tmp_path: Path, cache_dir: Path) -> None:
    spec = _spec(tmp_path, "pluggy==1.6.0\nsix==1.17.0\n")
    script = (
        "import sys; from pathlib import Path; from liteport.runtimes.venv import VenvRuntime;"
        "from liteport.types import EnvironmentSpec;"
        f"spec = EnvironmentSpec(name='tiny', python='3.11', lock={spec.lock!r});"
        f"print(VenvRuntime(Path({str(cache_dir)!r})).ensure(spec, print).location)"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True) for _ in range(2)
    ]
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    locations = {out.strip().splitlines()[-1] for out in outputs}
    assert len(locations) == 1
    assert sum("building environment" in out for out in outputs) == 1
    assert sum("waiting for another process" in out for out in outputs) <= 1
    envs = [p for p in (cache_dir / "envs").iterdir() if not p.name.startswith(".")]
    assert len(envs) == 1
    assert not list((cache_dir / "envs").glob(".building-*"))


def test_failed_build_leaves_nothing_half_built(tmp_path: Path, cache_dir: Path) -> None:
    spec = _spec(tmp_path, "this-package-does-not-exist-liteport==0.0.1\n")
    runtime = VenvRuntime(cache_dir)
    with pytest.raises(EnvironmentBuildError, match="could not install the lock"):
        runtime.ensure(spec, lambda m: None)
    assert runtime.status(spec) == "missing"
    assert [p.name for p in (cache_dir / "envs").iterdir()] == [".locks"]


def test_interpreter_override_must_be_a_working_python(monkeypatch: pytest.MonkeyPatch) -> None:
    find_python.cache_clear()
    monkeypatch.setenv("LITEPORT_PYTHON_3_11", "/nonexistent/python")
    with pytest.raises(EnvironmentBuildError, match="LITEPORT_PYTHON_3_11=/nonexistent/python"):
        find_python("3.11")
    monkeypatch.setenv("LITEPORT_PYTHON_3_11", sys.executable)
    find_python.cache_clear()
    assert find_python("3.11") == sys.executable
    find_python.cache_clear()


def test_missing_interpreter_says_how_to_get_one(monkeypatch: pytest.MonkeyPatch) -> None:
    find_python.cache_clear()
    with pytest.raises(EnvironmentBuildError, match="LITEPORT_PYTHON_2_1"):
        find_python("2.1")
    find_python.cache_clear()


ROOT = Path(__file__).resolve().parents[2]


def _second_install(tmp_path: Path) -> Path:
    """Another liteport install (a changed copy of this checkout in its own venv), like a CI clone."""
    source = tmp_path / "other-checkout"
    for name in ("pyproject.toml", "setup.py", "README.md"):
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        (source / name).write_bytes((ROOT / name).read_bytes())
    for tree in ("core", "backends"):
        subprocess.run(["cp", "-r", str(ROOT / tree), str(source / tree)], check=True)
    with open(source / "core" / "__init__.py", "a", encoding="utf-8") as init:
        init.write("# this install differs from the first one\n")
    venv = tmp_path / "other-venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", str(source)], check=True)
    return venv / "bin" / "python"


def test_two_installs_share_an_environment_without_touching_it(
    tmp_path: Path, cache_dir: Path, fake_plugins: Path
) -> None:
    spec = _spec(tmp_path)
    script = (
        "import json, sys; from pathlib import Path\n"
        "from liteport.runtimes.base import WorkerSession\n"
        "from liteport.runtimes.venv import VenvRuntime\n"
        "from liteport.types import EnvironmentSpec, Job, ModelSpec\n"
        f"spec = EnvironmentSpec(name='tiny', python='3.11', lock={spec.lock!r})\n"
        f"handle = VenvRuntime(Path({str(cache_dir)!r})).ensure(spec, print)\n"
        "session = WorkerSession(handle)\n"
        "job = Job(kind='convert', id='1', workdir=sys.argv[1], model=ModelSpec(ref='zoo:x'),"
        " backend='fake')\n"
        "for _ in range(3):\n"
        "    result = session.run(job, timeout=300, log=None)\n"
        "    print('RESULT', result.status, handle.env['PYTHONPATH'].split(':')[0])\n"
        "session.close()\n"
    )
    pythons = [sys.executable, str(_second_install(tmp_path))]
    workdirs = [tmp_path / "a", tmp_path / "b"]
    for workdir in workdirs:
        workdir.mkdir()
    procs = [
        subprocess.Popen([python, "-c", script, str(workdir)], stdout=subprocess.PIPE, text=True)
        for python, workdir in zip(pythons, workdirs)
    ]
    outputs = [p.communicate(timeout=900)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    results = [[line.split() for line in out.splitlines() if line.startswith("RESULT")] for out in outputs]
    assert all(r[1] == "ok" for rows in results for r in rows), outputs
    assert not any("updating liteport" in out for out in outputs)
    overlays = {rows[0][2] for rows in results}
    assert len(overlays) == 2, "each install runs its own liteport code"
    env = next(p for p in (cache_dir / "envs").iterdir() if not p.name.startswith("."))
    assert not list(env.glob("lib/python*/site-packages/liteport*")), (
        "the shared environment holds only its lock"
    )


def test_env_build_builds_environments_side_by_side(
    tmp_path: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from liteport.cli import inventory
    from liteport.cli.main import run

    lock = _spec(tmp_path).lock
    specs = [EnvironmentSpec(name=name, python="3.11", lock=lock) for name in ("tiny-a", "tiny-b")]
    monkeypatch.setattr(inventory, "pick_environments", lambda pm, names: specs)
    monkeypatch.setenv("COLUMNS", "80")  # paths longer than the line stay whole (CI logs, copy-paste)

    assert run(["env", "build", "--jobs", "2"]) == 0
    err = capsys.readouterr().err
    for name in ("tiny-a", "tiny-b"):
        assert f"✓ {name}: {cache_dir / 'envs' / name}-" in err, err
        # two builds' lines interleave: each says which environment it is about
        assert f"{name}: building environment {name}" in err, err
        assert f"log: {cache_dir / 'logs' / f'build-{name}-'}" in err, err
    assert run(["env", "build", "--jobs", "2"]) == 0
    assert "building environment" not in capsys.readouterr().err
    assert run(["env", "build", "--jobs", "0"]) == 2
    assert "--jobs 0" in capsys.readouterr().err


def test_an_overlay_is_built_from_a_copy_and_leaves_the_checkout_untouched(
    tmp_path: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # pip builds a source folder in place: two overlays built at once from one checkout (env build
    # runs two at a time) collided in its build/ folder ("Directory not empty: build/bdist...").
    from liteport.runtimes import overlay

    source = tmp_path / "tinypkg-src"
    source.mkdir()
    (source / "tinypkg.py").write_text("VALUE = 42\n")
    (source / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools==80.9.0"]\nbuild-backend = "setuptools.build_meta"\n'
        '[project]\nname = "tinypkg"\nversion = "0.1"\n[tool.setuptools]\npy-modules = ["tinypkg"]\n'
    )
    before = sorted(p.relative_to(source) for p in source.rglob("*"))
    monkeypatch.setattr(overlay, "source_of", lambda name: ("tinypkg==0.1", source))

    built = overlay.ensure_overlay(cache_dir, ("tinypkg",), lambda message: None)

    assert (built / "tinypkg.py").read_text() == "VALUE = 42\n"
    assert sorted(p.relative_to(source) for p in source.rglob("*")) == before, "pip wrote into the checkout"
    assert json.loads((built / overlay.MARKER).read_text())["distributions"] == [str(source)]
    assert [p.name for p in built.parent.iterdir() if p.name.startswith(".")] == [], "a copy is left"
