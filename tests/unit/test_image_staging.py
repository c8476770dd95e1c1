"""A third-party plugin's distribution goes into its environment's image, as liteport itself does."""

from __future__ import annotations

import importlib.util
import zipfile
from pathlib import Path

import pytest

from liteport.plugins import get_plugin_manager
from liteport.runtimes.images import (
    DOCKERFILE_TEMPLATE,
    project_hash,
    render_dockerfile,
    source_hash,
    stage_distributions,
)
from liteport.stages.environment import REFERENCE_ENV

needs_onnx2tf = pytest.mark.skipif(
    importlib.util.find_spec("liteport_onnx2tf") is None,
    reason="liteport-onnx2tf is not installed on the host (pip install -e plugins/liteport-onnx2tf)",
)


def test_the_template_installs_the_staged_plugin_wheels_with_liteport() -> None:
    text = render_dockerfile(REFERENCE_ENV)
    copy, install = text.index("COPY plugins/ /tmp/dist/"), text.index("--no-index --no-deps /tmp/dist/*.whl")
    assert text.index("COPY --from=project /build/dist/ /tmp/dist/") < copy < install
    assert "plugins/" in DOCKERFILE_TEMPLATE


def test_an_environment_without_plugins_stages_an_empty_folder(tmp_path: Path) -> None:
    assert stage_distributions(REFERENCE_ENV, tmp_path / "plugins", lambda m: None, tmp_path) == []
    assert (tmp_path / "plugins").is_dir() and not list((tmp_path / "plugins").iterdir())
    assert source_hash(REFERENCE_ENV) == project_hash(), "images without plugins keep their hash"


@needs_onnx2tf
def test_third_party_environment_stages_the_plugins_wheel(tmp_path: Path) -> None:
    env = get_plugin_manager(strict=True).environments()["onnx2tf-1.29"]
    assert env.distributions == ("liteport-onnx2tf",)
    (wheel,) = stage_distributions(env, tmp_path / "plugins", lambda m: None, tmp_path)
    assert wheel.name.startswith("liteport_onnx2tf-")
    names = zipfile.ZipFile(wheel).namelist()
    assert "liteport_onnx2tf/plugin.py" in names
    assert "liteport_onnx2tf/locks/onnx2tf-1.29.txt" in names
    assert any(n.endswith(".dist-info/entry_points.txt") for n in names), "found through its entry point"
    assert source_hash(env) != project_hash(), "a change to the plugin makes its image stale"
