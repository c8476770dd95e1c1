"""The fallback chain with fake backends: fall-through, causes, exit codes, order, picks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from liteport.chain import choose, configured_chain, default_candidates, resolve
from liteport.errors import UsageError
from liteport.plugins import get_plugin_manager
from liteport.types import Attempt


def _liteport(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LITEPORT_DISABLE_PLUGINS": "numeric"}  # the fake validator judges here
    return subprocess.run(
        [sys.executable, "-m", "liteport", *args], capture_output=True, text=True, env=env, timeout=600
    )


def test_chain_falls_through_to_the_next_backend(fake_plugins: Path, cache_dir: Path) -> None:
    out = _liteport("convert", "zoo:tiny_cnn", "--runtime", "local", "--chain", "fake-broken,fake", "--json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert [a["status"] for a in doc["attempts"]] == ["failed", "ok"]
    assert doc["attempts"][0]["error"]["kind"] == "unsupported_op"
    assert doc["chosen"] == 1 and doc["backend"] == "fake" and doc["status"] == "ok"

    table = _liteport("convert", "zoo:tiny_cnn", "--runtime", "local", "--chain", "fake-broken,fake")
    assert table.returncode == 0
    assert "attempts (pick: first)" in table.stdout
    assert "unsupported_op" in table.stdout and "fake-broken-env" in table.stdout


def test_no_valid_attempt_exits_1_with_every_cause(fake_plugins: Path, cache_dir: Path) -> None:
    out = _liteport(
        "convert", "zoo:tiny_cnn", "--runtime", "local", "--quant", "int8", "--chain", "fake-broken,fake"
    )
    assert out.returncode == 1
    assert "unsupported_op" in out.stdout and "validation_failed" in out.stdout
    assert "Traceback" not in out.stdout + out.stderr


def test_resolve_accepts_backends_environments_and_pairs(fake_plugins: Path) -> None:
    backends = get_plugin_manager().backends()
    names = [(b.name, e.name) for b, e in resolve(backends, ["fake-broken-env", "fake", "fake/fake-env"])]
    assert names == [("fake-broken", "fake-broken-env"), ("fake", "fake-env")]
    with pytest.raises(UsageError, match="nope"):
        resolve(backends, ["nope"])


def test_default_order_puts_builtins_first_and_skips_modes_not_offered(fake_plugins: Path) -> None:
    backends = get_plugin_manager().backends()
    order = [e.name for _, e in default_candidates(backends, "fp32")]
    assert order[:4] == ["litert-torch-0.10", "ai-edge-torch-nightly", "onnx-tf-tf2.15", "onnx-tf-tf2.8"]
    assert "fake-env" in order
    assert "fake-env" not in [e.name for _, e in default_candidates(backends, "fp16")]


def test_chain_from_pyproject_or_liteport_toml(tmp_path: Path) -> None:
    assert configured_chain(tmp_path) is None
    (tmp_path / "pyproject.toml").write_text('[tool.liteport]\nchain = ["onnx-tf", "ai-edge-torch"]\n')
    assert configured_chain(tmp_path) == ["onnx-tf", "ai-edge-torch"]
    (tmp_path / "liteport.toml").write_text('chain = ["litert-torch-0.10"]\n')
    assert configured_chain(tmp_path) == ["litert-torch-0.10"]
    (tmp_path / "liteport.toml").write_text("chain = 3\n")
    with pytest.raises(UsageError, match="list"):
        configured_chain(tmp_path)


def _ok(name: str, latency: float, size: int, sqnr: float) -> Attempt:
    return Attempt(
        model="m",
        backend=name,
        environment=name,
        mode="fp32",
        status="ok",
        metrics={"sqnr_db": sqnr},
        facts={"latency_ms": latency, "size_bytes": size},
    )


def test_pick_measures() -> None:
    a, b = _ok("a", 5.0, 100, 30.0), _ok("b", 3.0, 200, 40.0)
    bad = Attempt(model="m", backend="c", environment="c", mode="fp32", status="failed")
    assert choose([bad, a, b], "first") is a
    assert choose([a, b], "fastest") is b
    assert choose([a, b], "smallest") is a
    assert choose([a, b], "most-accurate") is b
    assert choose([bad], "first") is None


def test_a_third_party_backend_places_itself_first_by_its_priority(
    fake_plugins: Path, first_plugins: Path
) -> None:
    backends = get_plugin_manager().backends()
    assert backends["first"].provider == "first"
    order = [b.name for b, _ in default_candidates(backends, "fp32")]
    assert order[0] == "first", order
    assert order.index("fake") > order.index("onnx-tf"), "priority 0 comes after the built-ins"
