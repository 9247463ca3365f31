"""The lab's bgp plan: options, refusals, network config, conflist, planned sessions, ToR config (no root)."""

from __future__ import annotations

import shutil

import pytest

from tulle.cluster import netconfig
from tulle.agent.backends.bgp.bird import check_config
from tulle.errors import ConfigError
from tulle.lab import bgp, nodes, topology
from tulle.lab.state import LabState


def test_bgp_plan_options_and_network_config():
    plan = topology.plan("x", nodes=4, backend="bgp", route_reflectors=2, asn=65000)
    assert (plan.route_reflectors, plan.tor_bgp, plan.asn) == (2, False, 65000)
    extra = bgp.netconfig_extra(plan)
    assert extra == {"ASNumber": 65000, "RouteReflectors": ["n1", "n2"]}
    cfg = netconfig.build(str(plan.network), plan.subnet_len, "bgp", extra=extra)
    assert cfg.backend["RouteReflectors"] == ["n1", "n2"] and cfg.backend["ASNumber"] == 65000
    tor = topology.plan("x", backend="bgp", segments=2, tor_bgp=True)
    assert bgp.netconfig_extra(tor)["ToR"] == {
        "ASNumber": 64513, "Peers": {"198.51.100.0/24": "198.51.100.1", "203.0.113.0/24": "203.0.113.1"}}
    assert bgp.netconfig_extra(topology.plan("x")) == {}
    assert topology.plan("x", backend="bgp").asn == topology.DEFAULT_ASN


def test_state_keeps_bgp_options():
    st = LabState("x", {"nodes": 3, "segments": 2, "backend": "bgp", "store": "sqlite",
                        "network": "10.244.0.0/16", "subnet_len": 24, "tor_bgp": True, "asn": 65001},
                  nodes={"n1": 1, "n3": 3}, phase="up")
    plan = LabState.from_json(st.to_json()).plan()
    assert plan.tor_bgp and plan.asn == 65001 and [n.name for n in plan.nodes] == ["n1", "n3"]


@pytest.mark.parametrize("kwargs, words", [
    ({"backend": "bgp", "route_reflectors": 4}, "--route-reflectors must be between 0"),
    ({"backend": "bgp", "route_reflectors": -1}, "--route-reflectors must be between 0"),
    ({"backend": "vxlan", "route_reflectors": 1}, "--route-reflectors: only for --backend bgp"),
    ({"backend": "vxlan", "tor_bgp": True}, "--tor-bgp: only for --backend bgp"),
    ({"backend": "udp", "asn": 65000}, "--asn: only for --backend bgp"),
    ({"backend": "bgp", "asn": 0}, "--asn must be an AS number in 1..4294967295, got 0"),
    ({"backend": "bgp", "asn": 4294967296}, "--asn must be an AS number"),
    ({"backend": "bgp", "tor_bgp": True}, "--tor-bgp needs --segments 2"),
    ({"backend": "bgp", "tor_bgp": True, "segments": 2, "asn": 64513}, "is the top-of-rack router's AS"),
])
def test_bad_bgp_options_are_refused(kwargs, words):
    with pytest.raises(ConfigError) as exc:
        topology.plan("x", **kwargs)
    assert words in exc.value.msg


def test_bgp_conflist_is_routed_with_block_ipam():
    plan = topology.plan("x", backend="bgp", store="etcd")
    conf = nodes.conflist_for(plan, plan.nodes[1])
    routed, portmap = conf["plugins"]
    assert routed["type"] == "tulle-routed" and portmap["type"] == "portmap"
    assert routed["ipam"] == {"type": "tulle-blocks", "store": "etcd://198.51.100.254:2379", "node": "n2"}
    assert routed["agentSocket"] == "/run/tulle/labs/x/n2/agent.sock" and routed["mtu"] == 1450
    tor = topology.plan("x", backend="bgp", segments=2, tor_bgp=True)
    assert nodes.conflist_for(tor, tor.nodes[0])["plugins"][0]["mtu"] == 1500
    vx = topology.plan("x")
    assert nodes.conflist_for(vx, vx.nodes[0]) == nodes.fabric_conflist("x", "n1")


def test_expected_sessions_follow_the_agents_peer_plan():
    mesh = topology.plan("x", backend="bgp")
    assert bgp.expected_peers(mesh, mesh.nodes[0]) == {"Mesh_198_51_100_12": "198.51.100.12",
                                                       "Mesh_198_51_100_13": "198.51.100.13"}
    rr = topology.plan("x", nodes=6, backend="bgp", route_reflectors=2)
    assert len(bgp.expected_peers(rr, rr.nodes[0])) == 5
    assert sorted(bgp.expected_peers(rr, rr.nodes[5])) == ["RR_198_51_100_11", "RR_198_51_100_12"]
    tor = topology.plan("x", backend="bgp", segments=2, tor_bgp=True)
    assert bgp.expected_peers(tor, tor.nodes[0]) == {"Mesh_198_51_100_13": "198.51.100.13", "ToR": "198.51.100.1"}
    assert bgp.expected_peers(tor, tor.nodes[1]) == {"ToR": "203.0.113.1"}


def test_tor_config_peers_with_every_node(tmp_path):
    plan = topology.plan("x", backend="bgp", segments=2, tor_bgp=True)
    text = bgp.tor_config(plan)
    assert "local as 64513;" in text and "router id 198.51.100.1;" in text
    for node in plan.nodes:
        assert f"neighbor {node.ip.ip} as 64512;" in text
    if shutil.which("bird"):
        check_config(text, str(tmp_path / "tor.conf"))   # `bird -p` accepts it
