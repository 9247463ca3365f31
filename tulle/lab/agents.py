"""The node agents of a lab: real `tulle agent run` processes, one per node netns.

Each agent runs detached (it outlives `tulle lab up`), with everything it owns
in its node's directory of the lab state dir; that directory, passed as
--state-dir, is also the marker by which later commands recognise the pid as
theirs before signalling it. Readiness is observed from outside, as an operator
would: the lease in the store, subnet.env on disk, and routes in the node netns.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import signal
import sys
import time
from dataclasses import dataclass

from tulle import procs
from tulle.cluster.lease import DEFAULT_PREFIX, Lease, decode, subnets_prefix
from tulle.errors import TulleError
from tulle.kernel import netns, routes
from tulle.lab import nodes
from tulle.lab.topology import METRICS_PORT, Node, Plan
from tulle.store import Store

READY_TIMEOUT = 20.0
# A lab's agents hand the cluster-wide controllers over faster than a real cluster's
# 15 s (kube-controller-manager's default): a lab is for trying failures out.
LEADER_LEASE = 6


def command(plan: Plan, node: Node) -> list[str]:
    lab, name = plan.lab, node.name
    return [sys.executable, "-m", "tulle.cli.main", "agent", "run",
            "--node", name, "--store", plan.store_url(),
            "--public-ip", str(node.ip.ip),
            "--socket", nodes.agent_socket(lab, name),
            "--subnet-file", nodes.subnet_file(lab, name),
            "--state-dir", nodes.node_dir(lab, name),
            "--metrics-addr", f"{node.ip.ip}:{METRICS_PORT}",
            "--leader-lease-duration", str(LEADER_LEASE)]


def log_path(lab: str, node: str) -> str:
    return nodes.node_dir(lab, node, "agent.log")


def start(plan: Plan, node: Node) -> int:
    """Start the node's agent inside its netns; returns the pid."""
    return procs.spawn(command(plan, node), log_path(plan.lab, node.name), netns_path=netns.path_of(node.netns))


def marker(lab: str, node: str) -> str:
    return nodes.node_dir(lab, node)


def alive(lab: str, node: str, pid: int) -> bool:
    return procs.alive(pid) and procs.carries(pid, marker(lab, node))


def stop(lab: str, node: str, pid: int) -> None:
    """SIGTERM (the agent keeps its data plane and lease), SIGKILL if it lingers."""
    procs.stop(pid, marker(lab, node))


def kill(lab: str, node: str, pid: int) -> bool:
    """SIGKILL, as a crash would; returns once it is gone."""
    if not procs.signal_pid(pid, marker(lab, node), signal.SIGKILL):
        return False
    procs.wait_dead(pid, 5.0)
    return True


def wait_running(lab: str, node: str, pid: int, timeout: float = READY_TIMEOUT) -> None:
    """The agent is up without the store (from its last known state): alive, and it wrote
    subnet.env since it started. TulleError with its log when it exits or takes too long."""
    started = time.time() - 1.0
    deadline = time.monotonic() + timeout
    path = nodes.subnet_file(lab, node)
    while time.monotonic() < deadline:
        if not procs.alive(pid):
            raise TulleError(f"the agent of {node} exited at start:\n{log_tail(lab, node)}")
        with contextlib.suppress(OSError):
            if os.stat(path).st_mtime >= started:
                return
        time.sleep(0.05)
    raise TulleError(f"the agent of {node} did not come up within {timeout:.0f} s:\n{log_tail(lab, node)}")


def log_tail(lab: str, node: str, n: int = 15) -> str:
    try:
        with open(log_path(lab, node), errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError:
        return ""


# --- what the agents published ---------------------------------------------------------

def read_subnet_env(lab: str, node: str) -> dict[str, str]:
    """subnet.env of a node as a dict; {} when the agent has not written it yet."""
    try:
        with open(nodes.subnet_file(lab, node)) as f:
            lines = f.read().splitlines()
    except OSError:
        return {}
    env = {}
    for line in lines:
        key, sep, value = line.strip().partition("=")
        if sep and key and not key.startswith("#"):
            env[key] = value
    return env


def leases(store: Store, prefix: str = DEFAULT_PREFIX) -> list[Lease]:
    kvs, _ = store.list(subnets_prefix(prefix))
    out = []
    for kv in kvs:
        try:
            out.append(decode(kv.key, kv.value, kv.mod_revision, has_ttl=bool(kv.lease)))
        except TulleError:
            continue
    return out


def lease_of(node: Node, all_leases: list[Lease]) -> Lease | None:
    """The node's lease: the one naming it, else the one carrying its underlay address."""
    for lease in all_leases:
        if lease.node == node.name:
            return lease
    for lease in all_leases:
        if lease.public_ip == node.ip.ip:
            return lease
    return None


def _covered(subnets: list[ipaddress.IPv4Network]) -> list[ipaddress.IPv4Network]:
    """Which of `subnets` the calling thread's netns routes somewhere (not by a default route)."""
    table = [r.dst for r in routes.list_routes(4) if r.dst.prefixlen > 0 and not r.blackhole]
    return [s for s in subnets if any(s.subnet_of(d) for d in table)]


@dataclass
class Readiness:
    missing: list[str]

    @property
    def ready(self) -> bool:
        return not self.missing


def check_ready(plan: Plan, store: Store, pids: dict[str, int]) -> Readiness:
    """Every agent alive, leased, subnet.env written, and routing every other node's subnet
    (bgp: every planned BGP session Established instead)."""
    all_leases = leases(store)
    missing = []
    own: dict[str, Lease] = {}
    for node in plan.nodes:
        pid = pids.get(node.name, 0)
        if not procs.alive(pid):
            raise TulleError(f"the agent of {node.name} is not running:\n{log_tail(plan.lab, node.name)}")
        if not alive(plan.lab, node.name, pid):
            # Alive but its argv is not (yet) the agent's: /proc/<pid>/cmdline reads empty while
            # nsenter execs the agent. Not ready yet rather than dead.
            missing.append(f"{node.name}: agent starting")
            continue
        lease = lease_of(node, all_leases)
        if lease is None:
            missing.append(f"{node.name}: no lease in the store")
            continue
        own[node.name] = lease
        if not read_subnet_env(plan.lab, node.name).get("FLANNEL_SUBNET"):
            missing.append(f"{node.name}: no {nodes.subnet_file(plan.lab, node.name)}")
    if missing:
        return Readiness(missing)
    if plan.backend == "bgp":   # routed mode: no per-lease routes; BGP sessions say it instead
        from tulle.lab import bgp

        return Readiness(bgp.missing_sessions(plan))
    for node in plan.nodes:
        others = [own[n.name].subnet for n in plan.nodes if n.name != node.name]
        covered = netns.run_in(netns.path_of(node.netns), _covered, others)
        for subnet in others:
            if subnet not in covered:
                missing.append(f"{node.name}: no route to {subnet}")
    return Readiness(missing)


def wait_ready(plan: Plan, store: Store, pids: dict[str, int], timeout: float = READY_TIMEOUT) -> None:
    """Poll (bounded) until check_ready holds; the error says what is still missing."""
    deadline = time.monotonic() + timeout
    while True:
        state = check_ready(plan, store, pids)
        if state.ready:
            return
        if time.monotonic() > deadline:
            tails = "".join(f"\n--- agent {n.name} log:\n{log_tail(plan.lab, n.name)}" for n in plan.nodes)
            raise TulleError(f"lab {plan.lab}: agents not ready after {timeout:.0f}s: "
                             f"{'; '.join(state.missing)}{tails}")
        time.sleep(0.1)

