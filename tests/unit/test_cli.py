"""The command line: instant `backends`, and one-line errors naming the bad input (exit 2)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest


def _liteport(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "liteport", *args], capture_output=True, text=True, cwd=cwd, timeout=600
    )


def test_backends_lists_builtins_without_importing_torch_or_tensorflow(cache_dir: Path) -> None:
    script = textwrap.dedent("""
        import sys
        from liteport.cli.main import run
        code = run(["backends"])
        heavy = ("torch", "tensorflow", "ai_edge_litert", "litert_torch", "numpy")
        heavy = [m for m in heavy if m in sys.modules]
        print("HEAVY", heavy)
        sys.exit(code or (1 if heavy else 0))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "HEAVY []" in out.stdout
    assert "ai-edge-torch" in out.stdout and "litert-torch-0.10" in out.stdout
    assert "ai-edge-torch-nightly" in out.stdout


def test_zoo_list_names_the_models() -> None:
    out = _liteport("zoo", "list")
    assert out.returncode == 0
    for name in ("tiny_cnn", "mobilenet_v2", "resnet", "hardswish_se", "attention_encoder", "lstm"):
        assert f"zoo:{name}" in out.stdout


MODELS = textwrap.dedent("""
    import torch
    from torch import nn

    def good():
        return nn.Linear(4, 2), (torch.randn(1, 4),)

    def raises():
        raise ValueError("dataset path not configured")

    def not_a_module():
        return "hello", (torch.randn(1, 4),)
""")


@pytest.fixture
def models_file(tmp_path: Path) -> Path:
    path = tmp_path / "models.py"
    path.write_text(MODELS)
    return path


def _assert_one_line_error(out: subprocess.CompletedProcess[str], *needles: str) -> None:
    text = out.stdout + out.stderr
    assert out.returncode == 2, text
    assert "Traceback" not in text
    lines = [line for line in out.stderr.splitlines() if line.startswith("liteport: error:")]
    assert len(lines) == 1, text
    for needle in needles:
        assert needle in lines[0], lines[0]


def _convert(ref: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return _liteport("convert", ref, "--runtime", "local", "--backend", "ai-edge-torch", *extra)


def test_missing_model_file(tmp_path: Path, cache_dir: Path) -> None:
    _assert_one_line_error(_convert(f"{tmp_path}/nope.py:build"), "nope.py")


def test_factory_not_found(models_file: Path, cache_dir: Path) -> None:
    _assert_one_line_error(_convert(f"{models_file}:missing_factory"), "missing_factory")


def test_factory_raising(models_file: Path, cache_dir: Path) -> None:
    _assert_one_line_error(_convert(f"{models_file}:raises"), "raises", "dataset path not configured")


def test_factory_returning_something_else(models_file: Path, cache_dir: Path) -> None:
    _assert_one_line_error(_convert(f"{models_file}:not_a_module"), "not_a_module", "str")


def test_weights_that_do_not_match(models_file: Path, tmp_path: Path, cache_dir: Path) -> None:
    import torch

    weights = tmp_path / "other.pt"
    torch.save({"conv.weight": torch.zeros(3)}, weights)
    _assert_one_line_error(_convert(f"{models_file}:good", "--weights", str(weights)), "other.pt")


def test_missing_weights_file(models_file: Path, tmp_path: Path, cache_dir: Path) -> None:
    _assert_one_line_error(_convert(f"{models_file}:good", "--weights", str(tmp_path / "w.pt")), "w.pt")


def test_unknown_backend(cache_dir: Path) -> None:
    _assert_one_line_error(_liteport("convert", "zoo:tiny_cnn", "--backend", "nope"), "nope", "ai-edge-torch")


def test_unknown_mode(cache_dir: Path) -> None:
    _assert_one_line_error(_liteport("convert", "zoo:tiny_cnn", "--quant", "int3"), "int3", "fp32")


def test_unknown_zoo_model(cache_dir: Path) -> None:
    _assert_one_line_error(_convert("zoo:no_such_model"), "no_such_model")


def test_verbose_shows_the_traceback(models_file: Path, cache_dir: Path) -> None:
    out = _convert(f"{models_file}:raises", "--verbose")
    assert out.returncode == 2
    assert "Traceback" in out.stdout + out.stderr


def test_backends_shows_a_broken_plugin_with_its_traceback(broken_plugins: Path) -> None:
    out = _liteport("backends")
    assert out.returncode == 0, out.stderr
    assert "ai-edge-torch" in out.stdout
    assert "plugin 'broken' (liteport-broken) failed to load" in out.stdout
    assert "Traceback" in out.stdout and "needs a package that is not installed" in out.stdout


def test_strict_plugins_makes_a_broken_plugin_fatal(broken_plugins: Path) -> None:
    out = _liteport("backends", "--strict-plugins")
    assert out.returncode == 1
    assert "plugin 'broken' from liteport-broken failed to load" in out.stderr
    assert "Traceback" not in out.stderr
