"""A Ray cluster of several nodes on this machine, on loopback only: for tests and ``nox -s ray_cluster``.

Every node is one ``ray start --block`` process in a session of its own, so stopping a node
(SIGTERM to that process, which tears its node down) or killing its raylet touches nothing but
what was started here; ``ray stop`` is never used (it would stop every Ray on the machine).
Every node's IP is 127.0.0.2: Ray rewrites 127.0.0.1 into the machine's outward address, while any
other 127.x address stays on the loopback interface. The cluster uses token authentication with a
token of its own (``RAY_AUTH_TOKEN_PATH`` in its folder): a ``~/.ray/auth_token`` left by some
``ray.init()`` would otherwise switch the head to token mode and lock its second node out. A driver
joins with ``cluster.env`` in its environment.

As a script: start a cluster, run a command with ``RAY_ADDRESS`` pointing at it, stop the cluster::

    python tests/raycluster.py --nodes 2 --cpus 1 -- liteport matrix --executor ray ...
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

LOOPBACK = "127.0.0.2"
GUARD_S = 240.0  # only a guard against a hang: every wait below ends on an event
STARTS = 5  # tries to start a node: see _node


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


@dataclass
class Node:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    def raylet_pid(self) -> int | None:
        for pid, ppid, comm in _processes():
            if ppid == self.proc.pid and comm == "raylet":
                return pid
        return None

    def node_id(self) -> str:
        pid = self.raylet_pid()
        if pid is None:
            raise RuntimeError(f"node {self.name} has no raylet")
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        return next(a.decode().split("=", 1)[1] for a in args if a.startswith(b"--node_id="))


@dataclass
class LocalCluster:
    """``start(...)`` the head, ``add(...)`` nodes, ``stop()`` everything (always, e.g. in a finally)."""

    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="liteport-ray-", dir="/tmp")))
    port: int = field(default_factory=free_port)
    nodes: list[Node] = field(default_factory=list)

    def __post_init__(self) -> None:
        token = self.root / "auth_token"
        token.write_text(secrets.token_hex(32))
        token.chmod(0o600)

    @property
    def address(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        """What a driver (and every node) needs in its environment to join this cluster."""
        return {
            "RAY_ADDRESS": self.address,
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN_PATH": str(self.root / "auth_token"),
            "RAY_USAGE_STATS_ENABLED": "0",
        }

    def start(self, *, cpus: int = 1, env: dict[str, str] | None = None) -> Node:
        return self._node(
            "head", ["--head", "--port", str(self.port), "--include-dashboard", "false"], cpus, env
        )

    def add(self, name: str, *, cpus: int = 1, env: dict[str, str] | None = None) -> Node:
        return self._node(name, ["--address", self.address], cpus, env)

    def _node(self, name: str, role: list[str], cpus: int, env: dict[str, str] | None) -> Node:
        log = self.root / f"{name}.log"
        argv = [
            sys.executable,
            "-m",
            "ray.scripts.scripts",
            "start",
            "--block",
            *role,
            "--node-ip-address",
            LOOPBACK,
            "--num-cpus",
            str(cpus),
            "--object-store-memory",
            str(100 * 10**6),  # the matrix moves only small JSON entries
            "--dashboard-agent-listen-port",
            str(free_port()),  # the default port is one per machine: two nodes would collide
            "--temp-dir",
            str(self.root / "ray"),
            "--disable-usage-stats",
        ]
        for attempt in range(1, STARTS + 1):
            with open(log, "wb") as out:
                proc = subprocess.Popen(
                    argv,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    env={**os.environ, **self.env, **(env or {})},
                    start_new_session=True,  # its own session: stopping it stops only this node
                )
            node = Node(name, proc, log)
            self.nodes.append(node)
            deadline = time.monotonic() + GUARD_S
            while b"Ray runtime started" not in log.read_bytes():
                if proc.poll() is not None or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            else:
                return node
            said = log.read_text(errors="replace")[-3000:]
            self._stop(node)
            # Ray gives a raylet a fixed 30 s to register; on a machine this loaded, start it again.
            if b"timed out during startup" not in said.encode() or attempt == STARTS:
                self.stop()
                raise RuntimeError(f"ray node {name} did not start: {said}")
        raise AssertionError("unreachable")

    def kill_raylet(self, node: Node) -> None:
        """Lose ``node`` the hard way: SIGKILL its raylet (its ``ray start`` then ends the rest of it)."""
        pid = node.raylet_pid()
        if pid is None:
            raise RuntimeError(f"node {node.name} has no raylet to kill")
        os.kill(pid, signal.SIGKILL)
        node.proc.wait(timeout=GUARD_S)

    def resources(self) -> tuple[float, float]:
        """(available, total) CPUs as the cluster's GCS sees them, from a short-lived driver."""
        code = (
            "import json, logging, ray\n"
            f"ray.init(address={self.address!r}, log_to_driver=False, logging_level=logging.ERROR)\n"
            "cpus = [ray.available_resources().get('CPU', 0), ray.cluster_resources().get('CPU', 0)]\n"
            "print(json.dumps(cpus))\n"
        )
        out = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            env={**os.environ, **self.env},
            timeout=GUARD_S,
            check=True,
        )
        available, total = json.loads(out.stdout.strip().splitlines()[-1])
        return float(available), float(total)

    def stop(self) -> None:
        for node in list(reversed(self.nodes)):  # workers first, the head (GCS) last
            self._stop(node)
        shutil.rmtree(self.root, ignore_errors=True)

    def _stop(self, node: Node) -> None:
        if node.proc.poll() is None:
            node.proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                node.proc.wait(timeout=60)
        # anything of this node that outlived its ``ray start`` (same session, so ours)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(node.proc.pid, signal.SIGKILL)
        self.nodes.remove(node)


def _processes() -> list[tuple[int, int, str]]:
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        out.append((int(entry.name), ppid, comm))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--nodes", type=int, default=2, help="nodes, the head included")
    parser.add_argument("--cpus", type=int, default=1, help="CPUs each node offers")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    cluster = LocalCluster()
    try:
        cluster.start(cpus=args.cpus)
        for number in range(1, args.nodes):
            cluster.add(f"node{number}", cpus=args.cpus)
        print(f"ray cluster of {args.nodes} nodes at {cluster.address}", file=sys.stderr, flush=True)
        if not command:
            return 0
        return subprocess.run(command, env={**os.environ, **cluster.env}, check=False).returncode
    finally:
        cluster.stop()


if __name__ == "__main__":
    sys.exit(main())
