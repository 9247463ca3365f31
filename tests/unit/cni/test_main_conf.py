"""Pure parts of bridge/ptp/macvlan: config parsing, gateway and route plans,
and the nft rules they ask for (no root, no kernel)."""

from __future__ import annotations

import ipaddress
import json

import pytest

from tulle.cni import attachment, iface, macspoof, masq, netconf, tagged
from tulle.cni.env import Env
from tulle.cni.plugins.main import bridge, macvlan, ptp
from tulle.cni.skel import Call
from tulle.cni.types import IPConfig, Route
from tulle.errors import ConfigError, TulleError

STATIC = {"type": "static", "addresses": [{"address": "10.22.0.5/24"}]}


def call(conf: dict, args: list[tuple[str, str]] | None = None, version: str = "1.0.0") -> Call:
    full = {"cniVersion": version, "name": "net", **conf}
    env = Env(command="ADD", container_id="c1", netns="/run/netns/x", ifname="eth0", args=args or [])
    return Call(env=env, conf=full, stdin=json.dumps(full).encode(), version=version)


def ip(addr: str, gw: str | None = None) -> IPConfig:
    return IPConfig(ipaddress.ip_interface(addr), ipaddress.ip_address(gw) if gw else None)


# --- bridge config ------------------------------------------------------------------

def test_bridge_defaults():
    c = bridge.load_conf(call({"type": "bridge", "ipam": STATIC}))
    assert c.bridge == "cni0" and not c.is_gateway and c.ipam == "static" and c.mtu == 0
    assert c.preserve_default_vlan and not c.ip_masq and c.mac == ""


def test_bridge_default_gateway_implies_gateway_and_l2_only():
    c = bridge.load_conf(call({"type": "bridge", "isDefaultGateway": True, "ipam": {}}))
    assert c.is_gateway and c.ipam is None


@pytest.mark.parametrize("fields, word", [
    ({"mtu": "1500"}, "mtu"), ({"mtu": 67}, "mtu"), ({"mtu": 70000}, "mtu"),
    ({"vlan": -1}, "vlan"), ({"vlan": 4095}, "vlan"),
    ({"hairpinMode": True, "promiscMode": True}, "promiscMode"),
    ({"bridge": "x" * 16}, "bridge"), ({"isGateway": "true"}, "isGateway"),
    ({"vlan": 10, "isGateway": True}, "vlan"), ({"ipam": []}, "ipam"),
    ({"dns": []}, "dns"),
])
def test_bridge_bad_fields_name_the_field(fields, word):
    with pytest.raises(TulleError) as exc:
        bridge.load_conf(call({"type": "bridge", "ipam": STATIC, **fields}))
    assert word in str(exc.value)


def test_mac_precedence():
    base = {"type": "bridge"}
    assert netconf.mac(call(base, [("MAC", "02:00:00:00:00:01")])) == "02:00:00:00:00:01"
    c = call({**base, "args": {"cni": {"mac": "02:00:00:00:00:02"}}}, [("MAC", "02:00:00:00:00:01")])
    assert netconf.mac(c) == "02:00:00:00:00:02"
    c = call({**base, "args": {"cni": {"mac": "02:00:00:00:00:02"}},
              "runtimeConfig": {"mac": "02:00:00:00:00:03"}}, [("MAC", "02:00:00:00:00:01")])
    assert netconf.mac(c) == "02:00:00:00:00:03"
    assert netconf.mac(call({**base, "mac": "02:AA:00:00:00:04"}), conf_key="mac") == "02:aa:00:00:00:04"
    with pytest.raises(ConfigError, match="CNI_ARGS MAC"):
        netconf.mac(call(base, [("MAC", "nonsense")]))
    with pytest.raises(ConfigError, match="multicast"):
        netconf.mac(call({**base, "runtimeConfig": {"mac": "01:00:5e:00:00:01"}}))


# --- bridge gateway plan ----------------------------------------------------------------

def test_gateway_plan_fills_first_address_and_default_route():
    c = bridge.BridgeConf(network="n", is_gateway=True, is_default_gateway=True)
    ips, routes, br = bridge.plan_gateways(c, [ip("10.22.0.5/24"), ip("fd00::5/64")], [])
    assert [str(i.gateway) for i in ips] == ["10.22.0.1", "fd00::1"]
    assert [(str(r.dst), str(r.gw)) for r in routes] == [("0.0.0.0/0", "10.22.0.1"), ("::/0", "fd00::1")]
    assert [str(a) for a in br] == ["10.22.0.1/24", "fd00::1/64"]


def test_gateway_plan_keeps_ipam_default_route_with_gateway():
    c = bridge.BridgeConf(network="n", is_gateway=True, is_default_gateway=True)
    existing = [Route(ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_address("10.22.0.254"))]
    ips, routes, br = bridge.plan_gateways(c, [ip("10.22.0.5/24", "10.22.0.1")], existing)
    assert routes == existing and [str(a) for a in br] == ["10.22.0.1/24"]


def test_gateway_plan_without_isgateway_changes_nothing():
    c = bridge.BridgeConf(network="n")
    given = [ip("10.22.0.5/24")]
    ips, routes, br = bridge.plan_gateways(c, given, [])
    assert ips[0].gateway is None and routes == [] and br == []
    assert given[0].gateway is None  # the input is not modified


# --- pod routes -----------------------------------------------------------------------

def test_plan_routes_use_the_family_gateway():
    ips = [ip("10.22.0.5/24", "10.22.0.1"), ip("fd00::5/64", "fd00::1")]
    routes = [Route(ipaddress.ip_network("0.0.0.0/0")), Route(ipaddress.ip_network("::/0")),
              Route(ipaddress.ip_network("10.9.0.0/16"), ipaddress.ip_address("10.22.0.9"), priority=5)]
    plan = iface.plan_routes("eth0", ips, routes)
    assert [(str(r.dst), str(r.gw), r.dev, r.metric) for r in plan] == [
        ("0.0.0.0/0", "10.22.0.1", "eth0", 0), ("::/0", "fd00::1", "eth0", 0),
        ("10.9.0.0/16", "10.22.0.9", "eth0", 5)]


def test_plan_routes_without_gateway_is_a_link_route():
    plan = iface.plan_routes("eth0", [ip("10.22.0.5/24")], [Route(ipaddress.ip_network("10.9.0.0/16"))])
    assert plan[0].gw is None


def test_ptp_pod_routes():
    out = ptp.pod_routes("eth0", ip("10.22.0.5/24", "10.22.0.1"))
    assert [(str(r.dst), str(r.gw) if r.gw else None, str(r.src)) for r in out] == [
        ("10.22.0.1/32", None, "10.22.0.5"), ("10.22.0.0/24", "10.22.0.1", "10.22.0.5")]
    assert len(ptp.pod_routes("eth0", ip("10.22.0.5/32", "10.22.0.1"))) == 1


def test_ptp_needs_ipam_and_gateways():
    with pytest.raises(ConfigError, match="ipam"):
        ptp.load_conf(call({"type": "ptp", "ipam": {}}))
    with pytest.raises(ConfigError, match="gateway"):
        ptp.require_gateways([ip("10.22.0.5/24")])


# --- macvlan config -------------------------------------------------------------------

def test_macvlan_conf():
    c = macvlan.load_conf(call({"type": "macvlan", "master": "ul0", "mode": "vepa", "mtu": 1400, "ipam": {}}))
    assert (c.master, c.mode, c.mtu, c.ipam) == ("ul0", "vepa", 1400, None)
    assert macvlan.load_conf(call({"type": "macvlan"})).mode == "bridge"
    with pytest.raises(ConfigError, match="mode"):
        macvlan.load_conf(call({"type": "macvlan", "mode": "source"}))
    with pytest.raises(ConfigError, match="master"):
        macvlan.load_conf(call({"type": "macvlan", "master": "a b"}))


# --- nft rules (golden) ----------------------------------------------------------------

def test_masq_rule_v4_and_v6():
    assert masq.rule_body(ipaddress.ip_interface("10.22.0.5/24")) == [
        {"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "saddr"}}, "right": "10.22.0.5"}},
        {"match": {"op": "!=", "left": {"payload": {"protocol": "ip", "field": "daddr"}},
                   "right": {"prefix": {"addr": "10.22.0.0", "len": 24}}}},
        {"match": {"op": "!=", "left": {"payload": {"protocol": "ip", "field": "daddr"}},
                   "right": {"prefix": {"addr": "224.0.0.0", "len": 4}}}},
        {"counter": None}, {"masquerade": None}]
    v6 = masq.rule_body(ipaddress.ip_interface("fd00::5/64"))
    assert v6[0]["match"]["left"]["payload"]["protocol"] == "ip6"
    assert v6[2]["match"]["right"] == {"prefix": {"addr": "ff00::", "len": 8}}


def test_macspoof_rule():
    assert macspoof.rule_body("veth01234567", "02:AA:BB:CC:DD:EE") == [
        {"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": "veth01234567"}},
        {"match": {"op": "!=", "left": {"payload": {"protocol": "ether", "field": "saddr"}},
                   "right": "02:aa:bb:cc:dd:ee"}},
        {"counter": None}, {"drop": None}]


def listed(*rules: tuple[int, str]) -> list[dict]:
    out: list[dict] = [{"table": {"family": "inet", "name": "tulle-cni-masq"}}]
    for handle, comment in rules:
        out.append({"rule": {"family": "inet", "table": "tulle-cni-masq", "chain": "postrouting",
                             "handle": handle, "comment": comment, "expr": []}})
    return out


def test_tagged_replace_deletes_old_rules_of_the_same_attachment():
    tag = attachment.tag("net", "c1", "eth0")
    objs = listed((5, tag), (6, attachment.tag("net", "c2", "eth0")))
    tx = masq.CHAIN.plan_replace(objs, tag, [[{"masquerade": None}]])
    cmds = [next(iter(c)) + ":" + next(iter(next(iter(c.values())))) for c in tx.commands]
    assert cmds == ["add:table", "add:chain", "delete:rule", "add:rule"]
    assert tx.commands[2]["delete"]["rule"]["handle"] == 5
    assert tx.commands[3]["add"]["rule"]["comment"] == tag


def test_tagged_collect_plan_spares_kept_foreign_and_untagged_rules():
    keep = attachment.tag("net", "keep", "eth0")
    stale = attachment.tag("net", "gone", "eth0")
    other_net = attachment.tag("other", "gone", "eth0")
    objs = listed((1, keep), (2, stale), (3, other_net), (4, "hand-made rule"))
    tx = masq.CHAIN.plan_remove(objs, tagged.stale("net", {("keep", "eth0")}))
    assert [c["delete"]["rule"]["handle"] for c in tx.commands] == [2]
    assert masq.CHAIN.plan_remove(None, lambda c: True).empty()


def test_tagged_collect_matches_long_container_ids():
    cid = "x" * 100
    comment = attachment.tag("net", cid, "eth0")
    assert not tagged.stale("net", {(cid, "eth0")})(comment)
    assert tagged.stale("net", set())(comment)
