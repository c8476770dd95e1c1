"""Every environment's committed Dockerfile is exactly the template rendered for it."""

from __future__ import annotations

from pathlib import Path

import pytest

from liteport.plugins import get_plugin_manager
from liteport.runtimes.images import render_dockerfile
from liteport.stages.environment import REFERENCE_ENV
from liteport.types import EnvironmentSpec

ROOT = Path(__file__).resolve().parents[2]


def _environments() -> list[EnvironmentSpec]:
    envs = {REFERENCE_ENV.name: REFERENCE_ENV, **get_plugin_manager(strict=True).environments()}
    return [envs[name] for name in sorted(envs)]


@pytest.mark.parametrize("spec", _environments(), ids=lambda spec: spec.name)
def test_committed_dockerfile_is_the_rendered_template(spec: EnvironmentSpec) -> None:
    path = ROOT / "images" / spec.name / "Dockerfile"
    assert path.is_file(), f"{path} is missing: run `liteport images build {spec.name}` once to write it"
    assert path.read_text(encoding="utf-8") == render_dockerfile(spec), (
        f"{path} differs from the template in liteport/runtimes/images.py: delete it and run "
        f"`liteport images build {spec.name}` to write it again, or change the template itself"
    )


def test_no_dockerfile_without_an_environment() -> None:
    # Out-of-tree plugins under plugins/ may not be installed in this test session.
    names = {spec.name for spec in _environments()} | {
        p.stem for p in ROOT.glob("plugins/*/src/*/locks/*.txt")
    }
    orphans = sorted(
        p.parent.name for p in (ROOT / "images").glob("*/Dockerfile") if p.parent.name not in names
    )
    assert not orphans, f"images/ has Dockerfiles for unknown environments: {orphans}"
