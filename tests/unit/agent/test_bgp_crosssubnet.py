"""CrossSubnet planning: blocks and borrowed /32s of nodes on other segments go through VXLAN (pure)."""

from __future__ import annotations

import ipaddress as ip

from tulle.agent.backends.bgp import crosssubnet
from tulle.cluster.blocks import Block
from tulle.cluster.lease import Lease
from tulle.kernel.routes import Route

N = ip.IPv4Network
A = ip.IPv4Address
SEG0 = N("198.51.100.0/24")
MAC2, MAC3 = "0e:00:00:00:00:02", "0e:00:00:00:00:03"


def lease(node: str, addr: str, mac: str | None, sub: int, vni: int = 4096) -> Lease:
    data = {"VtepMAC": mac, "VNI": vni} if mac else {}
    return Lease(N(f"10.244.{sub}.0/24"), A(addr), "bgp", data, node=node)


def block(cidr: str, owner: str | None, **allocs: str) -> Block:
    return Block(N(cidr), owner, {A(k.replace("_", ".")): {"Handle": "c/eth0", "Node": v} for k, v in allocs.items()})


REMOTES = [lease("n2", "198.51.100.12", MAC2, 2), lease("n3", "203.0.113.13", MAC3, 3)]
BLOCKS = [
    block("10.244.0.0/26", "n1", **{"10_244_0_1": "n1", "10_244_0_2": "n3"}),   # n3 borrowed from us
    block("10.244.0.64/26", "n2", **{"10_244_0_65": "n2", "10_244_0_66": "n3"}),  # ... and from n2
    block("10.244.0.128/26", "n3", **{"10_244_0_129": "n3", "10_244_0_130": "n1"}),  # we borrowed from n3
]


def test_owners_maps_blocks_and_borrowed_addresses():
    assert crosssubnet.owners(BLOCKS, "n1") == {
        N("10.244.0.2/32"): "n3", N("10.244.0.64/26"): "n2", N("10.244.0.66/32"): "n3",
        N("10.244.0.128/26"): "n3",
    }


def test_only_nodes_on_other_segments_get_vxlan_entries():
    plan = crosssubnet.plan("n1", REMOTES, BLOCKS, [SEG0])
    gw = A("203.0.113.13")
    assert plan.neighbours == {gw: MAC3} and plan.fdb == {MAC3: gw}
    assert plan.routes == {dst: Route(dst=dst, gw=gw, dev="tulle-vxlan", onlink=True, proto=crosssubnet.PROTO)
                           for dst in (N("10.244.0.2/32"), N("10.244.0.66/32"), N("10.244.0.128/26"))}
    assert plan.remote_segment == {"n3"} and plan.skipped == {}


def test_from_the_other_side_everything_is_remote():
    plan = crosssubnet.plan("n3", [lease("n1", "198.51.100.11", "0e:00:00:00:00:01", 1), REMOTES[0]],
                            BLOCKS, [N("203.0.113.0/24")])
    assert set(plan.routes) == {N("10.244.0.0/26"), N("10.244.0.64/26"), N("10.244.0.130/32")}
    assert plan.routes[N("10.244.0.130/32")].gw == A("198.51.100.11")


def test_unusable_nodes_are_skipped_with_a_reason():
    remotes = [lease("n3", "203.0.113.13", None, 3)]
    plan = crosssubnet.plan("n1", remotes, BLOCKS + [block("10.244.1.0/26", "n9")], [SEG0])
    assert plan.routes == {}
    assert "VtepMAC" in plan.skipped["n3"] and "no lease" in plan.skipped["n9"]
    wrong_vni = crosssubnet.plan("n1", [lease("n3", "203.0.113.13", MAC3, 3, vni=7)], BLOCKS, [SEG0])
    assert "VNI" in wrong_vni.skipped["n3"]
