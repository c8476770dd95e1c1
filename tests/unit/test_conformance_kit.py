"""The plugin test kit (``pytest -p liteport.testing``): clear failures when broken, a pass when good."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

from liteport.hookspecs import hookimpl
from liteport.testing import checks
from liteport.types import EnvironmentSpec, Job, Result

FIXTURES = Path(__file__).parent.parent / "fixtures"


def _run_suite(tmp_path: Path, plugins: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    folder = str(FIXTURES / plugins)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [folder, env.get("PYTHONPATH")]))
    env["LITEPORT_CACHE"] = str(tmp_path / "cache")
    # The fake backend writes no real .tflite: only its own fake validator can judge it.
    env["LITEPORT_DISABLE_PLUGINS"] = "numeric,qparams"
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "liteport.testing", "-p", "no:cacheprovider", "-q", *args],
        cwd=tmp_path,  # no project conftest or ini: only the suite is collected
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_broken_registration_fails_with_a_clear_message(tmp_path: Path) -> None:
    out = _run_suite(
        tmp_path,
        "plugins_conformance_broken",
        "--liteport-backend",
        "conformance-broken",
        "--liteport-runtime",
        "local",
        "-k",
        "registration or hooks",
    )
    assert out.returncode == 1, out.stdout + out.stderr
    assert "1 failed, 1 passed" in out.stdout
    assert "mode 'int4' is not a liteport mode" in out.stdout
    assert "'numpy>=1.26' is not an exact pin" in out.stdout
    assert "python must be a version like '3.11', got ''" in out.stdout
    assert "Traceback" not in out.stdout  # a message for people, not a stack


def test_fake_backend_passes_on_the_local_runtime(tmp_path: Path) -> None:
    out = _run_suite(
        tmp_path,
        "plugins_ok",
        "--liteport-backend",
        "fake",
        "--liteport-runtime",
        "local",
        "--liteport-modes",
        "fp32",  # the fake validator rejects int8 by design
        "--liteport-unsupported-model",
        "none",  # the fake converter inspects no model
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "3 passed, 1 skipped" in out.stdout


def test_unknown_backend_is_reported_with_the_installed_ones(tmp_path: Path) -> None:
    out = _run_suite(tmp_path, "plugins_ok", "--liteport-backend", "nope", "-k", "registration")
    assert out.returncode == 1
    assert "backend 'nope' is not registered; installed backends:" in out.stdout
    assert "fake" in out.stdout


class _MisspelledPlugin:
    @hookimpl
    def liteport_convert(self, jb: Job) -> Result | None:
        return None

    def liteport_backends(self) -> list[object]:  # not marked: never called
        return []


def test_hook_checks_name_the_bad_signature_and_the_missing_marker() -> None:
    problems = checks.hook_problems(_MisspelledPlugin(), "plugin 'x'")
    assert any("liteport_convert(jb) does not match the spec liteport_convert(job)" in p for p in problems)
    assert any("liteport_backends is not decorated with @liteport.hookspecs.hookimpl" in p for p in problems)
    assert any("pluggy rejects it" in p for p in problems)


def test_lock_checks_want_exact_pins_and_pluggy(tmp_path: Path) -> None:
    lock = tmp_path / "env.txt"
    lock.write_text("# comment\nnumpy==1.26.4\nrequests\ngit+https://example.org/x.git\n", encoding="utf-8")
    env = EnvironmentSpec(name="x-1", python="3.11", lock=str(lock), key_packages=("numpy", "tensorflow"))
    problems = checks.lock_problems(env)
    assert sum("is not an exact pin" in p for p in problems) == 2
    assert any("does not pin pluggy" in p for p in problems)
    assert any("key_packages ['tensorflow'] are not pinned" in p for p in problems)
    assert checks.error_problems(SimpleNamespace(kind="converter_error", message="a\nb"), "x")  # type: ignore[arg-type]
