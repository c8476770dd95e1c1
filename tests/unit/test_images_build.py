"""``liteport images build --jobs N`` builds N images at once; a failed build stops no other one."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from liteport.errors import EnvironmentBuildError
from liteport.runtimes.base import Progress
from liteport.types import EnvironmentSpec


class _Image:
    def __init__(self) -> None:
        self.attrs = {"Size": 2 * 10**9}


class _Images:
    def get(self, image_id: str) -> _Image:
        return _Image()


class _Client:
    def __init__(self) -> None:
        self.images = _Images()


def test_images_build_runs_two_builds_at_once_and_goes_on_after_a_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from liteport.cli import images
    from liteport.cli.main import run

    lock = tmp_path / "lock.txt"
    lock.write_text("pluggy==1.6.0\n")
    names = ("img-a", "img-b", "img-c")
    specs = [EnvironmentSpec(name=name, python="3.11", lock=str(lock)) for name in names]
    both_building = threading.Barrier(2)  # passed only when img-a and img-b build at the same time

    def build_image(client: Any, spec: EnvironmentSpec, progress: Progress, **_: Any) -> tuple[str, float]:
        progress(f"building image of {spec.name}")
        if spec.name == "img-c":
            raise EnvironmentBuildError("docker build of img-c failed: no space left on device")
        both_building.wait(timeout=300)  # a guard only: two builds at once pass it at once
        return f"sha256:{spec.name}", 1.0

    monkeypatch.setattr(images, "pick_environments", lambda pm, names: specs)
    monkeypatch.setattr(images, "connect", lambda: _Client())
    monkeypatch.setattr(images, "write_dockerfiles", lambda specs: [])
    monkeypatch.setattr(images, "image_status", lambda client, spec: ("missing", None))
    monkeypatch.setattr(images, "build_image", build_image)

    assert run(["images", "build", "--jobs", "2"]) == 1
    err = capsys.readouterr().err
    for name in ("img-a", "img-b"):
        assert f"✓ {name}: " in err and "2.00 GB" in err, err
        assert f"{name}: building image of {name}" in err, err  # interleaved lines say whose they are
    assert "✗ img-c: docker build of img-c failed: no space left on device" in err, err
    assert run(["images", "build", "--jobs", "0"]) == 2
    assert "--jobs 0" in capsys.readouterr().err
