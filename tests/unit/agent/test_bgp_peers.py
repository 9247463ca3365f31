"""Which sessions each node gets: mesh, route reflectors, ToR (pure)."""

from __future__ import annotations

import ipaddress as ip

import pytest

from tulle.agent.backends.bgp import peers
from tulle.errors import ConfigError

A = ip.IPv4Address
SEG0, SEG1 = ip.IPv4Network("198.51.100.0/24"), ip.IPv4Network("203.0.113.0/24")


def nodes(n: int, seg: ip.IPv4Network = SEG0, start: int = 1) -> list[peers.NodeRef]:
    return [peers.NodeRef(f"n{k}", seg.network_address + 10 + k) for k in range(start, start + n)]


def names(plan: peers.PeerPlan) -> list[str]:
    return [p.name for p in plan.peers]


def test_mesh_peers_with_everyone_once_in_a_stable_order():
    all_ = nodes(4)
    me, others = all_[0], list(reversed(all_[1:])) + [all_[2]]   # duplicates and order don't matter
    plan = peers.plan(me, others + [me], asn=64512)
    assert plan.mode == "mesh" and plan.rr_cluster_id is None
    assert names(plan) == ["Mesh_198_51_100_12", "Mesh_198_51_100_13", "Mesh_198_51_100_14"]
    assert {p.asn for p in plan.peers} == {64512} and not any(p.rr_client for p in plan.peers)


def test_reflectors_peer_with_each_other_and_reflect_to_clients():
    all_ = nodes(6)
    rrs = frozenset({"n1", "n2"})
    rr = peers.plan(all_[0], all_[1:], asn=64512, reflectors=rrs, cluster_id=A("244.0.0.1"))
    assert rr.mode == "reflector" and rr.rr_cluster_id == A("244.0.0.1")
    assert [(p.name, p.rr_client) for p in rr.peers] == [("RR_198_51_100_12", False)] + \
        [(f"Client_198_51_100_{10 + k}", True) for k in range(3, 7)]
    client = peers.plan(all_[4], [n for n in all_ if n.name != "n5"], asn=64512, reflectors=rrs)
    assert client.mode == "client" and client.rr_cluster_id is None
    assert names(client) == ["RR_198_51_100_11", "RR_198_51_100_12"]


def test_no_live_reflector_falls_back_to_the_mesh():
    all_ = nodes(3)
    plan = peers.plan(all_[0], all_[1:], asn=64512, reflectors=frozenset({"n9"}))
    assert plan.mode == "mesh" and len(plan.peers) == 2


def test_tor_keeps_sessions_on_the_segment_and_adds_the_router():
    seg0, seg1 = nodes(2), nodes(1, SEG1, start=3)
    tor = peers.Tor(64513)
    plan = peers.plan(seg0[0], seg0[1:] + seg1, asn=64512, connected=[SEG0], tor=tor)
    assert names(plan) == ["Mesh_198_51_100_12", "ToR"]
    assert plan.peers[-1].address == A("198.51.100.1") and plan.peers[-1].tor and plan.peers[-1].asn == 64513
    lone = peers.plan(seg1[0], seg0, asn=64512, connected=[SEG1], tor=tor)
    assert names(lone) == ["ToR"] and lone.peers[0].address == A("203.0.113.1")
    explicit = peers.Tor(64513, ((SEG1, A("203.0.113.254")),))
    assert peers.plan(seg1[0], [], asn=64512, connected=[SEG1], tor=explicit).peers[0].address == \
        A("203.0.113.254")


def test_tor_in_the_cluster_as_is_refused():
    with pytest.raises(ConfigError, match="ToR.ASNumber"):
        peers.plan(nodes(1)[0], [], asn=64512, connected=[SEG0], tor=peers.Tor(64512))
