"""The vxlan backend's pure core: config, VTEP MAC, and the exact entries a set
of remote leases asks for (and what changes between two such plans)."""

from __future__ import annotations

import ipaddress

import pytest

from tulle.agent.backends import vtep
from tulle.agent.backends.vxlan import plan as vxlan
from tulle.cluster.backendconf import MAX_VNI, VxlanConfig, parse_vxlan
from tulle.cluster.lease import Lease
from tulle.errors import ConfigError
from tulle.kernel.routes import Route

NET = ipaddress.IPv4Network
IP = ipaddress.IPv4Address
SEG0 = [NET("198.51.100.0/24")]


def lease(k: int, ip: str, mac: str | None = None, kind: str = "vxlan", data: dict | None = None) -> Lease:
    if data is None:
        data = {"VNI": 1, "VtepMAC": mac or f"0e:00:00:00:00:{k:02x}"}
    return Lease(subnet=NET(f"10.244.{k}.0/24"), public_ip=IP(ip), backend_type=kind, backend_data=data)


def route(dst: str, gw: str, dev: str, onlink: bool) -> Route:
    return Route(dst=NET(dst), gw=IP(gw), dev=dev, onlink=onlink, proto=vxlan.PROTO)


def changes(old: vxlan.Plan, new: vxlan.Plan) -> vtep.Changes:
    """update()'s diff: from the plan last written to the new one."""
    return vtep.changes(old.held(), new)


def test_config_defaults_and_fields():
    assert parse_vxlan({"Type": "vxlan"}) == VxlanConfig(1, 8472, False)
    assert parse_vxlan({"VNI": 42, "Port": 4789, "DirectRouting": True}) == VxlanConfig(42, 4789, True)
    assert vxlan.device_name(7) == "tulle.7"
    assert len(vxlan.device_name(MAX_VNI)) <= 15


@pytest.mark.parametrize("cfg, field", [
    ({"VNI": -1}, "Backend.VNI"), ({"VNI": 1 << 24}, "Backend.VNI"), ({"VNI": "1"}, "Backend.VNI"),
    ({"Port": 70000}, "Backend.Port"), ({"Port": True}, "Backend.Port"),
    ({"Port": 0}, "Backend.Port 0 is out of range"),   # as the network config always said (Flannel: default)
    ({"DirectRouting": "yes"}, "Backend.DirectRouting"),
])
def test_config_errors_name_the_field(cfg, field):
    with pytest.raises(ConfigError, match=field):
        parse_vxlan(cfg)


def test_vtep_mac_is_stable_unicast_and_local():
    a = vtep.vtep_mac(IP("198.51.100.11"), 1)
    assert a == vtep.vtep_mac(IP("198.51.100.11"), 1)
    assert a != vtep.vtep_mac(IP("198.51.100.12"), 1)
    first = int(a[:2], 16)
    assert first & 0x01 == 0 and first & 0x02 == 2   # unicast, locally administered


def test_plan_one_neighbour_fdb_and_route_per_remote():
    cfg = VxlanConfig()
    p = vxlan.plan([lease(2, "198.51.100.12"), lease(3, "203.0.113.13")], config=cfg,
                   underlay_dev="eth0", connected=SEG0, own_subnet=NET("10.244.1.0/24"))
    assert p.neighbours == {IP("10.244.2.0"): "0e:00:00:00:00:02", IP("10.244.3.0"): "0e:00:00:00:00:03"}
    assert p.fdb == {"0e:00:00:00:00:02": IP("198.51.100.12"), "0e:00:00:00:00:03": IP("203.0.113.13")}
    assert p.routes[NET("10.244.2.0/24")] == route("10.244.2.0/24", "10.244.2.0", "tulle.1", True)
    assert len(p.routes) == 2 and p.skipped == []


def test_direct_routing_only_for_connected_peers():
    cfg = VxlanConfig(direct_routing=True)
    p = vxlan.plan([lease(2, "198.51.100.12"), lease(3, "203.0.113.13")], config=cfg,
                   underlay_dev="eth0", connected=SEG0)
    assert p.routes[NET("10.244.2.0/24")] == route("10.244.2.0/24", "198.51.100.12", "eth0", False)
    assert p.routes[NET("10.244.3.0/24")].dev == "tulle.1"
    assert set(p.neighbours) == {IP("10.244.3.0")} and set(p.fdb.values()) == {IP("203.0.113.13")}


@pytest.mark.parametrize("bad, reason", [
    (lease(5, "198.51.100.15", kind="host-gw"), "backend type"),
    (lease(5, "198.51.100.15", data={}), "VtepMAC"),
    (lease(5, "198.51.100.15", data={"VtepMAC": "zz:00:00:00:00:01"}), "not a MAC"),
    (lease(5, "198.51.100.15", data={"VtepMAC": "01:00:5e:00:00:01"}), "unicast"),
    (lease(5, "198.51.100.15", data={"VNI": 2, "VtepMAC": "0e:00:00:00:00:05"}), "VNI"),
    (lease(5, "198.51.100.15", mac="0e:00:00:00:00:02"), "already used"),
    (lease(1, "198.51.100.19"), "overlaps"),
])
def test_bad_leases_are_skipped_with_a_reason(bad, reason):
    good = lease(2, "198.51.100.12")
    p = vxlan.plan([good, bad], config=VxlanConfig(), underlay_dev="eth0", connected=SEG0,
                   own_subnet=NET("10.244.1.0/24"))
    assert list(p.routes) == [good.subnet] and len(p.fdb) == len(p.neighbours) == 1
    assert len(p.skipped) == 1 and reason in p.skipped[0][1]


def test_changes_between_plans():
    """update()'s diff: a join adds one of each entry, a leave removes them, a new MAC
    replaces the neighbour and swaps the FDB entry, and DirectRouting moves the route."""
    cfg = VxlanConfig()
    own = NET("10.244.1.0/24")

    def p(*leases, config=cfg):
        return vxlan.plan(list(leases), config=config, underlay_dev="eth0", connected=SEG0, own_subnet=own)

    a, b = lease(2, "198.51.100.12"), lease(3, "203.0.113.13")
    assert not changes(p(a, b), p(b, a))
    join = changes(p(a), p(a, b))
    assert join.neighbours_set == {IP("10.244.3.0"): "0e:00:00:00:00:03"}
    assert join.fdb_add == [("0e:00:00:00:00:03", IP("203.0.113.13"))]
    assert join.routes.add == [route("10.244.3.0/24", "10.244.3.0", "tulle.1", True)]
    assert not (join.routes.delete or join.routes.replace or join.neighbours_del or join.fdb_del)

    leave = changes(p(a, b), p(a))
    assert leave.routes.delete == join.routes.add and leave.neighbours_del == [IP("10.244.3.0")]
    assert leave.fdb_del == join.fdb_add
    assert not (leave.routes.writes() or leave.neighbours_set or leave.fdb_add)

    rebuilt = changes(p(a, b), p(a, lease(3, "203.0.113.13", mac="0e:00:00:00:00:33")))
    assert rebuilt.neighbours_set == {IP("10.244.3.0"): "0e:00:00:00:00:33"} and not rebuilt.neighbours_del
    assert rebuilt.fdb_del == [("0e:00:00:00:00:03", IP("203.0.113.13"))]
    assert rebuilt.fdb_add == [("0e:00:00:00:00:33", IP("203.0.113.13"))]
    assert not rebuilt.routes

    direct = VxlanConfig(direct_routing=True)
    moved = changes(p(a), p(a, config=direct))   # a is on SEG0: a plain route now, replaced in place
    assert moved.routes.replace == [route("10.244.2.0/24", "198.51.100.12", "eth0", False)]
    assert moved.neighbours_del == [IP("10.244.2.0")] and moved.fdb_del and not moved.routes.delete


def test_a_kernel_read_back_and_the_last_plan_give_the_same_writes():
    """sync diffs against what the kernel holds, update against the last plan: for the
    same state both must ask for the same writes (a full resync = the incremental path)."""
    own = NET("10.244.1.0/24")
    last = vxlan.plan([lease(2, "198.51.100.12")], config=VxlanConfig(), underlay_dev="eth0", connected=SEG0,
                      own_subnet=own)
    new = vxlan.plan([lease(2, "198.51.100.12"), lease(3, "203.0.113.13")], config=VxlanConfig(),
                     underlay_dev="eth0", connected=SEG0, own_subnet=own)
    kernel = vtep.Held(neighbours={IP("10.244.2.0"): "0e:00:00:00:00:02"},
                       fdb=frozenset({("0e:00:00:00:00:02", IP("198.51.100.12"))}),
                       routes=(Route(dst=NET("10.244.2.0/24"), gw=IP("10.244.2.0"), dev="tulle.1", onlink=True,
                                     proto=vxlan.PROTO, scope=0),))
    assert vtep.changes(kernel, new) == vtep.changes(last.held(), new)
