"""Route reflectors, CrossSubnet (VXLAN across segments) and a top-of-rack peer."""

from __future__ import annotations

import ipaddress

import pytest

from tests.cnirun import wait_for
from tests.netns.topo import kernel_routes

pytestmark = pytest.mark.netns


def block_of(ip: str) -> str:
    return str(ipaddress.IPv4Network(f"{ip}/26", strict=False))


def converge(lab, pods, timeout: float = 15.0) -> None:
    """Every node has a kernel route for every other node's pod block (any protocol)."""
    def ok(n) -> bool:
        have = {**kernel_routes(n.ns, "bird"), **kernel_routes(n.ns, "252")}
        return all(block_of(p.ip) in have for p in pods if p.node is not n)
    for n in lab.nodes.values():
        wait_for(f"{n.name}: every remote block routed", lambda n=n: ok(n), timeout=timeout, logs=lab.logs)


def test_six_nodes_two_route_reflectors(bgplab):
    lab = bgplab()
    lab.configure(RouteReflectors=["n1", "n2"])
    nodes = [lab.add_node(k) for k in range(1, 7)]
    for n in nodes:
        want = 5 if n.name in ("n1", "n2") else 2
        wait_for(f"{n.name}: {want} sessions", lambda n=n, want=want: lab.established(n, want), logs=lab.logs)
    assert set(lab.sessions(nodes[5])) == {"RR_198_51_100_11", "RR_198_51_100_12"}
    text = open(f"{nodes[0].state}/bird.conf").read()
    assert text.count("rr client;") == 4 and "rr cluster id 244.0.0.1;" in text
    pods = [lab.add_pod(n, f"p{n.name}") for n in nodes]
    converge(lab, pods)
    # a client's route to another client comes from the reflected announcement: next hop = the owner
    assert kernel_routes(nodes[3].ns, "bird")[block_of(pods[5].ip)] == nodes[5].ip
    assert lab.unreachable() == []


def test_cross_subnet_vxlan_then_tor(bgplab):
    lab = bgplab(segments=2)
    lab.configure()
    n1, n2, n3 = lab.add_node(1, 0), lab.add_node(2, 0), lab.add_node(3, 1)
    for n in (n1, n2, n3):
        wait_for(f"{n.name}: 2 sessions", lambda n=n: lab.established(n, 2), logs=lab.logs)
    pods = [lab.add_pod(n, f"p{n.name}") for n in (n1, n2, n3)]
    converge(lab, pods)
    b1, b2, b3 = (block_of(p.ip) for p in pods)
    assert kernel_routes(n1.ns, "bird").get(b2) == n2.ip              # same segment: native
    assert kernel_routes(n1.ns, "252") == {b3: n3.ip}                 # other segment: VXLAN
    assert kernel_routes(n3.ns, "252") == {b1: n1.ip, b2: n2.ip}
    assert b3 not in kernel_routes(n1.ns, "bird")
    assert lab.unreachable() == []

    # ToR: BIRD on the router (AS 64513); the nodes reconfigure (same BIRD), VXLAN goes away
    lab.start_tor()
    lab.configure(ToR={"ASNumber": 64513})
    for n in (n1, n2, n3):   # the agents pick up the new config only at start: restart them
        lab.stop(n)          # graceful: BIRD stops with `graceful restart`, routes persist
        if n is n1:
            assert kernel_routes(n1.ns, "bird").get(b2) == n2.ip      # our kernel keeps them
            assert kernel_routes(n2.ns, "bird").get(b1) == n1.ip      # the peer keeps ours (stale)
        lab.start(n)
    want = {"n1": 2, "n2": 2, "n3": 1}
    for n in (n1, n2, n3):
        wait_for(f"{n.name}: sessions with ToR", lambda n=n: lab.established(n, want[n.name]), timeout=20,
                 logs=lab.logs)
    assert "ToR" in lab.sessions(n3)
    for node, block, via in ((n1, b3, "198.51.100.1"), (n2, b3, "198.51.100.1"),
                             (n3, b1, "203.0.113.1"), (n3, b2, "203.0.113.1")):
        wait_for(f"{node.name}: {block} via the router",
                 lambda node=node, block=block, via=via: kernel_routes(node.ns, "bird").get(block) == via,
                 timeout=15, logs=lab.logs)
    assert kernel_routes(n1.ns, "bird").get(b2) == n2.ip
    for n in (n1, n2, n3):
        wait_for(f"{n.name}: no VXLAN routes left", lambda n=n: kernel_routes(n.ns, "252") == {}, timeout=15,
                 logs=lab.logs)
    assert lab.unreachable() == []
