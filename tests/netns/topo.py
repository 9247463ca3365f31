"""One model for the multi-node netns tests (agent, bgp, backends): a fabric netns
with a bridge per underlay segment, a router netns joining two segments, node
netns each with an underlay veth on its segment's bridge, the real agent
(`tulle agent run`) as a process inside a node netns, and pods.

Pods come two ways: wired by hand behind a bridge `cni0` (the backend tests
drive a backend without agent or CNI), or by the real executables (the bgp
tests; they append what they make to `Topology.pods`).

Every netns comes from conftest's make_netns, so that fixture removes all of it
(veths and bridges die with their netns); `Topology.close` ends what runs
inside first. The `topology` fixture (tests/netns/conftest.py) makes them.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from tulle.kernel import addrs, links, netns, routes, sysctl

if TYPE_CHECKING:
    from tulle.agent.backends.base import NodeInfo
    from tulle.agent.backends.bgp.bird import Bird

NETWORK = ipaddress.IPv4Network("10.244.0.0/16")
SEGMENTS = [ipaddress.IPv4Network("198.51.100.0/24"), ipaddress.IPv4Network("203.0.113.0/24")]
UNDERLAY_DEV = "eth0"
UNDERLAY_MTU = 1500
ROUTER_HOST = 1        # the router's leg on every segment
NODE_HOST_BASE = 10    # node nK sits at .10+K of its segment
POD_BRIDGE = "cni0"


def _iface(net: ipaddress.IPv4Network, host: int) -> ipaddress.IPv4Interface:
    return ipaddress.IPv4Interface(f"{net.network_address + host}/{net.prefixlen}")


@dataclass
class Pod:
    name: str
    ns: str
    node: Node
    ip: str


@dataclass
class Node:
    """A node netns: `eth0` on its segment, a route to the other segment via the router,
    a private dir (agent socket, subnet.env, state) and, once started, its agent."""

    name: str
    ns: str
    segment: int
    ip: str
    dir: str
    subnet: ipaddress.IPv4Network | None = None  # only when the test hands it out (no agent, no lease)
    pod: Pod | None = None                        # the pod wired by hand behind cni0
    proc: subprocess.Popen | None = None
    log_path: str = ""

    @property
    def public_ip(self) -> ipaddress.IPv4Address:
        """The underlay address typed, as backends and leases take it."""
        return ipaddress.IPv4Address(self.ip)

    @property
    def subnet_file(self) -> str:
        return os.path.join(self.dir, "subnet.env")

    @property
    def state(self) -> str:
        return os.path.join(self.dir, "state")

    @property
    def bird(self) -> Bird:
        """The BIRD a bgp agent runs as its child (control socket in the agent's state dir)."""
        from tulle.agent.backends.bgp.bird import Bird  # only the bgp tests need BIRD

        return Bird(self.state)

    def info(self, state_dir: str = "/nonexistent") -> NodeInfo:
        """What a backend driven without the agent is told about this node."""
        from tulle.agent.backends.base import NodeInfo  # the agent tests run no backend in-process

        return NodeInfo(name=self.name, public_ip=self.public_ip, underlay_dev=UNDERLAY_DEV,
                        underlay_mtu=UNDERLAY_MTU, network=NETWORK, state_dir=state_dir)

    def run(self, fn: Callable, *args: Any) -> Any:
        """Call fn inside this node's netns (as the agent there would)."""
        return netns.run_in(self.ns, fn, *args)

    def logs(self, tail: int | None = None) -> str:
        """The current agent's log (its last `tail` characters), for failure messages."""
        try:
            with open(self.log_path) as f:
                text = f.read()
        except OSError:
            return ""
        return text[-tail:] if tail else text


class Topology:
    """Fabric + (with two segments) router, then nodes added one by one."""

    def __init__(self, make_netns: Callable[[str], str], tmp_path: Path, segments: int = 1,
                 metrics_port: int | None = None) -> None:
        if not 1 <= segments <= len(SEGMENTS):
            raise ValueError(f"segments must be 1..{len(SEGMENTS)}, not {segments}")
        self.make_netns = make_netns
        self.tmp = tmp_path
        self.segments = segments
        self.metrics_port = metrics_port   # agents serve /metrics on <node ip>:<port> when set
        self.store_url = f"sqlite://{tmp_path}/store.db"
        self.nodes: dict[str, Node] = {}
        self.pods: list[Pod] = []
        self.fabric = make_netns("fab")
        netns.run_in(self.fabric, self._fabric_setup)
        self.router = self._add_router() if segments > 1 else None

    def _fabric_setup(self) -> None:
        links.set_up("lo")
        for s in range(self.segments):
            links.add_bridge(f"seg{s}")
            links.set_up(f"seg{s}")

    def _plug(self, port: str, far_end: str, far_ns: str, segment: int) -> None:
        """A veth from segment's bridge (its end `port` in the fabric) to `far_end` in far_ns."""
        def fabric_side() -> None:
            links.add_veth(port, far_end, peer_netns=far_ns)
            links.set_master(port, f"seg{segment}")
            links.set_up(port)

        netns.run_in(self.fabric, fabric_side)

    def _add_router(self) -> str:
        router = self.make_netns("rtr")

        def setup() -> None:
            links.set_up("lo")
            for s in range(self.segments):
                addrs.add(f"eth{s}", _iface(SEGMENTS[s], ROUTER_HOST))
                links.set_up(f"eth{s}")
            sysctl.set("net.ipv4.ip_forward", 1)

        for s in range(self.segments):
            self._plug(f"r{s}", f"eth{s}", router, s)
        netns.run_in(router, setup)
        return router

    # -- nodes ---------------------------------------------------------------------

    def add_node(self, k: int, segment: int = 0) -> Node:
        """Node n<k> at .10+k of `segment` (its agent not started)."""
        name = f"n{k}"
        ns = self.make_netns(name)
        ip = _iface(SEGMENTS[segment], NODE_HOST_BASE + k)

        def node_side() -> None:
            links.set_up("lo")
            addrs.add(UNDERLAY_DEV, ip)
            links.set_up(UNDERLAY_DEV)
            for s in range(self.segments):
                if s != segment:
                    routes.add(routes.Route(dst=SEGMENTS[s], gw=SEGMENTS[segment].network_address + ROUTER_HOST))

        self._plug(f"v{name}", UNDERLAY_DEV, ns, segment)
        netns.run_in(ns, node_side)
        d = self.tmp / name
        d.mkdir()
        node = Node(name, ns, segment, str(ip.ip), str(d))
        self.nodes[name] = node
        return node

    def add_bridged_pod(self, node: Node, subnet: ipaddress.IPv4Network, mtu: int) -> Pod:
        """A pod at subnet's .2 behind bridge cni0 (.1) in the node, wired by hand: the
        node's pod subnet becomes `subnet`, and the node forwards for its pod."""
        name = f"pod-{node.name}"
        pod = Pod(name, self.make_netns(name), node, str(subnet.network_address + 2))
        gateway = _iface(subnet, 1)

        def node_side() -> None:
            sysctl.set("net.ipv4.ip_forward", 1)
            links.add_bridge(POD_BRIDGE)
            addrs.add(POD_BRIDGE, gateway)
            links.add_veth("veth0", "eth0", peer_netns=pod.ns, mtu=mtu)
            links.set_master("veth0", POD_BRIDGE)
            links.set_up("veth0")
            links.set_up(POD_BRIDGE)

        def pod_side() -> None:
            links.set_up("lo")
            addrs.add("eth0", _iface(subnet, 2))
            links.set_up("eth0")
            routes.add(routes.Route(dst=NETWORK, gw=gateway.ip))

        node.run(node_side)
        netns.run_in(pod.ns, pod_side)
        node.subnet, node.pod = subnet, pod
        self.pods.append(pod)
        return pod

    def add_nodes_with_pods(self, placement: list[int], pod_mtu: int) -> list[Node]:
        """Nodes n1..nN, node k on segment placement[k-1], each with a hand-wired pod in 10.244.<k>.0/24."""
        nodes = []
        for k, segment in enumerate(placement, start=1):
            node = self.add_node(k, segment)
            self.add_bridged_pod(node, ipaddress.IPv4Network(f"10.244.{k}.0/24"), pod_mtu)
            nodes.append(node)
        return nodes

    # -- agents --------------------------------------------------------------------

    def command(self, node: Node, *extra: str, store: str | None = None) -> list[str]:
        """`tulle agent run` inside the node netns, every path in the node's dir."""
        metrics = ["--metrics-addr", f"{node.ip}:{self.metrics_port}"] if self.metrics_port else []
        return ["nsenter", f"--net={node.ns}", sys.executable, "-m", "tulle.cli.main", "agent", "run",
                "--node", node.name, "--store", store or self.store_url, "--public-ip", node.ip,
                "--socket", os.path.join(node.dir, "agent.sock"), "--subnet-file", node.subnet_file,
                "--state-dir", node.state, *metrics, "--reconcile-interval", "1", *extra]

    def start(self, node: Node, *extra: str) -> None:
        """Start the node's agent; each run logs to a file of its own."""
        node.log_path = os.path.join(node.dir, f"agent-{time.monotonic_ns()}.log")
        with open(node.log_path, "w") as log:
            node.proc = subprocess.Popen(self.command(node, *extra), stdout=log, stderr=log)

    def stop(self, node: Node, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int | None:
        """Signal the agent by pid, SIGKILL if it does not go (a failure); its exit code."""
        proc, node.proc = node.proc, None
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(sig)
            try:
                return proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
                raise AssertionError(f"agent {node.name} ignored {signal.Signals(sig).name}:\n{node.logs()}")
        return proc.returncode

    def logs(self) -> str:
        """Every node's agent log (for failure messages)."""
        return "\n".join(f"--- {n.name}\n{n.logs()}" for n in self.nodes.values())

    def unreachable(self, pods: list[Pod] | None = None, deadline: float = 0.0) -> list[str]:
        """The pairs of these pods (default: all) that do not ping each other."""
        return unreachable(self.pods if pods is None else pods, deadline)

    def close(self) -> None:
        """Kill the agents still running (the netns go with make_netns)."""
        for node in self.nodes.values():
            proc, node.proc = node.proc, None
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait(5)


# -- looking from inside a netns -------------------------------------------------------

def in_ns(ns: str, *cmd: str) -> subprocess.CompletedProcess:
    """A command inside a netns, its output captured (the caller judges the exit code)."""
    return subprocess.run(["nsenter", f"--net={ns}", *cmd], capture_output=True, text=True, timeout=20)


def kernel_routes(ns: str, proto: str) -> dict[str, str]:
    """dst → gateway (or type) of the routes with this protocol in a netns."""
    out = in_ns(ns, "ip", "-j", "route", "show", "proto", proto).stdout
    return {r["dst"]: r.get("gateway", r.get("type", "")) for r in json.loads(out or "[]")}


def ping_once(ns: str, ip: str | ipaddress.IPv4Address) -> bool:
    """A single echo with a short wait (for "must NOT be reachable" checks, and inside wait_for)."""
    return in_ns(ns, "ping", "-c1", "-W1", "-q", str(ip)).returncode == 0


def ping(ns: str, ip: str | ipaddress.IPv4Address, deadline: float = 6.0) -> bool:
    """True as soon as one echo comes back from `ip` (retries until `deadline` s)."""
    end = time.monotonic() + deadline
    while not ping_once(ns, ip):
        if time.monotonic() >= end:
            return False
        time.sleep(0.1)
    return True


def unreachable(pods: list[Pod], deadline: float = 0.0) -> list[str]:
    """The pod pairs that do NOT reach each other (empty list: full mesh works); each pair
    is retried for `deadline` s, so 0 means one echo."""
    return [f"{a.name}->{b.name}" for a in pods for b in pods if a is not b and not ping(a.ns, b.ip, deadline)]


def tcp_copy(src: Pod, dst: Pod, size: int, port: int = 5201, timeout: float = 20.0) -> tuple[str, str]:
    """Send `size` bytes over TCP from src to dst; (sent, received) sha256."""
    payload = hashlib.sha256(b"seed").digest() * (size // 32 + 1)
    payload = payload[:size]
    listening = threading.Event()
    box: dict = {}

    def server() -> None:
        with socket.socket() as srv:
            srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            srv.bind((dst.ip, port))
            srv.listen(1)
            srv.settimeout(timeout)
            listening.set()
            conn, _ = srv.accept()
            digest = hashlib.sha256()
            with conn:
                conn.settimeout(timeout)
                buf = bytearray(1 << 16)
                while True:
                    n = conn.recv_into(buf)
                    if not n:
                        break
                    digest.update(buf[:n])
            box["got"] = digest.hexdigest()

    def server_thread() -> None:
        try:
            netns.run_in(dst.ns, server)
        except Exception as exc:  # reported through box
            box["error"] = exc
            listening.set()

    def client() -> None:
        with socket.create_connection((dst.ip, port), timeout=timeout) as conn:
            conn.sendall(payload)

    t = threading.Thread(target=server_thread, daemon=True)
    t.start()
    assert listening.wait(timeout)
    netns.run_in(src.ns, client)
    t.join(timeout)
    assert not t.is_alive(), "tcp receiver did not finish"
    if "error" in box:
        raise box["error"]
    return hashlib.sha256(payload).hexdigest(), box.get("got", "")
