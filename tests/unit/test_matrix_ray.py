"""``liteport matrix --executor ray`` with the fake backend, on a two-node Ray cluster on this machine.

The placement rules are tested without Ray; the cluster tests share one cluster (a head and a
second node, one CPU each, loopback only) and wait on files the fake converter writes at its
gate (``LITEPORT_FAKE_GATE``, one gate folder per node), never on elapsed time. The test that
kills a node's raylet runs last: it leaves the cluster with one node.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from raycluster import LocalCluster, Node  # tests/raycluster.py: the same harness as `nox -s ray_cluster`

from liteport.matrix.cells import Cell
from liteport.matrix.placement import Placement

FIXTURES = Path(__file__).parents[1] / "fixtures"
MATRIX = [
    "--models",
    "zoo:tiny_cnn,zoo:lstm",
    "--backends",
    "fake,fake-broken",
    "--modes",
    "fp32,int8",
    "--runtime",
    "local",
]
CELLS = 8
GUARD_S = 300.0  # only a guard against hanging forever: every wait ends on an event


# -- placement, without Ray ----------------------------------------------------------------------


def _cells(*envs: str) -> list[Cell]:
    return [
        Cell(model=f"m{i}", backend="b", environment=env, mode="fp32", key=f"{env}-{i}")
        for env in envs
        for i in range(3)
    ]


def test_placement_keeps_environments_on_the_nodes_where_they_are_warm() -> None:
    placement = Placement(_cells("A", "B"), jobs=4)
    placement.add_node("n1", "host/n1", 1)
    placement.add_node("n2", "host/n2", 1)
    first = {a.node: a.pending.cell.environment for a in placement.assign()}
    assert first == {"n1": "A", "n2": "B"}, "each environment starts on a node of its own"
    placement.done("n2", 0)  # n2 is free again: it takes B (warm there), not A (warm on n1)
    (again,) = placement.assign()
    assert (again.node, again.pending.cell.environment) == ("n2", "B")


def test_placement_takes_any_cell_rather_than_leave_a_node_idle() -> None:
    placement = Placement(_cells("A"), jobs=4)
    placement.add_node("n1", "host/n1", 1)
    placement.add_node("n2", "host/n2", 1)
    assigned = placement.assign()
    assert sorted(a.node for a in assigned) == ["n1", "n2"]
    assert placement.in_flight == 2 and placement.waiting == 1


def test_jobs_caps_the_cells_in_flight_over_the_cluster() -> None:
    placement = Placement(_cells("A", "B"), jobs=3)
    placement.add_node("n1", "host/n1", 2)
    placement.add_node("n2", "host/n2", 2)
    assert len(placement.assign()) == 3
    assert placement.assign() == []


def test_a_lost_cell_is_retried_once_elsewhere_then_given_up() -> None:
    placement = Placement(_cells("A")[:1], jobs=2)
    placement.add_node("n1", "host/n1", 1)
    (first,) = placement.assign()
    placement.add_node("n2", "host/n2", 1)
    assert placement.lose_node(first.node, [first.pending]) == [], "the first loss is retried"
    (retry,) = placement.assign()
    assert retry.node == "n2" and retry.pending.lost_on == ["n1"]
    given_up = placement.lose_node("n2", [retry.pending])
    assert [p.cell.key for p in given_up] == ["A-0"], "lost twice: given up (journaled crashed)"
    assert placement.waiting == 0 and placement.in_flight == 0


def test_cells_with_no_node_left_are_stranded_not_given_up() -> None:
    placement = Placement(_cells("A"), jobs=2)
    placement.add_node("n1", "host/n1", 1)
    (first,) = placement.assign()
    assert placement.lose_node("n1", [first.pending]) == []
    assert placement.assign() == []
    assert len(placement.stranded()) == 3, "they stay out of the journal, for --resume"


# -- without --executor ray, Ray is never imported -------------------------------------------------


def test_matrix_without_the_ray_executor_never_imports_ray(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from liteport.cli.main import run\n"
        f"code = run(['matrix', '--models', 'zoo:tiny_cnn', '--backends', 'fake-broken', '--modes', 'fp32',"
        f" '--runtime', 'local', '--jobs', '1', '-o', {str(tmp_path / 'out')!r}])\n"
        "assert code == 0, code\n"
        "ray = ('ray.', 'liteport.matrix.ray')\n"
        "print(sorted(m for m in sys.modules if m == 'ray' or m.startswith(ray)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=_env(LITEPORT_CACHE=str(tmp_path / "cache")),
        timeout=GUARD_S,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_the_ray_executor_without_ray_says_how_to_get_it(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "sys.modules['ray'] = None  # as if Ray were not installed: importing it raises ImportError\n"
        "from liteport.cli.main import run\n"
        f"sys.exit(run(['matrix', '--models', 'zoo:tiny_cnn', '--backends', 'fake', '--modes', 'fp32',"
        f" '--runtime', 'local', '--executor', 'ray', '-o', {str(tmp_path / 'out')!r}]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=_env(), timeout=GUARD_S
    )
    assert done.returncode == 2, done.stderr
    assert "--executor ray needs Ray (pip install 'liteport[ray]'" in done.stderr
    assert not (tmp_path / "out" / "journal.jsonl").exists()


def test_ray_address_without_the_ray_executor_is_a_usage_error(tmp_path: Path) -> None:
    done = _run_matrix(tmp_path / "out", "--ray-address", "127.0.0.2:1")
    assert done.returncode == 2 and "--ray-address needs --executor ray" in done.stderr


# -- on a two-node cluster -------------------------------------------------------------------------


@dataclass
class Cluster:
    cluster: LocalCluster
    head: Node
    second: Node
    gates: dict[str, Path]

    @property
    def address(self) -> str:
        return self.cluster.address

    def close_gates(self) -> None:
        """The first fake conversion on each node will wait at its gate until it is opened."""
        for gate in self.gates.values():
            for path in gate.iterdir():
                path.unlink()

    def open_gate(self, node: str) -> None:
        (self.gates[node] / "open").touch()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    pytest.importorskip("ray")
    root = tmp_path_factory.mktemp("ray")
    gates = {name: root / f"gate-{name}" for name in ("head", "second")}
    for gate in gates.values():
        gate.mkdir()
    local = LocalCluster()
    try:
        common = _env(LITEPORT_CACHE=str(root / "cache"))
        head = local.start(cpus=1, env={**common, "LITEPORT_FAKE_GATE": str(gates["head"])})
        second = local.add("second", cpus=1, env={**common, "LITEPORT_FAKE_GATE": str(gates["second"])})
        yield Cluster(local, head, second, gates)
    finally:
        for gate in gates.values():
            (gate / "open").touch()  # a converter stranded at a gate (its node killed) may finish and exit
        local.stop()


@pytest.fixture(scope="module")
def local_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same matrix with the default executor: the statuses every Ray run must reproduce."""
    out = tmp_path_factory.mktemp("local") / "out"
    done = _run_matrix(out, "--jobs", "2", cache=out.parent / "cache")
    assert done.returncode == 0, done.stderr
    return out / "journal.jsonl"


def test_ray_run_matches_the_local_run_with_cells_on_both_nodes(
    cluster: Cluster, local_run: Path, tmp_path: Path
) -> None:
    cluster.close_gates()
    out = tmp_path / "ray"
    proc = _start_matrix(out, cluster)
    # Each node holds a fake conversion at its gate: cells are on both nodes, whatever the timing.
    _wait_for(cluster.gates["head"] / "blocked", proc)
    _wait_for(cluster.gates["second"] / "blocked", proc)
    cluster.open_gate("head")
    cluster.open_gate("second")
    _, stderr = proc.communicate(timeout=GUARD_S)
    assert proc.returncode == 0, stderr
    journal = out / "journal.jsonl"
    assert _statuses(journal) == _statuses(local_run)
    entries = _entries(journal)
    node_ids = {e["node"]["ray_node_id"] for e in entries}
    assert node_ids == {cluster.head.node_id(), cluster.second.node_id()}
    assert all(e["node"]["hostname"] for e in entries)
    doc = json.loads((out / "matrix.json").read_text())
    assert {n["ray_node_id"] for n in doc["nodes"].values()} == node_ids
    assert sum(n["cells"] for n in doc["nodes"].values()) == CELLS
    markdown = (out / "matrix.md").read_text()
    assert "## Nodes" in markdown and all(node_id in markdown for node_id in node_ids)
    assert all(node_id in (out / "matrix.html").read_text() for node_id in node_ids)


def test_ctrl_c_cancels_every_cell_on_the_cluster_and_prints_the_resume_command(
    cluster: Cluster, local_run: Path, tmp_path: Path
) -> None:
    cluster.close_gates()
    out = tmp_path / "ray"
    argv = [*MATRIX, "-o", str(out), *_on(cluster)]
    proc = _start_matrix(out, cluster)
    _wait_for(cluster.gates["head"] / "blocked", proc)
    _wait_for(cluster.gates["second"] / "blocked", proc)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=GUARD_S)
    assert proc.returncode == 130, stderr
    command = [line for line in stderr.splitlines() if line.startswith("liteport matrix")]
    assert len(command) == 1, stderr
    assert shlex.split(command[0]) == ["liteport", "matrix", *argv, "--resume"]
    # Nothing left running: no converter stuck at a gate, every CPU of the cluster free again.
    _until(lambda: not _gate_workers(cluster), "the runners' converter workers are gone")
    _until(lambda: _free(cluster), "the cluster's CPUs are all free again")
    before = _keys(out / "journal.jsonl")

    cluster.open_gate("head")
    cluster.open_gate("second")
    resumed = _run_matrix(out, "--resume", ray=cluster)
    assert resumed.returncode == 0, resumed.stderr
    after = _keys(out / "journal.jsonl")
    assert after[: len(before)] == before and len(after) == len(set(after)) == CELLS
    assert f"{CELLS - len(before)} cells run ({len(before)} already journaled)" in resumed.stderr
    assert _statuses(out / "journal.jsonl") == _statuses(local_run)


def test_a_killed_node_loses_no_cell_and_doubles_none(
    cluster: Cluster, local_run: Path, tmp_path: Path
) -> None:
    cluster.close_gates()
    out = tmp_path / "ray"
    proc = _start_matrix(out, cluster)
    _wait_for(cluster.gates["head"] / "blocked", proc)
    _wait_for(cluster.gates["second"] / "blocked", proc)
    second_id = cluster.second.node_id()
    cluster.cluster.kill_raylet(cluster.second)
    # The second node's cell is lost with it: the driver retries it on the head, whose gate opens now.
    cluster.open_gate("head")
    _, stderr = proc.communicate(timeout=GUARD_S)
    assert proc.returncode == 0, stderr
    journal = out / "journal.jsonl"
    keys = _keys(journal)
    assert len(keys) == len(set(keys)) == CELLS, "every cell journaled exactly once"
    assert _statuses(journal) == _statuses(local_run)
    (retried,) = [e for e in _entries(journal) if e.get("lost_on")]
    assert retried["lost_on"] == [f"{retried['node']['hostname']}/{second_id[:8]}"]
    assert retried["node"]["ray_node_id"] == cluster.head.node_id()
    assert "lost" in stderr and second_id[:8] in stderr
    doc = json.loads((out / "matrix.json").read_text())
    assert [c["lost_on"] for c in doc["cells"] if c["lost_on"]] == [retried["lost_on"]]

    resumed = _run_matrix(out, "--resume", ray=cluster)
    assert resumed.returncode == 0, resumed.stderr
    assert f"0 cells run ({CELLS} already journaled)" in resumed.stderr
    assert _keys(journal) == keys


# -- helpers -------------------------------------------------------------------------------------


def _env(**extra: str) -> dict[str, str]:
    path = os.pathsep.join(filter(None, [str(FIXTURES / "plugins_ok"), os.environ.get("PYTHONPATH")]))
    return {
        **os.environ,
        "PYTHONPATH": path,
        "LITEPORT_DISABLE_PLUGINS": "numeric",
        "RAY_USAGE_STATS_ENABLED": "0",
        **extra,
    }


def _run_matrix(
    out: Path, *extra: str, cache: Path | None = None, ray: Cluster | None = None
) -> subprocess.CompletedProcess[str]:
    """The matrix into ``out``; with ``ray``, on that cluster (its address and token in the environment)."""
    on_ray = ["--executor", "ray", "--ray-address", ray.address] if ray else []
    return subprocess.run(
        [sys.executable, "-m", "liteport", "matrix", *MATRIX, "-o", str(out), *on_ray, *extra],
        capture_output=True,
        text=True,
        env=_env(LITEPORT_CACHE=str(cache or out.parent / "cache"), **(ray.cluster.env if ray else {})),
        timeout=GUARD_S,
    )


def _start_matrix(out: Path, ray: Cluster) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "liteport", "matrix", *MATRIX, "-o", str(out), *_on(ray)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(LITEPORT_CACHE=str(out.parent / "cache"), **ray.cluster.env),
    )


def _on(ray: Cluster) -> list[str]:
    return ["--executor", "ray", "--ray-address", ray.address]


def _wait_for(path: Path, proc: subprocess.Popen[str]) -> None:
    """Until ``path`` exists (an event the run makes), failing at once if the run ends first."""
    deadline = time.monotonic() + GUARD_S
    while not path.exists():
        if proc.poll() is not None:
            _, stderr = proc.communicate()
            pytest.fail(f"the matrix ended (exit {proc.returncode}) before {path} appeared: {stderr}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"{path} never appeared")
        time.sleep(0.05)


def _until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + GUARD_S
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"never: {what}")
        time.sleep(0.2)


def _free(cluster: Cluster) -> bool:
    available, total = cluster.cluster.resources()
    return bool(total) and available == total


def _gate_workers(cluster: Cluster) -> list[int]:
    """Converter workers of this cluster's nodes still alive (they carry a gate folder in their env)."""
    gates = [str(g).encode() for g in cluster.gates.values()]
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if b"liteport.stages.worker" in cmdline and any(g in environ for g in gates):
            found.append(int(entry.name))
    return found


def _entries(journal: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in journal.read_text().splitlines() if line.strip()]


def _keys(journal: Path) -> list[str]:
    return [str(e["key"]) for e in _entries(journal)]


def _statuses(journal: Path) -> dict[str, tuple[str, str]]:
    out = {}
    for e in _entries(journal):
        attempt = e["attempt"]
        assert isinstance(attempt, dict)
        out[str(e["key"])] = (attempt["status"], (attempt.get("error") or {}).get("kind", ""))
    return out


# -- the seams, without Ray ----------------------------------------------------------------------


def test_a_node_whose_liteport_differs_is_skipped_with_the_reason() -> None:
    from liteport.matrix.ray_executor import NodeSettings, RayExecutor, _Runner
    from liteport.pipeline import StageTimeouts

    executor = RayExecutor(
        address=None,
        jobs=None,
        settings=NodeSettings(runtime="venv", timeouts=StageTimeouts(), slots=1),
        expected={"torch-2.13": "aaa", "litert-torch-0.10": "bbb"},
        validators=["numeric"],
    )
    runner = _Runner("n" * 56, "host/nnnnnnnn", 1, actor=None)
    same = {"environments": {"torch-2.13": "aaa", "litert-torch-0.10": "bbb"}, "validators": {"numeric": "x"}}
    assert executor._check(runner, same) is None
    other = {**same, "environments": {"torch-2.13": "aaa", "litert-torch-0.10": "ccc"}}
    assert executor._check(runner, other) == (
        "its liteport has other environments: litert-torch-0.10 (lock bbb, node has ccc)"
    )
    assert "validators" in str(executor._check(runner, {**same, "validators": {}}))
    assert executor._check(runner, {"unusable": "no Docker engine reachable"}) == "no Docker engine reachable"


def test_an_executor_that_stops_early_leaves_the_rest_for_resume(tmp_path: Path) -> None:
    from liteport.matrix.journal import Journal
    from liteport.matrix.run import MatrixProgress, Record, run_matrix
    from liteport.types import Attempt

    cells = _cells("A")

    class OneThenStop:
        def run(self, todo: list[Cell], record: Record, progress: MatrixProgress) -> str | None:
            cell = todo[0]
            attempt = Attempt(model=cell.model, backend="b", environment="A", mode="fp32", status="ok")
            entry = {
                "key": cell.key,
                "cell": cell.to_dict(),
                "attempt": attempt.to_dict(),
                "node": {"hostname": "h"},
            }
            record(cell, attempt, entry)
            return "no Ray node can run the remaining 2 cell(s)"

    journal = Journal(tmp_path / "journal.jsonl")
    outcome = run_matrix(None, cells, journal, jobs=1, resume=False, executor=OneThenStop())
    assert outcome.stopped == "no Ray node can run the remaining 2 cell(s)" and not outcome.interrupted
    assert journal.keys() == {"A-0"}
    again = run_matrix(None, cells, journal, jobs=1, resume=True, executor=OneThenStop())
    assert again.skipped == 1 and [c.key for c, _ in again.finished] == ["A-1"]


def test_reports_show_where_each_cell_ran() -> None:
    from liteport.reports import build
    from liteport.reports.html import render_html
    from liteport.reports.markdown import render_markdown

    def entry(key: str, node: dict[str, str], **extra: object) -> dict[str, object]:
        attempt = {"model": "zoo:m", "backend": "b", "environment": "e", "mode": key, "status": "ok"}
        cell = {"model": "zoo:m", "backend": "b", "environment": "e", "mode": key}
        return {"key": key, "cell": cell, "attempt": {**attempt, "lock_hash": "L"}, "node": node, **extra}

    head = {"hostname": "head", "ray_node_id": "a" * 56, "ip": "10.0.0.1"}
    second = {"hostname": "second", "ray_node_id": "b" * 56, "ip": "10.0.0.2"}
    doc = build([entry("fp32", head), entry("int8", second, lost_on=["head/aaaaaaaa"])])
    assert doc["nodes"] == {
        "head/aaaaaaaa": {"hostname": "head", "ray_node_id": "a" * 56, "cells": 1, "by_status": {"ok": 1}},
        "second/bbbbbbbb": {
            "hostname": "second",
            "ray_node_id": "b" * 56,
            "cells": 1,
            "by_status": {"ok": 1},
        },
    }
    assert [c["node"]["hostname"] for c in doc["cells"]] == ["head", "second"]
    markdown = render_markdown(doc)
    assert "## Nodes" in markdown and f"`{'b' * 56}`" in markdown and "lost on head/aaaaaaaa" in markdown
    page = render_html(doc)
    assert "<h2>Nodes</h2>" in page and "b" * 56 in page
