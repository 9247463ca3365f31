"""A hand-built BGP cluster: a fabric netns with one bridge per underlay segment,
a router netns between the segments (optionally running BIRD as a top-of-rack
peer), node netns each running the real agent (`tulle agent run`, backend bgp,
SQLite store) — so BIRD runs as the agent's child inside the node netns — and
pods wired by the installed tulle-routed + tulle-blocks executables with the
node netns as their host.
"""

from __future__ import annotations

import ipaddress
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass

from tulle.cluster import netconfig
from tulle.agent.backends.bgp.bird import Bird, parse_protocols, parse_routes
from tulle.cluster.lease import DEFAULT_PREFIX
from tulle.kernel import addrs, links, netns, routes, sysctl
from tulle.store import open_store

NETWORK = "10.244.0.0/16"
SEGMENTS = [ipaddress.IPv4Network("198.51.100.0/24"), ipaddress.IPv4Network("203.0.113.0/24")]


@dataclass
class Node:
    name: str
    ns: str
    segment: int
    ip: str
    dir: str
    proc: subprocess.Popen | None = None
    log_path: str = ""

    @property
    def state(self) -> str:
        return os.path.join(self.dir, "state")

    @property
    def bird(self) -> Bird:
        return Bird(self.state)

    def logs(self) -> str:
        try:
            with open(self.log_path) as f:
                return f.read()[-6000:]
        except OSError:
            return ""


@dataclass
class Pod:
    name: str
    ns: str
    node: Node
    ip: str


def in_ns(ns: str, *cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run(["nsenter", f"--net={ns}", *cmd], capture_output=True, text=True, timeout=20)


def ping(src: str, dst: str) -> bool:
    return in_ns(src, "ping", "-c1", "-W1", "-q", dst).returncode == 0


def kernel_routes(ns: str, proto: str) -> dict[str, str]:
    """dst → gateway (or type) of the routes with this protocol in a netns."""
    out = in_ns(ns, "ip", "-j", "route", "show", "proto", proto).stdout
    return {r["dst"]: r.get("gateway", r.get("type", "")) for r in json.loads(out or "[]")}


class BgpLab:
    def __init__(self, make_netns, tmp_path, cni, segments: int = 1) -> None:
        self.make_netns = make_netns
        self.tmp = tmp_path
        self.cni = cni
        self.store_url = f"sqlite://{tmp_path}/store.db"
        self.store = open_store(self.store_url)
        self.nodes: dict[str, Node] = {}
        self.pods: list[Pod] = []
        self.segments = segments
        self.fabric = make_netns("fab")
        self.router: str | None = None
        self.tor: Bird | None = None
        netns.run_in(self.fabric, self._fabric_setup)
        if segments > 1:
            self._router()

    def _fabric_setup(self) -> None:
        links.set_up("lo")
        for s in range(self.segments):
            links.add_bridge(f"seg{s}")
            links.set_up(f"seg{s}")

    def _router(self) -> None:
        router = self.router = self.make_netns("rtr")

        def leg(s: int) -> None:
            links.add_veth(f"r{s}", f"eth{s}", peer_netns=router)
            links.set_master(f"r{s}", f"seg{s}")
            links.set_up(f"r{s}")

        def setup() -> None:
            links.set_up("lo")
            for s in range(self.segments):
                addrs.add(f"eth{s}", ipaddress.IPv4Interface(f"{SEGMENTS[s].network_address + 1}/24"))
                links.set_up(f"eth{s}")
            sysctl.set("net.ipv4.ip_forward", 1)

        for s in range(self.segments):
            netns.run_in(self.fabric, leg, s)
        netns.run_in(router, setup)

    def configure(self, **backend) -> None:
        netconfig.write_config(self.store, DEFAULT_PREFIX, netconfig.build(NETWORK, backend="bgp", extra=backend))

    # -- nodes ---------------------------------------------------------------------

    def add_node(self, k: int, segment: int = 0, start: bool = True) -> Node:
        name = f"n{k}"
        ns = self.make_netns(name)
        ip = str(SEGMENTS[segment].network_address + 10 + k)

        def fabric_side() -> None:
            links.add_veth(f"v{name}", "eth0", peer_netns=ns)
            links.set_master(f"v{name}", f"seg{segment}")
            links.set_up(f"v{name}")

        def node_side() -> None:
            links.set_up("lo")
            addrs.add("eth0", ipaddress.IPv4Interface(f"{ip}/24"))
            links.set_up("eth0")
            for s in range(self.segments):
                if s != segment:
                    routes.add(routes.Route(dst=SEGMENTS[s], gw=SEGMENTS[segment].network_address + 1))

        netns.run_in(self.fabric, fabric_side)
        netns.run_in(ns, node_side)
        d = self.tmp / name
        d.mkdir()
        node = Node(name, ns, segment, ip, str(d))
        self.nodes[name] = node
        if start:
            self.start(node)
        return node

    def start(self, node: Node) -> None:
        node.log_path = os.path.join(node.dir, f"agent-{time.monotonic_ns()}.log")
        cmd = ["nsenter", f"--net={node.ns}", sys.executable, "-m", "tulle.cli.main", "agent", "run",
               "--node", node.name, "--store", self.store_url, "--public-ip", node.ip,
               "--socket", os.path.join(node.dir, "agent.sock"),
               "--subnet-file", os.path.join(node.dir, "subnet.env"), "--state-dir", node.state,
               "--reconcile-interval", "1"]
        with open(node.log_path, "w") as log:
            node.proc = subprocess.Popen(cmd, stdout=log, stderr=log)

    def stop(self, node: Node, sig: int = signal.SIGTERM) -> None:
        proc, node.proc = node.proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
                raise AssertionError(f"agent {node.name} ignored signal {sig}:\n{node.logs()}")

    def logs(self) -> str:
        """Agent logs, kernel routes and BIRD's view of every node (for failure messages)."""
        out = []
        for n in self.nodes.values():
            out.append(f"--- {n.name}\n{n.logs()}")
            out.append(in_ns(n.ns, "ip", "route").stdout)
            try:
                out.append(n.bird.birdc("show", "route", "all"))
                out.append(n.bird.birdc("show", "protocols"))
            except Exception as exc:  # noqa: BLE001
                out.append(f"birdc: {exc}")
        return "\n".join(out)

    # -- BIRD state ---------------------------------------------------------------

    def sessions(self, node: Node) -> dict[str, str]:
        try:
            return {p.name: p.info for p in parse_protocols(node.bird.birdc("show", "protocols"))
                    if p.proto == "BGP"}
        except Exception:  # noqa: BLE001 - not up yet
            return {}

    def established(self, node: Node, count: int) -> bool:
        s = self.sessions(node)
        return len(s) == count and all(v.startswith("Established") for v in s.values())

    def bird_routes(self, node: Node):
        return parse_routes(node.bird.birdc("show", "route"))

    def bird_pid(self, node: Node) -> int | None:
        return node.bird.pid()

    # -- ToR ------------------------------------------------------------------------

    def start_tor(self, asn: int = 64513, cluster_asn: int = 64512) -> None:
        """BIRD in the router netns, eBGP to every node (on both legs)."""
        assert self.router is not None
        state = str(self.tmp / "tor")
        os.makedirs(state, exist_ok=True)
        lines = ["router id 198.51.100.1;", "protocol device { scan time 2; }",
                 "protocol kernel { scan time 2; ipv4 { export all; }; }",
                 "template bgp node { local as %d; connect retry time 2; hold time 9; keepalive time 3;"
                 " ipv4 { import all; export all; }; }" % asn]
        for n in self.nodes.values():
            lines.append(f"protocol bgp {n.name} from node {{ neighbor {n.ip} as {cluster_asn}; }}")
        with open(os.path.join(state, "bird.conf"), "w") as f:
            f.write("\n".join(lines) + "\n")
        self.tor = Bird(state)
        netns.run_in(self.router, self.tor.start)

    # -- pods ---------------------------------------------------------------------

    def conf(self, node: Node, block_size: int | None = None, pools: list[str] | None = None) -> dict:
        """Pools and block size default to the store's network config (Backend.Pools/BlockSize)."""
        ipam: dict = {"type": "tulle-blocks", "store": self.store_url, "node": node.name}
        if block_size:
            ipam["blockSize"] = block_size
        if pools:
            ipam["pools"] = pools
        return {"cniVersion": "1.0.0", "name": "bgp", "type": "tulle-routed", "mtu": 1400,
                "agentSocket": "/nonexistent/agent.sock", "ipam": ipam}

    def add_pod(self, node: Node, name: str, **conf) -> Pod:
        ns = self.make_netns(name)
        res = self.cni("tulle-routed", "ADD", self.conf(node, **conf), netns=ns, container_id=name,
                       host_ns=node.ns)
        assert res.ok, (res.out, res.stderr)
        pod = Pod(name, ns, node, res.out["ips"][0]["address"].split("/")[0])
        self.pods.append(pod)
        return pod

    def unreachable(self, pods: list[Pod] | None = None) -> list[str]:
        pods = pods or self.pods
        return [f"{a.name}->{b.name}" for a in pods for b in pods if a is not b and not ping(a.ns, b.ip)]

    def close(self) -> None:
        for node in self.nodes.values():
            proc, node.proc = node.proc, None
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait(5)
            node.bird.stop(timeout=3)   # a killed agent leaves its BIRD child: stop it by pid
        if self.tor is not None:
            self.tor.stop(timeout=3)
        self.store.close()
