"""The conformance suite, collected by ``liteport.testing`` for ``--liteport-backend NAME``.

Every test fails with one message listing every problem it found, each naming the backend,
the field or file, and what to do.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from liteport.pipeline import Engine
from liteport.plugins import PluginManager
from liteport.testing import checks
from liteport.types import BackendInfo, EnvironmentSpec, ModelSpec

CONVERT_MODEL = "zoo:tiny_cnn"


def _fail_on(problems: list[str]) -> None:
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


def _environment(backend: BackendInfo, name: str) -> EnvironmentSpec:
    return next(env for env in backend.environments if env.name == name)


def test_registration_record_is_valid(
    liteport_backend: BackendInfo, liteport_plugin_manager: PluginManager
) -> None:
    """Frozen records, modes and layouts liteport knows, locks with exact pins, a Python version."""
    _fail_on(checks.record_problems(liteport_backend, liteport_plugin_manager.quantizers()))


def test_hooks_match_the_specs(liteport_backend: BackendInfo, tmp_path: Path) -> None:
    """Hooks carry @hookimpl and the spec's argument names, and jobs reach only their provider."""
    label = f"plugin {liteport_backend.provider!r} (backend {liteport_backend.name!r})"
    try:
        plugin = checks.plugin_object(liteport_backend.provider)
    except LookupError as exc:
        pytest.fail(
            f"{label}: {exc}; register backends through the 'liteport' entry-point group", pytrace=False
        )
    problems = checks.hook_problems(plugin, label)
    problems += checks.dispatch_problems(plugin, liteport_backend, label, str(tmp_path))
    problems += checks.registration_import_problems(liteport_backend.provider, label)
    _fail_on(problems)


def test_mode_converts_tiny_cnn_and_validates(
    liteport_engine: Engine, liteport_backend: BackendInfo, liteport_case: tuple[str, str]
) -> None:
    """zoo:tiny_cnn converts in this mode and the validators accept the model."""
    env_name, mode = liteport_case
    if mode == "qat" or liteport_backend.needs == "qat":
        pytest.skip("mode qat needs a QAT-prepared model; the suite converts a plain float model")
    attempt = liteport_engine.attempt(
        ModelSpec(ref=CONVERT_MODEL), liteport_backend, _environment(liteport_backend, env_name), mode
    )
    label = f"backend {liteport_backend.name!r} in {env_name} ({mode}) on {CONVERT_MODEL}"
    if attempt.status != "ok":
        where = f" (log: {attempt.error.log})" if attempt.error and attempt.error.log else ""
        problems = [f"{label}: {attempt.status}: {attempt.cause}{where}"]
        pytest.fail("\n".join(problems + checks.error_problems(attempt.error, label)), pytrace=False)
    problems = []
    if not attempt.tflite or not Path(attempt.tflite).is_file():
        problems.append(f"{label}: no .tflite file was returned in artifacts['tflite']")
    layout = attempt.facts.get("input_layout", "NCHW")
    for value in [layout] if isinstance(layout, str) else list(layout):
        if value not in liteport_backend.layouts:
            problems.append(
                f"{label}: facts['input_layout'] {value!r} is not among the declared layouts "
                f"{liteport_backend.layouts!r}"
            )
    _fail_on(problems)


def test_unsupported_op_is_classified(
    liteport_engine: Engine,
    liteport_backend: BackendInfo,
    liteport_environment: str,
    liteport_unsupported_model: str | None,
) -> None:
    """A model with an op the backend cannot convert fails as unsupported_op with a one-line message."""
    model = liteport_unsupported_model
    if model is None:
        pytest.skip("no unsupported-op model (--liteport-unsupported-model none)")
        return
    if liteport_backend.needs == "qat":
        pytest.skip("a qat backend converts QAT-prepared models only")
    mode = "fp32" if "fp32" in liteport_backend.modes else liteport_backend.modes[0]
    env = _environment(liteport_backend, liteport_environment)
    attempt = liteport_engine.attempt(ModelSpec(ref=model), liteport_backend, env, mode)
    label = f"backend {liteport_backend.name!r} in {env.name} ({mode}) on {model}"
    if attempt.status == "ok":
        pytest.fail(
            f"{label}: converted and validated, so it is no test of error handling; pass "
            "--liteport-unsupported-model with a model whose op this backend rejects",
            pytrace=False,
        )
    problems = checks.error_problems(attempt.error, label)
    if attempt.error is not None and attempt.error.kind != "unsupported_op":
        problems.insert(
            0,
            f"{label}: reported {attempt.status} {attempt.cause!r}; an op the converter cannot handle "
            "must be raised as liteport.errors.UnsupportedOp (kind unsupported_op) naming the op",
        )
    _fail_on(problems)
