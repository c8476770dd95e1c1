"""Which matrix cell runs on which cluster node next: pure bookkeeping, no Ray in here.

Rules, in order:

* at most ``jobs`` cells in flight over the whole cluster, at most a node's slots on each node;
* a cell whose node was lost goes first, to another node; lost a second time, it is given up
  (the executor records it ``crashed``, cause "node lost");
* a free slot takes a cell whose environment is warm on its node (its workers already paid the
  imports); else one whose environment is warm nowhere yet (each environment is built and
  imported once, on one node, before it spreads); else any cell, rather than stay idle;
* among equals, plan order and the least loaded node.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from liteport.matrix.cells import Cell


@dataclass
class Pending:
    """A cell waiting for or running on a node, with the nodes it was lost on."""

    cell: Cell
    lost_on: list[str] = field(default_factory=list)  # node ids


@dataclass
class Node:
    id: str
    label: str
    slots: int
    free: list[int] = field(default_factory=list)  # free slot numbers, lowest first
    warm: set[str] = field(default_factory=set)  # environments whose workers this node has started
    alive: bool = True

    @property
    def busy(self) -> int:
        return self.slots - len(self.free)


@dataclass(frozen=True)
class Assignment:
    pending: Pending
    node: str
    slot: int


class Placement:
    def __init__(self, cells: Sequence[Cell], jobs: int) -> None:
        self.jobs = max(1, jobs)
        self.nodes: dict[str, Node] = {}
        self.retries: deque[Pending] = deque()
        self.queues: dict[str, deque[Pending]] = {}  # environment -> cells, plan order
        for cell in cells:
            self.queues.setdefault(cell.environment, deque()).append(Pending(cell))
        self.in_flight = 0

    # -- nodes -----------------------------------------------------------------------------

    def add_node(self, node_id: str, label: str, slots: int) -> None:
        if node_id not in self.nodes and slots > 0:
            self.nodes[node_id] = Node(node_id, label, slots, free=list(range(slots)))

    def alive(self) -> list[Node]:
        return [n for n in self.nodes.values() if n.alive]

    def lose_node(self, node_id: str, running: Sequence[Pending]) -> list[Pending]:
        """``node_id`` is gone with ``running`` on it: each goes back for one retry elsewhere.

        Returns the cells lost for the second time: they are given up.
        """
        node = self.nodes[node_id]
        node.alive = False
        node.free = []
        given_up = []
        for pending in running:
            self.in_flight -= 1
            if pending.lost_on:
                given_up.append(pending)
            else:
                pending.lost_on.append(node.id)
                self.retries.append(pending)
        return given_up

    # -- cells -----------------------------------------------------------------------------

    @property
    def waiting(self) -> int:
        return len(self.retries) + sum(len(q) for q in self.queues.values())

    def done(self, node_id: str, slot: int) -> None:
        """A cell on ``node_id`` finished (journaled or given up): its slot is free again."""
        self.in_flight -= 1
        node = self.nodes[node_id]
        if node.alive:
            node.free.append(slot)
            node.free.sort()

    def assign(self) -> list[Assignment]:
        """Fill free slots by the rules above; call again after every finished or lost cell."""
        out = []
        while self.in_flight < self.jobs and self.waiting:
            choice = self._best()
            if choice is None:
                break
            pending, node = choice
            slot = node.free.pop(0)
            node.warm.add(pending.cell.environment)
            self.in_flight += 1
            out.append(Assignment(pending, node.id, slot))
        return out

    def _best(self) -> tuple[Pending, Node] | None:
        free = sorted((n for n in self.alive() if n.free), key=lambda n: n.busy / n.slots)
        if not free:
            return None
        for pending in self.retries:  # a lost cell first, on a node it was not lost on
            for node in free:
                if node.id not in pending.lost_on:
                    self.retries.remove(pending)
                    return pending, node
        best: tuple[int, int, str, Node] | None = None
        for order, (env, queue) in enumerate(self.queues.items()):
            if not queue:
                continue
            warm_somewhere = any(env in n.warm for n in self.alive())
            for node in free:
                rank = 0 if env in node.warm else 1 if not warm_somewhere else 2
                if best is None or (rank, order) < best[:2]:
                    best = (rank, order, env, node)
        if best is None:
            return None
        _, _, env, node = best
        return self.queues[env].popleft(), node

    def stranded(self) -> list[Pending]:
        """Cells no live node can take (every node lost, or only the ones they were lost on)."""
        ids = {n.id for n in self.alive()}
        if not ids:
            return [*self.retries, *(p for q in self.queues.values() for p in q)]
        return [p for p in self.retries if ids <= set(p.lost_on)]
