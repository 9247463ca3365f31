"""The bgp netns tests' cluster: `bgplab(segments=1)` gives a BgpLab, a topology
(tests/netns/topo.py) whose nodes run the real agent with backend bgp — so BIRD runs
as the agent's child inside the node netns — and whose pods are wired by the
installed tulle-routed + tulle-blocks executables with the node netns as host; with
two segments the router can run BIRD as a top-of-rack peer."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Callable

import pytest

from tests.cnirun import Runner
from tests.netns.topo import NETWORK, Node, Pod, Topology, in_ns
from tulle.agent.backends.bgp.bird import Bird, parse_protocols, parse_routes
from tulle.cluster import netconfig
from tulle.cluster.lease import DEFAULT_PREFIX
from tulle.kernel import netns
from tulle.store import open_store


class BgpLab(Topology):
    def __init__(self, make_netns: Callable[[str], str], tmp_path: Path, segments: int = 1, *,
                 cni: Runner) -> None:
        super().__init__(make_netns, tmp_path, segments)
        self.cni = cni
        self.store = open_store(self.store_url)
        self.tor: Bird | None = None

    def configure(self, **backend) -> None:
        netconfig.write_config(self.store, DEFAULT_PREFIX,
                               netconfig.build(str(NETWORK), backend="bgp", extra=backend))

    def add_node(self, k: int, segment: int = 0, start: bool = True) -> Node:
        node = super().add_node(k, segment)
        if start:
            self.start(node)
        return node

    def logs(self) -> str:
        """Agent logs, kernel routes and BIRD's view of every node (for failure messages)."""
        out = []
        for n in self.nodes.values():
            out.append(f"--- {n.name}\n{n.logs(tail=6000)}")
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

    def close(self) -> None:
        super().close()
        for node in self.nodes.values():
            node.bird.stop(timeout=3)   # a killed agent leaves its BIRD child: stop it by pid
        if self.tor is not None:
            self.tor.stop(timeout=3)
        self.store.close()


@pytest.fixture
def bgplab(topology, cni) -> Callable[..., BgpLab]:
    if not shutil.which("bird"):
        pytest.skip("bird2 is not installed")
    return lambda segments=1: topology(BgpLab, segments=segments, cni=cni)
