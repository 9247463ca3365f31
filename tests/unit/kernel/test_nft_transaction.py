"""A Transaction renders its typed operations to the one JSON batch libnftables takes."""

from __future__ import annotations

import pytest

from tulle.kernel import nft

T = ("inet", "tulle-t")
SVC = nft.Map("svc", "ipv4_addr . inet_proto . inet_service", "verdict")
AFF = nft.Set("aff", "ipv4_addr", flags=["dynamic", "timeout"], timeout=10800)
UPDATE = nft.Rule("ep", [nft.update_set("aff", nft.ip_field(4, "saddr"))])


def test_json_of_each_kind_and_verb():
    tx = nft.Transaction(*T)
    tx.add(nft.Table(*T, comment="c"))
    tx.add(nft.Chain("pre", type="nat", hook="prerouting", priority="dstnat + 5", policy="accept"))
    tx.create(nft.Chain("ep"))
    tx.add(SVC).add(AFF).add(UPDATE)
    tx.insert(nft.Rule("ep", [nft.accept()], handle=4, comment="top"))
    tx.replace(nft.Rule("ep", [nft.drop()], handle=5))
    tx.flush(nft.Chain("ep")).flush(SVC)
    tx.delete(nft.Rule("ep", handle=6)).delete(nft.Chain("ep")).delete(AFF).delete(nft.Table(*T))
    at = {"family": "inet", "table": "tulle-t"}
    assert tx.to_json()["nftables"] == [
        {"metainfo": {"json_schema_version": 1}},
        {"add": {"table": {"family": "inet", "name": "tulle-t", "comment": "c"}}},
        {"add": {"chain": {**at, "name": "pre", "type": "nat", "hook": "prerouting", "prio": -95, "policy": "accept"}}},
        {"create": {"chain": {**at, "name": "ep"}}},
        {"add": {"map": {**at, "name": "svc", "type": ["ipv4_addr", "inet_proto", "inet_service"], "map": "verdict"}}},
        {"add": {"set": {**at, "name": "aff", "type": "ipv4_addr", "flags": ["timeout"], "timeout": 10800}}},
        {"add": {"rule": {**at, "chain": "ep", "expr": UPDATE.expr}}},
        {"insert": {"rule": {**at, "chain": "ep", "expr": [{"accept": None}], "handle": 4, "comment": "top"}}},
        {"replace": {"rule": {**at, "chain": "ep", "expr": [{"drop": None}], "handle": 5}}},
        {"flush": {"chain": {**at, "name": "ep"}}},
        {"flush": {"map": {**at, "name": "svc"}}},
        {"delete": {"rule": {**at, "chain": "ep", "handle": 6}}},
        {"delete": {"chain": {**at, "name": "ep"}}},
        {"delete": {"set": {**at, "name": "aff"}}},
        {"delete": {"table": {"family": "inet", "name": "tulle-t"}}},
    ]


def test_elements_render_typed_and_runs_share_a_command():
    ports = nft.Set("ports", "inet_service", flags=["interval", "timeout"], elements=[80, "1000-2000"])
    nets = nft.Set("nets", "ipv4_addr", flags=["interval"])
    tx = nft.Transaction(*T).add(ports)
    tx.add(nft.Element(SVC, ("10.96.0.10", "udp", 53), nft.goto("svc-dns")))
    tx.add(nft.Element(SVC, ("10.96.0.10", 6, 53), nft.jump("svc-dns"), comment="dns/tcp"))
    tx.add(nft.Element(nets, "10.0.0.0/8"))
    tx.add(nft.Element(ports, 443, timeout=60))
    tx.delete(nft.Element(SVC, ("10.96.0.1", "tcp", 443)))
    tx.delete(nft.Element(SVC, ("10.96.0.2", "tcp", 443)))
    at = {"family": "inet", "table": "tulle-t"}
    assert tx.commands == [
        {"add": {"set": {**at, "name": "ports", "type": "inet_service", "flags": ["interval", "timeout"],
                         "elem": [80, {"range": [1000, 2000]}]}}},
        {"add": {"element": {**at, "name": "svc", "elem": [
            [{"concat": ["10.96.0.10", "udp", 53]}, {"goto": {"target": "svc-dns"}}],
            [{"elem": {"val": {"concat": ["10.96.0.10", "tcp", 53]}, "comment": "dns/tcp"}},
             {"jump": {"target": "svc-dns"}}]]}}},
        {"add": {"element": {**at, "name": "nets", "elem": [{"prefix": {"addr": "10.0.0.0", "len": 8}}]}}},
        {"add": {"element": {**at, "name": "ports", "elem": [{"elem": {"val": 443, "timeout": 60}}]}}},
        {"delete": {"element": {**at, "name": "svc", "elem": [{"concat": ["10.96.0.1", "tcp", 443]},
                                                              {"concat": ["10.96.0.2", "tcp", 443]}]}}},
    ]
    assert nft.Transaction(*T).empty() and not tx.empty()


def test_verbs_take_only_what_nft_does():
    tx = nft.Transaction(*T)
    for call, why in ((lambda: tx.insert(nft.Chain("c")), "insert takes Rule"),
                      (lambda: tx.flush(nft.Rule("c", [nft.accept()])), "flush takes"),
                      (lambda: tx.create(nft.Rule("c", [nft.accept()])), "create takes"),
                      (lambda: tx.add(nft.Table("ip", "tulle-t")), "in a transaction for inet"),
                      (lambda: tx.delete(nft.Rule("c")), "needs the rule's handle"),
                      (lambda: tx.replace(nft.Rule("c", [nft.accept()])), "needs the rule's handle"),
                      (lambda: tx.add(nft.Rule("c")), "at least one statement"),
                      (lambda: tx.add(nft.Rule("c", [nft.accept()], handle=3)), "insert it before")):
        with pytest.raises(nft.InvalidObject, match=why):
            call()
    with pytest.raises(nft.InvalidObject):
        nft.Transaction("inet", "bad name")
    assert tx.empty()


@pytest.mark.parametrize("family,expr,why", [
    ("inet", [nft.match(nft.meta("l4proto"), "tcp"), nft.match(nft.payload("tcp", "dport"), 80)], "implied"),
    ("inet", [nft.match(nft.meta("l4proto"), "tcp"), nft.match(nft.ip_field(4, "saddr"), "1.1.1.1"),
              nft.match(nft.payload("tcp", "dport"), 80)], "implied"),
    ("inet", [nft.match(nft.meta("l4proto"), "udp"), nft.match(nft.payload("th", "dport"), 53)], "write udp"),
    ("inet", [nft.match(nft.meta("nfproto"), "ipv6"), nft.match(nft.ip_field(6, "saddr"), "fd00::1")], "implied"),
    ("inet", [nft.match(nft.meta("nfproto"), "ipv6"), nft.reject("icmpv6", "admin-prohibited")], "implies"),
    ("ip", [nft.match(nft.ip_field(4, "protocol"), "tcp"), nft.match(nft.payload("tcp", "dport"), 80)], "implied"),
    ("ip", [nft.match(nft.meta("l4proto"), "tcp"), nft.reject("tcp reset")], "leave it out"),
    ("inet", [nft.reject("tcp reset")], "needs a meta l4proto tcp"),
    ("inet", [nft.match(nft.meta("l4proto"), "tcp"), nft.match(nft.concat(
        nft.ip_field(4, "daddr"), nft.payload("th", "dport")), nft.ref("s")), nft.reject("tcp reset")], "write tcp"),
    ("inet", [nft.match(nft.ip_field(4, "saddr"), "10.0.0.0/8")], "prefix"),
    ("inet", [nft.match(nft.ip_field(4, "saddr"), "fd00::1")], "IPv4"),
    ("inet", [nft.match(nft.payload("tcp", "dport"), nft.set_of([80, "http"]))], "port"),
    ("inet", [nft.match(nft.ct("state"), ["established", "sleepy"], "in")], "ct state"),
])
def test_rules_must_be_in_their_listed_form(family, expr, why):
    with pytest.raises(nft.InvalidObject, match=why):
        nft.Transaction(family, "t").add(nft.Rule("c", expr))


@pytest.mark.parametrize("family,expr", [
    ("inet", [nft.match(nft.meta("l4proto"), "tcp"), nft.counter(), nft.match(nft.payload("tcp", "dport"), 53)]),
    ("inet", [nft.match(nft.ip_field(4, "protocol"), "tcp"), nft.match(nft.payload("tcp", "dport"), 80)]),
    ("inet", [nft.match(nft.meta("l4proto"), nft.set_of(["tcp", "udp"])), nft.match(nft.payload("th", "dport"), 53)]),
    ("inet", [nft.match(nft.meta("nfproto"), "ipv4"), nft.match(nft.payload("tcp", "dport"), 80),
              nft.dnat("10.0.0.1", 80, "ip")]),
    ("inet", [nft.match(nft.payload("tcp", "dport"), 80), nft.reject("tcp reset")]),
    ("ip", [nft.reject("tcp reset")]),
])
def test_rules_nft_lists_as_written_pass(family, expr):
    nft.Transaction(family, "t").add(nft.Rule("c", expr))


def test_dynamic_sets_travel_with_their_update_rule():
    """1.0.6's JSON cannot carry `dynamic`: nft infers it from an update rule in the same batch."""
    tx = nft.Transaction(*T).add(AFF).add(nft.Chain("ep")).add(UPDATE)
    assert "dynamic" not in str(tx.commands)
    with pytest.raises(nft.InvalidObject, match="same transaction as a rule"):
        nft.Transaction(*T).add(AFF).render()
    plain = nft.Set("aff", "ipv4_addr", flags=["timeout"], timeout=10800)
    with pytest.raises(nft.InvalidObject, match="declare it with flags dynamic"):
        nft.Transaction(*T).add(plain).add(UPDATE).render()
    nft.Transaction(*T).add(UPDATE).render()          # the set exists already: nothing to infer
