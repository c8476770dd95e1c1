"""Real converters on a two-node Ray cluster on this machine: the same statuses as ``--executor local``.

tiny_cnn x 2 environments x 2 modes; each node builds (here: reuses, from the shared cache) its
environments with the venv runtime. The first placement puts one environment on each node, so the
cells land on both nodes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from raycluster import LocalCluster

MATRIX = [
    "--models",
    "zoo:tiny_cnn",
    "--envs",
    "litert-torch-0.10,ai-edge-torch-nightly",
    "--modes",
    "fp32,int8",
    "--jobs",
    "2",
]


@pytest.fixture
def cluster() -> Iterator[LocalCluster]:
    pytest.importorskip("ray")
    local = LocalCluster()
    try:
        local.start(cpus=1)
        local.add("second", cpus=1)
        yield local
    finally:
        local.stop()


def _matrix(
    out: Path, workdir: Path, *extra: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "liteport",
            "matrix",
            *MATRIX,
            "-o",
            str(out),
            "--workdir",
            str(workdir),
            *extra,
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0", **(env or {})},
        timeout=3600,
    )


def _statuses(out: Path) -> dict[str, tuple[str, str]]:
    doc = json.loads((out / "matrix.json").read_text())
    return {c["key"]: (c["status"], c["error_kind"] or "") for c in doc["cells"]}


def test_ray_cluster_gets_the_local_statuses_with_cells_on_both_nodes(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    local = _matrix(tmp_path / "local", tmp_path / "work-local")
    assert local.returncode == 0, local.stderr
    on_ray = _matrix(
        tmp_path / "ray",
        tmp_path / "work-ray",
        "--executor",
        "ray",
        "--ray-address",
        cluster.address,
        env=cluster.env,
    )
    assert on_ray.returncode == 0, on_ray.stderr
    assert len(_statuses(tmp_path / "local")) == 4
    assert _statuses(tmp_path / "ray") == _statuses(tmp_path / "local")
    doc = json.loads((tmp_path / "ray" / "matrix.json").read_text())
    assert {c["node"]["ray_node_id"] for c in doc["cells"]} == {n.node_id() for n in cluster.nodes}
    assert all(c["lock_hash"] for c in doc["cells"] if c["status"] != "unsupported")
