"""host-gw's adjacency rule and desired routes, and the masquerade ruleset (all pure);
the route diff itself is tests/unit/backends/test_routediff.py."""

from __future__ import annotations

import ipaddress

import pytest

from tests.unit.agent import scrape
from tulle.agent import masquerade
from tulle.agent.backends import base, host_gw
from tulle.cluster.backendconf import HostGwConfig, VxlanConfig
from tulle.cluster.lease import Lease
from tulle.errors import ConfigError
from tulle.kernel.routes import Route

NET = ipaddress.IPv4Network
IP = ipaddress.IPv4Address


def test_directly_connected_and_cluster_adjacency():
    nets = [NET("198.51.100.0/24")]
    assert host_gw.directly_connected("198.51.100.77", nets)
    assert not host_gw.directly_connected("203.0.113.13", nets)
    host_gw.check_adjacency({"n1": "198.51.100.11/24", "n2": "198.51.100.12/24"})
    with pytest.raises(ConfigError, match="host-gw needs every node on one L2 segment.*n3"):
        host_gw.check_adjacency({"n1": "198.51.100.11/24", "n2": "198.51.100.12/24", "n3": "203.0.113.13/24"})


class Offline(host_gw.HostGw):
    """host-gw with the connected subnets given instead of read from the kernel."""

    def before_sync(self) -> None:
        self._connected = [NET("198.51.100.0/24")]


def node() -> base.NodeInfo:
    return base.NodeInfo("n1", IP("198.51.100.11"), "eth0", 1500, NET("10.244.0.0/16"), "/tmp/x")


def lease(subnet: str, ip: str, btype: str = "host-gw") -> Lease:
    return Lease(NET(subnet), IP(ip), btype, node="peer")


def test_host_gw_desired_routes_refusals_and_other_backends():
    be = Offline(node(), {"Type": "host-gw"})
    assert be.prepare().mtu == 1500 and be.prepare().backend_data == {}
    be.start(lease("10.244.1.0/24", "198.51.100.11"))
    before = scrape.value("tulle_leases_refused_total", backend="host-gw")
    remotes = [lease("10.244.1.0/24", "198.51.100.11"), lease("10.244.2.0/24", "198.51.100.12"),
               lease("10.244.3.0/24", "203.0.113.13"), lease("10.244.4.0/24", "198.51.100.14", "vxlan")]
    want = be.desired(remotes)
    assert want == [Route(dst=NET("10.244.2.0/24"), gw=IP("198.51.100.12"), dev="eth0", proto=250)]
    assert list(be.refused().values())[0].startswith("host-gw: refusing lease 10.244.3.0/24 of peer")
    assert scrape.value("tulle_leases_refused_total", backend="host-gw") == before + 1
    be.desired(remotes)  # the same refusal is counted once, not every tick
    assert scrape.value("tulle_leases_refused_total", backend="host-gw") == before + 1


def test_registry_creates_host_gw():
    assert isinstance(base.create("host-gw", node(), {"Type": "host-gw"}), host_gw.HostGw)
    assert isinstance(base.create("host-gw", node(), HostGwConfig()), host_gw.HostGw)   # already parsed
    with pytest.raises(ConfigError, match="'host-gw' given the config of backend 'vxlan'"):
        base.create("host-gw", node(), VxlanConfig())


def test_masquerade_rules_never_touch_pod_to_pod():
    rules = masquerade.rules(NET("10.244.0.0/16"), [NET("10.244.1.0/24")])
    comments = [c for c, _ in rules]
    assert comments == ["tulle-agent pod-to-pod 10.244.0.0/16",
                        "tulle-agent outside-to-local-pods 10.244.1.0/24",
                        "tulle-agent pods-to-outside 10.244.0.0/16",
                        "tulle-agent to-remote-pods 10.244.0.0/16"]
    first = rules[0][1]
    assert first[-1] == {"return": None}
    assert {"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "daddr"}},
                      "right": {"prefix": {"addr": "10.244.0.0", "len": 16}}}} in first
    outside = rules[2][1]
    assert {"match": {"op": "!=", "left": {"payload": {"protocol": "ip", "field": "daddr"}},
                      "right": {"prefix": {"addr": "224.0.0.0", "len": 4}}}} in outside
    assert outside[-1] == {"masquerade": {"flags": ["fully-random"]}}
    tx = masquerade.transaction(NET("10.244.0.0/16"), [NET("10.244.1.0/24")]).to_json()["nftables"]
    assert tx[1] == {"add": {"table": {"family": "inet", "name": "tulle-agent"}}}
    assert tx[2]["add"]["chain"]["hook"] == "postrouting" and tx[2]["add"]["chain"]["type"] == "nat"
    assert tx[3] == {"flush": {"chain": {"family": "inet", "table": "tulle-agent", "name": "postrouting"}}}
    assert len(tx) == 8


def test_masquerade_local_pods_as_a_set_or_none():
    """bgp: a node's pods sit in its blocks and borrowed /32s (a set); before its first pod, in none."""
    net = NET("10.244.0.0/16")
    rules = dict(masquerade.rules(net, [NET("10.244.3.0/26"), NET("10.244.9.7/32"), NET("10.244.3.0/26")]))
    comment = "tulle-agent outside-to-local-pods 10.244.3.0/26,10.244.9.7/32"
    assert comment in rules
    local = {"set": [{"prefix": {"addr": "10.244.3.0", "len": 26}}, "10.244.9.7"]}
    assert {"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "daddr"}},
                      "right": local}} in rules[comment]
    assert [c for c, _ in masquerade.rules(net, [])] == ["tulle-agent pod-to-pod 10.244.0.0/16",
                                                         "tulle-agent pods-to-outside 10.244.0.0/16",
                                                         "tulle-agent to-remote-pods 10.244.0.0/16"]
    many = [NET(f"10.244.{i}.0/26") for i in range(40)]
    long = [c for c, _ in masquerade.rules(net, many) if "local" in c][0]
    assert len(long.encode()) <= 128 and long.startswith("tulle-agent outside-to-local-pods 40 prefixes sha1:")
    assert long != [c for c, _ in masquerade.rules(net, many[:-1]) if "local" in c][0]


def test_skip_warnings_once_per_reason(capsys):
    """A lease a backend cannot serve warns once, again when the reason changes or it comes back."""
    w = base.SkipWarnings("vxlan: lease skipped", "subnet")
    lease = Lease(subnet=NET("10.244.3.0/24"), public_ip=IP("198.51.100.13"), backend_type="vxlan")
    w.leases([(lease, "subnet overlaps another lease")])
    w.leases([(lease, "subnet overlaps another lease")])
    w.report({"10.244.3.0/24": "no VtepMAC"})
    w.report({})
    w.report({"10.244.3.0/24": "no VtepMAC"})
    lines = [line for line in capsys.readouterr().err.splitlines() if "lease skipped" in line]
    assert len(lines) == 3 and '"subnet": "10.244.3.0/24"' in lines[0] and "overlaps" in lines[0]
