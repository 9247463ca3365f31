"""portmap's nft ruleset as data: exact (golden) transactions, DEL and GC selection."""

from __future__ import annotations

import ipaddress
import json
import os

from tulle.cni import attachment, hostports as hp
from tulle.kernel import nft

GOLDEN = os.path.join(os.path.dirname(__file__), "golden", "portmap_add.json")
V4, V6 = ipaddress.ip_address("10.77.0.2"), ipaddress.ip_address("fd00::2")


def att(cid="c1", **kw) -> hp.Attachment:
    base = dict(network="net", container_id=cid, ifname="eth0", pod_ips=(V4, V6),
                mappings=(hp.PortMapping(8080, 80),
                          hp.PortMapping(53, 53, "udp", ipaddress.ip_address("10.77.0.1"))))
    base.update(kw)
    return hp.Attachment(**base)


def test_add_transaction_is_golden():
    with open(GOLDEN) as f:
        assert hp.add(None, att()).to_json() == json.load(f)


def test_dnat_rules_without_snat_have_no_mark():
    rules = hp.dnat_rules(att(snat=False, pod_ips=(V4,), mappings=(hp.PortMapping(8080, 80),)))
    assert rules == [[
        nft.match(nft.meta("nfproto"), "ipv4"),
        nft.match(nft.payload("tcp", "dport"), 8080),
        nft.dnat("10.77.0.2", 80, family="ip"),
    ]]
    assert hp.masq_rules(att(snat=False)) == []


def test_host_ip_restricts_family_and_destination():
    a = att(mappings=(hp.PortMapping(8080, 80, "tcp", ipaddress.ip_address("fd00::1")),))
    rules = hp.dnat_rules(a)
    assert len(rules) == 2  # mark + dnat, IPv6 only
    assert rules[1] == [nft.match(nft.payload("ip6", "daddr"), "fd00::1"),
                        nft.match(nft.payload("tcp", "dport"), 8080),
                        nft.dnat("fd00::2", 80, family="ip6")]


def test_mark_uses_masq_bit():
    a = att(masq_bit=4, pod_ips=(V4,), mappings=(hp.PortMapping(1, 2),))
    assert hp.dnat_rules(a)[0][-1] == nft.set_mark(16, mask=16)
    assert hp.masq_rules(a) == [[nft.match(nft.payload("ip", "daddr"), "10.77.0.2"),
                                 nft.match({"&": [nft.meta("mark"), 16]}, 16), nft.masquerade()]]


def _listing(*atts: hp.Attachment) -> list[dict]:
    """What `nft -j list table` would print after ADDs of `atts` (handles made up)."""
    objs: list[dict] = []
    handle = 100
    for name in ("hostports", "masq", "prerouting", "output", "postrouting"):
        objs.append({"chain": {"family": "inet", "table": hp.TABLE, "name": name}})
    for a in atts:
        objs.append({"chain": {"family": "inet", "table": hp.TABLE, "name": a.chain}})
        for expr in hp.dnat_rules(a):
            handle += 1
            objs.append({"rule": {"chain": a.chain, "handle": handle, "expr": expr}})
        handle += 1
        objs.append({"rule": {"chain": "hostports", "handle": handle, "expr": hp.jump_rule(a), "comment": a.tag}})
        for expr in hp.masq_rules(a):
            handle += 1
            objs.append({"rule": {"chain": "masq", "handle": handle, "expr": expr, "comment": a.tag}})
    return objs


def _deleted(tx: nft.Transaction) -> tuple[list[int], list[str]]:
    rules = [c["delete"]["rule"]["handle"] for c in tx.commands if "rule" in c.get("delete", {})]
    chains = [c["delete"]["chain"]["name"] for c in tx.commands if "chain" in c.get("delete", {})]
    return rules, chains


def test_delete_removes_only_that_attachment():
    a, b = att("a"), att("b")
    listing = _listing(a, b)
    rules, chains = _deleted(hp.delete(listing, "net", "a", "eth0"))
    owned = {r.handle for r in nft.rules(listing) if r.comment == a.tag}
    assert set(rules) == owned and chains == [a.chain]
    assert hp.delete(None, "net", "a", "eth0").empty()


def test_collect_keeps_valid_and_other_networks():
    a, b, other = att("a"), att("b"), att("b", network="other")
    listing = _listing(a, b, other)
    rules, chains = _deleted(hp.collect(listing, "net", {("a", "eth0")}))
    assert set(rules) == {r.handle for r in nft.rules(listing) if r.comment == b.tag}
    assert chains == [b.chain]


def test_drift():
    a = att()
    assert hp.drift(_listing(a), a) is None
    assert "missing" in hp.drift(None, a)
    assert hp.drift(_listing(att(mappings=(hp.PortMapping(1, 2),))), a) is not None
    assert "missing" in hp.drift(_listing(att("other")), a)


def test_tags_fit_nft_comments():
    long_cid = "x" * 200
    assert len(attachment.tag("net", long_cid, "eth0").encode()) <= 127
