"""firewall's nft rules as data."""

from __future__ import annotations

import ipaddress

from tulle.cni import attachment
from tulle.cni.plugins.meta import firewall as fw
from tulle.kernel import nft


def test_pod_rules_exact():
    ips = [ipaddress.ip_address("10.77.0.2"), ipaddress.ip_address("fd00::2")]
    assert fw.pod_rules(ips) == [
        [{"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "saddr"}}, "right": "10.77.0.2"}},
         {"accept": None}],
        [{"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "daddr"}}, "right": "10.77.0.2"}},
         {"match": {"op": "in", "left": {"ct": {"key": "state"}}, "right": ["established", "related"]}},
         {"accept": None}],
        [{"match": {"op": "==", "left": {"payload": {"protocol": "ip6", "field": "saddr"}}, "right": "fd00::2"}},
         {"accept": None}],
        [{"match": {"op": "==", "left": {"payload": {"protocol": "ip6", "field": "daddr"}}, "right": "fd00::2"}},
         {"match": {"op": "in", "left": {"ct": {"key": "state"}}, "right": ["established", "related"]}},
         {"accept": None}],
    ]


def test_add_tx_never_flushes_admin():
    tx = fw.add_tx(None, "t", [ipaddress.ip_address("10.0.0.2")])
    flushed = [c["flush"]["chain"]["name"] for c in tx.commands if "flush" in c]
    assert flushed == ["forward"]
    base = next(c["add"]["chain"] for c in tx.commands if c.get("add", {}).get("chain", {}).get("hook"))
    assert (base["name"], base["type"], base["prio"], base["policy"]) == ("forward", "filter", -10, "accept")


def test_collect_selects_stale_of_this_network():
    def rule(handle, tag):
        return {"rule": {"chain": "pods", "handle": handle, "expr": [], "comment": tag}}
    listing = [rule(1, attachment.tag("n", "a", "eth0")), rule(2, attachment.tag("n", "b", "eth0")),
               rule(3, attachment.tag("m", "b", "eth0")), rule(4, "admin note")]
    tx = fw.collect_tx(listing, "n", {("a", "eth0")})
    assert [c["delete"]["rule"]["handle"] for c in tx.commands] == [2]
    assert fw.delete_tx(listing, attachment.tag("n", "a", "eth0")).commands[0]["delete"]["rule"]["handle"] == 1
    assert isinstance(nft.rules(listing)[0], nft.Rule)
