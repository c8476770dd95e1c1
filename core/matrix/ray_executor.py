# Over 400 lines on purpose: driver loop, node runner and fault handling change together.
"""The matrix on a Ray cluster: ``liteport matrix --executor ray [--ray-address ADDRESS]``.

Imported only when asked for; Ray itself (``pip install 'liteport[ray]'``) only inside functions.

Design: one runner actor per node (``NodeRunner``), pinned there, holding one Engine. Each cell is
one call of its ``run`` method (an actor task) and comes back to the driver as a journal entry; the
driver (the ``liteport matrix`` process) alone appends to the journal, so resume, shards and
reports are unchanged. Why one actor per node rather than a task per cell or an actor per
(node, environment): a plain task has nowhere to keep converter workers warm between cells, so
every cell would pay its imports again; an actor per environment would start its own reference
(torch) and validator workers too, so those imports would be paid once per backend environment on
every node. One Engine per node pays every environment's imports once per node (per slot in use),
exactly as ``--jobs`` does on one machine, and ``placement.Placement`` steers cells to the nodes
where their environment is already warm.

Nodes build or reuse environments themselves (``VenvRuntime.ensure``: the safe build under a file
lock), from the locks of their own liteport install, which must hash the same as the driver's (a
node whose locks differ is skipped with a warning). With ``--runtime docker`` a node never builds an
image: a missing one is an ``env_error`` saying how to get it there.

Faults: a lost runner (its node died, its raylet was killed) loses the cells it was running; each
is retried once on another node, and recorded ``crashed`` with the cause "node lost" when lost
again. With no node left, the run stops and the unfinished cells stay out of the journal for
``--resume``. Ctrl-C closes every runner (killing its converter workers), kills the actors and
raises KeyboardInterrupt: nothing is left running.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from liteport import __version__
from liteport.errors import LiteportError, UsageError, first_line
from liteport.matrix.cells import Cell, environments_of
from liteport.matrix.placement import Assignment, Placement
from liteport.matrix.run import MatrixProgress, Record, run_cell
from liteport.pipeline import Engine, PoolClosed, StageTimeouts
from liteport.pipeline.explain import ExplainOptions
from liteport.plugins import PluginManager, get_plugin_manager
from liteport.runtimes import get_runtime
from liteport.runtimes.base import lock_hash
from liteport.runtimes.images import image_tag
from liteport.runtimes.venv import default_cache_dir
from liteport.stages.environment import REFERENCE_ENV
from liteport.types import Attempt, EnvironmentSpec, ErrorInfo, ErrorKind

NODE_LOST = "node lost"
CLOSE_TIMEOUT_S = 30.0  # runners close their workers at once; this only bounds a hung node
POLL_S = 0.5  # ray.wait slice: short enough for Ctrl-C to be handled promptly
REFRESH_S = 10.0  # how often the driver looks for nodes that joined the cluster meanwhile
# At the start, cells wait until every node has reported (so the first placement spreads the
# environments over all of them), but no longer than this for a node whose runner cannot start.
GATHER_S = 60.0
LOCAL_OBJECT_STORE = 128 * 2**20  # a local instance carries only small JSON entries


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise UsageError(
            "--executor ray needs Ray", hint="pip install 'liteport[ray]' on the driver and on every node"
        ) from None
    return ray


@dataclass(frozen=True)
class NodeSettings:
    """What the driver tells every runner (plain data: it crosses to other machines)."""

    runtime: str
    timeouts: StageTimeouts
    slots: int
    workdir: str | None = None
    cwd: str | None = None
    explain: ExplainOptions | None = None
    strict_plugins: bool = False
    reuse: bool = True  # share mode-independent work between a model's modes (matrix --no-reuse)


class NodeRunner:
    """The matrix's worker on one node (a Ray actor): one Engine whose warm workers serve its cells."""

    def __init__(self, settings: NodeSettings) -> None:
        import ray

        context = ray.get_runtime_context()
        self.node = {
            "hostname": socket.gethostname(),
            "ray_node_id": context.get_node_id(),
            "ip": ray.util.get_node_ip_address(),
        }
        self.settings = settings
        self.unusable: str | None = None
        self.engine: Engine | None = None
        self.images_checked: dict[str, str | None] = {}
        self.lock = threading.Lock()
        try:
            self.pm = get_plugin_manager(strict=True if settings.strict_plugins else None)
            work_root = Path(settings.workdir) if settings.workdir else default_cache_dir() / "work"
            work_root.mkdir(parents=True, exist_ok=True)
            cwd = settings.cwd if settings.cwd and os.path.isdir(settings.cwd) else None
            self.engine = Engine(
                pm=self.pm,
                runtime=get_runtime(settings.runtime),  # docker: checks the node's engine now
                work_root=work_root,
                cwd=cwd,
                timeouts=settings.timeouts,
                workers_per_env=settings.slots,
                reuse=settings.reuse,
            )
        except (LiteportError, OSError) as exc:
            self.unusable = first_line(exc)

    def describe(self) -> dict[str, Any]:
        """The node and what its liteport offers: environments and validators with their lock hashes."""

        if self.unusable or self.engine is None:
            return {"node": self.node, "unusable": self.unusable}
        envs = {REFERENCE_ENV.name: lock_hash(REFERENCE_ENV)}
        for backend in self.pm.backends().values():
            envs.update({e.name: lock_hash(e) for e in backend.environments})
        validators = {name: lock_hash(v.environment) for name, v in self.pm.validators().items()}
        envs.update({v.environment.name: lock_hash(v.environment) for v in self.pm.validators().values()})
        return {"node": self.node, "liteport": __version__, "environments": envs, "validators": validators}

    def run(self, cell: dict[str, Any]) -> dict[str, Any] | None:
        """One cell: its journal entry (``attempt``, ``node``, ...), or None when closed meanwhile."""
        engine = self.engine
        if engine is None:
            raise RuntimeError(f"runner on {self.node['hostname']} is unusable: {self.unusable}")
        planned = Cell(**cell)
        missing = self._missing_image(planned)
        if missing:
            attempt = _failed(planned, engine.runtime.name, "env_error", missing)
            return {**_entry(planned, attempt), "node": dict(self.node)}
        try:
            _, entry = run_cell(engine, planned, self.settings.explain)
        except PoolClosed:
            return None
        entry["node"] = {**entry.get("node", {}), **self.node}
        return entry

    def close(self) -> None:
        """Stop every converter worker of this node, busy ones included."""
        if self.engine is not None:
            self.engine.close()

    def _missing_image(self, cell: Cell) -> str | None:
        """With the docker runtime: why an image this cell needs is not usable on this node, if so."""
        if self.settings.runtime != "docker" or self.engine is None:
            return None

        backend = self.pm.backends().get(cell.backend)
        specs: list[EnvironmentSpec] = [REFERENCE_ENV]
        specs += [v.environment for v in self.pm.validators().values() if cell.mode in v.modes]
        specs += [e for e in (backend.environments if backend else ()) if e.name == cell.environment]
        for spec in specs:
            with self.lock:
                if spec.name not in self.images_checked:
                    status = self.engine.runtime.status(spec)
                    self.images_checked[spec.name] = (
                        None
                        if status == "built"
                        else f"image {image_tag(spec)} is {status} on node {self.node['hostname']} "
                        f"({self.node['ray_node_id'][:8]}): build it there (`liteport images build "
                        f"{spec.name}`) or copy it (`docker save {image_tag(spec)} | ssh NODE docker load`)"
                    )
            if self.images_checked[spec.name]:
                return self.images_checked[spec.name]
        return None


def _failed(cell: Cell, runtime: str, kind: ErrorKind, message: str) -> Attempt:
    return Attempt(
        model=cell.model,
        backend=cell.backend,
        environment=cell.environment,
        mode=cell.mode,
        status="env_error" if kind == "env_error" else "crashed",
        error=ErrorInfo(kind=kind, message=message),
        runtime=runtime,
        options=dict(cell.options),
    )


def _entry(cell: Cell, attempt: Attempt) -> dict[str, Any]:
    return {"key": cell.key, "cell": cell.to_dict(), "attempt": attempt.to_dict(), "log_excerpt": None}


def cell_payload(cell: Cell) -> dict[str, Any]:
    return {**cell.to_dict(), "key": cell.key}


@dataclass
class _Runner:
    node_id: str
    label: str
    slots: int
    actor: Any
    ready: bool = False


@dataclass
class RayExecutor:
    """Runs cells on a Ray cluster (``address``), or on a local Ray instance when it is None."""

    address: str | None
    jobs: int | None  # cells in flight over the cluster; None: every CPU the cluster offers
    settings: NodeSettings
    expected: Mapping[str, str]  # environment -> lock hash every node must have
    validators: Sequence[str] = ()
    say: Callable[[str], None] = lambda message: None
    _runners: dict[str, _Runner] = field(default_factory=dict)
    _lost: dict[str, str] = field(default_factory=dict)  # node id -> label, nodes lost in this run
    _skipped: set[str] = field(default_factory=set)

    def run(self, cells: Sequence[Cell], record: Record, progress: MatrixProgress) -> str | None:
        ray = import_ray()
        self._connect(ray)
        try:
            return self._drive(ray, cells, record, progress)
        except KeyboardInterrupt:
            self._cancel(ray)
            raise
        finally:
            self._shutdown(ray)

    # -- the cluster -------------------------------------------------------------------------

    def _connect(self, ray: Any) -> None:
        quiet = {"log_to_driver": False, "logging_level": logging.WARNING}
        try:
            if self.address:
                ray.init(address=self.address, **quiet)
            else:
                ray.init(
                    address="local",
                    num_cpus=self.jobs or os.cpu_count() or 1,
                    include_dashboard=False,
                    object_store_memory=LOCAL_OBJECT_STORE,
                    **quiet,
                )
        except Exception as exc:  # Ray raises ConnectionError, RuntimeError, ValueError... alike
            where = f"the Ray cluster at {self.address}" if self.address else "a local Ray instance"
            raise LiteportError(
                f"could not join {where}: {first_line(exc)}",
                hint="start a head with `ray start --head` and pass its address with --ray-address",
            ) from None

    def _new_nodes(self, ray: Any) -> None:
        """A runner on every live node with CPUs that has none yet (nodes may join mid-run)."""
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        actor_class = ray.remote(NodeRunner)
        for node in ray.nodes():
            node_id = str(node["NodeID"])
            cpus = int(node.get("Resources", {}).get("CPU", 0))
            known = node_id in self._runners or node_id in self._lost or node_id in self._skipped
            if not node.get("Alive") or cpus < 1 or known:
                continue
            slots = min(cpus, self.jobs) if self.jobs else cpus
            label = f"{node.get('NodeManagerHostname', '?')}/{node_id[:8]}"
            actor = actor_class.options(
                num_cpus=slots,  # the matrix holds the node's CPUs, so Ray's accounting stays true
                max_restarts=0,  # a lost runner is the driver's to handle: retry the cell elsewhere
                max_concurrency=slots + 2,  # cells, plus describe/close that must not wait behind them
                scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False),
            ).remote(self._settings_for(slots))
            self._runners[node_id] = _Runner(node_id, label, slots, actor)

    def _settings_for(self, slots: int) -> NodeSettings:
        return replace(self.settings, slots=slots)

    def _check(self, runner: _Runner, described: Mapping[str, Any]) -> str | None:
        """Why this node cannot run the matrix's cells, if it cannot."""
        if described.get("unusable"):
            return str(described["unusable"])
        envs = described.get("environments", {})
        differ = [
            f"{name} (lock {expected}, node has {envs.get(name) or 'none'})"
            for name, expected in self.expected.items()
            if envs.get(name) != expected
        ]
        if differ:
            return "its liteport has other environments: " + ", ".join(differ)
        if sorted(described.get("validators", {})) != sorted(self.validators):
            return f"its validators are {', '.join(sorted(described.get('validators', {}))) or 'none'}"
        return None

    # -- the loop ----------------------------------------------------------------------------

    def _drive(self, ray: Any, cells: Sequence[Cell], record: Record, progress: MatrixProgress) -> str | None:
        placement = Placement(cells, self.jobs or 10**9)
        running: dict[Any, Assignment] = {}
        describing: dict[Any, _Runner] = {}
        refreshed, began = 0.0, time.monotonic()
        while placement.waiting or running:
            gathering = bool(describing) and time.monotonic() - began < GATHER_S and not running
            for assignment in [] if gathering else placement.assign():
                runner = self._runners[assignment.node]
                cell = assignment.pending.cell
                progress.on_start(f"{runner.label}#{assignment.slot}", cell)
                running[runner.actor.run.remote(cell_payload(cell))] = assignment
            idle = not running and not describing  # cells wait, yet no node is running or joining
            if idle or time.monotonic() - refreshed > REFRESH_S:
                refreshed = time.monotonic()
                self._new_nodes(ray)
                asked = {id(r) for r in describing.values()}
                for runner in self._runners.values():
                    if not runner.ready and id(runner) not in asked:
                        describing[runner.actor.describe.remote()] = runner
                if idle and not describing:
                    return self._stranded(placement.waiting)
            ready, _ = ray.wait([*running, *describing], num_returns=1, timeout=POLL_S)
            for ref in ready:
                if ref in describing:
                    self._described(ray, describing.pop(ref), ref, placement)
                else:
                    self._finished(ray, running, ref, placement, record)
        return None

    def _described(self, ray: Any, runner: _Runner, ref: Any, placement: Placement) -> None:
        try:
            described = ray.get(ref)
        except ray.exceptions.RayError as exc:
            self.say(f"node {runner.label} is skipped: its runner did not start ({first_line(exc)})")
            self._skipped.add(runner.node_id)
            self._drop(ray, runner)
            return
        node = described.get("node", {})
        runner.label = f"{node.get('hostname', '?')}/{runner.node_id[:8]}"
        why = self._check(runner, described)
        if why:
            self.say(f"node {runner.label} is skipped: {why}")
            self._skipped.add(runner.node_id)
            self._drop(ray, runner)
            return
        runner.ready = True
        placement.add_node(runner.node_id, runner.label, runner.slots)

    def _finished(
        self, ray: Any, running: dict[Any, Assignment], ref: Any, placement: Placement, record: Record
    ) -> None:
        assignment = running.pop(ref)
        runner = self._runners[assignment.node]
        cell = assignment.pending.cell
        try:
            entry = ray.get(ref)
        except ray.exceptions.RayTaskError as exc:  # liteport raised on the node: a result, not a loss
            attempt = _failed(
                cell, self.settings.runtime, "crashed", f"on node {runner.label}: {first_line(exc)}"
            )
            placement.done(assignment.node, assignment.slot)
            record(cell, attempt, {**_entry(cell, attempt), "node": self._provenance(runner)})
            return
        except ray.exceptions.RayError as exc:  # the runner is gone, and so are its node's cells
            self._lose(ray, runner, exc, running, placement, record, first=assignment)
            return
        if entry is None:  # closed under a cell without our Ctrl-C: treat the runner as lost
            self._lose(ray, runner, None, running, placement, record, first=assignment)
            return
        placement.done(assignment.node, assignment.slot)
        if assignment.pending.lost_on:
            entry["lost_on"] = [self._lost.get(n, n) for n in assignment.pending.lost_on]
        record(cell, Attempt.from_dict(entry["attempt"]), entry)

    def _lose(
        self,
        ray: Any,
        runner: _Runner,
        exc: Exception | None,
        running: dict[Any, Assignment],
        placement: Placement,
        record: Record,
        *,
        first: Assignment,
    ) -> None:
        on_node = [first] + [a for a in running.values() if a.node == runner.node_id]
        for ref in [r for r, a in running.items() if a.node == runner.node_id]:
            running.pop(ref)
        why = first_line(exc) if exc is not None else "its runner stopped"
        self.say(f"node {runner.label} lost ({why}); {len(on_node)} cell(s) on it go to another node")
        self._lost[runner.node_id] = runner.label
        self._drop(ray, runner)
        for pending in placement.lose_node(runner.node_id, [a.pending for a in on_node]):
            nodes = " then ".join(self._lost.get(n, n) for n in [*pending.lost_on, runner.node_id])
            attempt = _failed(pending.cell, self.settings.runtime, "crashed", f"{NODE_LOST}: {nodes}")
            entry = {
                **_entry(pending.cell, attempt),
                "node": self._provenance(runner),
                "lost_on": [self._lost.get(n, n) for n in [*pending.lost_on, runner.node_id]],
            }
            record(pending.cell, attempt, entry)

    def _stranded(self, left: int) -> str:
        lost = ", ".join(self._lost.values())
        skipped = f"; skipped: {len(self._skipped)} node(s), see the warnings above" if self._skipped else ""
        return f"no Ray node can run the remaining {left} cell(s) (lost: {lost or 'none'}{skipped})"

    def _provenance(self, runner: _Runner) -> dict[str, str]:
        return {"hostname": runner.label.split("/")[0], "ray_node_id": runner.node_id}

    # -- stopping ----------------------------------------------------------------------------

    def _drop(self, ray: Any, runner: _Runner) -> None:
        self._runners.pop(runner.node_id, None)
        with contextlib.suppress(Exception):  # already dead is what we want
            ray.kill(runner.actor, no_restart=True)

    def _cancel(self, ray: Any) -> None:
        """Ctrl-C: every runner kills its converter workers, then the actors are killed."""
        previous = signal.getsignal(signal.SIGINT)
        main = threading.current_thread() is threading.main_thread()
        if main:
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the cleanup short
        try:
            self._close_runners(ray)
        finally:
            if main:
                signal.signal(signal.SIGINT, previous)

    def _close_runners(self, ray: Any) -> None:
        runners = list(self._runners.values())
        with contextlib.suppress(Exception):  # a dead node has nothing left to close
            closing = [r.actor.close.remote() for r in runners]
            if closing:
                ray.wait(closing, num_returns=len(closing), timeout=CLOSE_TIMEOUT_S)
        for runner in runners:
            self._drop(ray, runner)

    def _shutdown(self, ray: Any) -> None:
        self._close_runners(ray)
        with contextlib.suppress(Exception):  # the cluster may already be gone
            ray.shutdown()  # a local instance stops; from a cluster, the driver disconnects


def expected_environments(pm: PluginManager, cells: Sequence[Cell]) -> tuple[dict[str, str], list[str]]:
    """The environments (name -> lock hash) and validators every node must offer for ``cells``."""
    specs = [REFERENCE_ENV, *environments_of(pm, cells).values()]
    specs += [v.environment for v in pm.validators().values()]
    return {s.name: lock_hash(s) for s in specs}, sorted(pm.validators())
