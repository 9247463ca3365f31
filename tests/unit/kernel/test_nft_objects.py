"""Typed nft objects check themselves when made, and the Transaction checks the rest."""

from __future__ import annotations

import pytest

from tulle.errors import ConfigError
from tulle.kernel import nft

SVC = nft.Map("svc", "ipv4_addr . inet_proto . inet_service", "verdict")


@pytest.mark.parametrize("name", ["tulle-portmap", "pm-26026bd18b7cde68", "_x", ".x", "a/b.c_d-e", "a" * 255])
def test_names_nft_accepts(name):
    assert nft.Chain(name).name == name


@pytest.mark.parametrize("name", ["", "1abc", "-x", "a b", 'a"b', "a" * 256, "é", None])
def test_names_nft_refuses(name):
    with pytest.raises(nft.InvalidObject, match="name"):
        nft.Chain(name)


def test_comments_fit_127_bytes_without_quotes():
    assert nft.Rule("c", [nft.accept()], comment="x" * 127).comment == "x" * 127
    for bad in ("x" * 128, "é" * 64, 'say "hi"', "two\nlines"):
        with pytest.raises(nft.InvalidObject, match="comment"):
            nft.Rule("c", [nft.accept()], comment=bad)
    with pytest.raises(nft.InvalidObject):
        nft.Table("inet", "t", comment="x" * 200)


def test_invalid_object_is_a_config_and_value_error():
    with pytest.raises(ConfigError):
        nft.Table("ipv5", "t")
    with pytest.raises(ValueError, match="family"):
        nft.Table("ipv5", "t")


def test_base_and_regular_chains():
    assert not nft.Chain("x").base
    assert nft.Chain("pre", type="nat", hook="prerouting", priority="dstnat").base
    for kw, why in ((dict(policy="drop"), "need a type"), (dict(hook="input"), "need a type"),
                    (dict(type="filter", hook="input"), "hook and a priority"),
                    (dict(type="nat", hook="forward", priority=0), "cannot hook"),
                    (dict(type="route", hook="input", priority=0), "cannot hook"),
                    (dict(type="bogus", hook="input", priority=0), "unknown chain type"),
                    (dict(type="filter", hook="input", priority=0, policy="reject"), "policy"),
                    (dict(type="filter", hook="input", priority="filter plus 3"), "priority")):
        with pytest.raises(nft.InvalidObject, match=why):
            nft.Chain("c", **kw)


@pytest.mark.parametrize("family,hook,priority,value", [
    ("inet", "prerouting", "dstnat", -100), ("ip", "prerouting", "dstnat - 10", -110),
    ("ip6", "postrouting", "srcnat+5", 105), ("inet", "forward", "filter - 10", -10),
    ("inet", "input", "security", 50), ("inet", "output", "raw", -300), ("inet", "forward", "mangle + 3", -147),
    ("bridge", "prerouting", "dstnat", -300), ("bridge", "forward", "filter", -200),
    ("bridge", "output", "out", 100), ("bridge", "postrouting", "srcnat", 300), ("inet", "output", -100, -100),
])
def test_priority_names_per_family_and_hook(family, hook, priority, value):
    kind = "nat" if "nat" in str(priority) and family != "bridge" else "filter"
    chain = nft.Chain("c", type=kind, hook=hook, priority=priority)
    chain.check_family(family)
    assert chain.priority_value(family) == value


@pytest.mark.parametrize("family,kind,hook,priority,why", [
    ("inet", "nat", "output", "dstnat", "not valid on hook output"),      # nft 1.0.6: prerouting only
    ("inet", "nat", "input", "srcnat", "not valid on hook input"),
    ("inet", "filter", "input", "out", "not a standard name"),
    ("arp", "filter", "forward", 0, "does not exist here"),
    ("bridge", "nat", "prerouting", 0, "no nat chains"),
    ("netdev", "filter", "input", 0, "does not exist here"),
])
def test_family_dependent_checks_when_added(family, kind, hook, priority, why):
    chain = nft.Chain("c", type=kind, hook=hook, priority=priority)
    with pytest.raises(nft.InvalidObject, match=why):
        nft.Transaction(family, "t").add(chain)


def test_sets_normalise_types_flags_and_keys():
    s = nft.Set("s", "ipv4_addr . inet_service", flags=["timeout", "interval"], timeout=60,
                elements=[("10.0.0.0/8", 80), ("10.1.0.1-10.1.0.9", "1000-2000")])
    assert s.type == ("ipv4_addr", "inet_service") and s.flags == ("interval", "timeout")
    assert s.elements == (("10.0.0.0/8", 80), ("10.1.0.1-10.1.0.9", "1000-2000"))
    assert nft.Set("t", ["ipv4_addr"], timeout=5).flags == ("timeout",)     # a timeout implies the flag
    aligned = nft.Set("a", "ipv4_addr", flags=["interval"], elements=["172.16.0.0-172.16.1.255", "1.2.3.4/32"])
    assert aligned.elements == ("172.16.0.0/23", "1.2.3.4")                 # as nft lists them
    assert nft.Set("p", "inet_proto", elements=[6, "udp", "icmpv6"]).elements == ("tcp", "udp", "ipv6-icmp")


@pytest.mark.parametrize("kw,why", [
    (dict(type="ipv4_address"), "unknown type"),
    (dict(type="verdict"), "unknown type"),
    (dict(type="ipv4_addr", flags=["fast"]), "unknown flags"),
    (dict(type="ipv4_addr", flags=["constant", "dynamic"]), "constant"),
    (dict(type="ipv4_addr", flags=["constant"], timeout=3), "constant"),
    (dict(type="mark", flags=["interval"]), "cannot hold intervals"),
    (dict(type="ipv4_addr", timeout=0), "timeout"),
    (dict(type="ipv4_addr", size=-1), "size"),
    (dict(type="ipv4_addr", elements=["10.0.0.0/8"]), "interval flag"),
    (dict(type="ipv4_addr", elements=["10.0.0.1/8"]), "host bits"),
    (dict(type="ipv4_addr", elements=["fd00::1"]), "IPv4"),
    (dict(type="ipv4_addr . inet_service", elements=[("10.0.0.1",)]), "2 parts"),
    (dict(type="ipv4_addr . inet_service", elements=["10.0.0.1"]), "2 parts"),
    (dict(type="inet_service", elements=[70000]), "port"),
    (dict(type="inet_service", elements=[("1", 2)]), "one part"),
    (dict(type="inet_proto", elements=["tcpp"]), "protocol"),
    (dict(type="mark", elements=[-1]), "mark"),
    (dict(type="ifname", elements=["a-very-long-interface"]), "interface name"),
    (dict(type="ether_addr", elements=["02:aa:bb"]), "MAC"),
])
def test_sets_refuse_what_nft_would(kw, why):
    with pytest.raises(nft.InvalidObject, match=why):
        nft.Set("s", **kw)


def test_map_values_match_the_value_type():
    m = nft.Map("m", "ipv4_addr", "ipv4_addr . inet_service", elements={"10.96.0.1": ("10.244.1.2", 8080)})
    assert m.value == ("ipv4_addr", "inet_service") and m.elements == (("10.96.0.1", ("10.244.1.2", 8080)),)
    assert nft.Map("v", "mark", "verdict", elements=[(1, nft.accept()), (2, nft.goto("x"))]).verdict
    for value, why in ((nft.counter(), "verdict"), ({"jump": {"target": "bad name"}}, "name"), ("accept", "verdict")):
        with pytest.raises(nft.InvalidObject, match=why):
            nft.Map("v", "mark", "verdict", elements=[(1, value)])
    with pytest.raises(nft.InvalidObject, match="2 parts"):
        nft.Map("m", "ipv4_addr", "ipv4_addr . inet_service", elements={"10.96.0.1": "10.244.1.2"})


def test_elements_are_checked_against_their_set():
    e = nft.Element(SVC, ("10.96.0.10", 6, 53), nft.goto("svc-dns"))
    assert e.key == ("10.96.0.10", "tcp", 53)
    with pytest.raises(nft.InvalidObject, match="3 parts"):
        nft.Element(SVC, ("10.96.0.10", "tcp"), nft.goto("x"))
    with pytest.raises(nft.InvalidObject, match="verdict"):
        nft.Element(SVC, ("10.96.0.10", "tcp", 53), "10.0.0.1")
    with pytest.raises(nft.InvalidObject, match="needs a value"):
        nft.Transaction("ip", "t").add(nft.Element(SVC, ("10.96.0.10", "tcp", 53)))
    nft.Transaction("ip", "t").delete(nft.Element(SVC, ("10.96.0.10", "tcp", 53)))   # a key names it
    s = nft.Set("s", "ipv4_addr")
    with pytest.raises(nft.InvalidObject, match="no value"):
        nft.Element(s, "10.0.0.1", nft.accept())
    with pytest.raises(nft.InvalidObject, match="timeout flag"):
        nft.Element(s, "10.0.0.1", timeout=30)
    assert nft.Element(nft.Set("t", "ipv4_addr", flags=["timeout"]), "10.0.0.1", timeout=30).timeout == 30
    with pytest.raises(nft.InvalidObject, match="Set or Map"):
        nft.Element("s", "10.0.0.1")


def test_rules():
    assert nft.Rule(nft.Chain("c"), [nft.accept()]).chain == "c"
    for kw, why in ((dict(expr="accept"), "list of statements"), (dict(expr=[{"a": 1, "b": 2}]), "list of statements"),
                    (dict(handle=0), "handle"), (dict(handle=True), "handle")):
        with pytest.raises(nft.InvalidObject, match=why):
            nft.Rule("c", **kw)


def test_helpers_refuse_what_tulle_cannot_render():
    for call in (lambda: nft.payload("ip", "ttl"), lambda: nft.meta("cpu"), lambda: nft.ct("zone"),
                 lambda: nft.fib("type", ["dport"]), lambda: nft.numgen(0), lambda: nft.concat(nft.meta("mark")),
                 lambda: nft.reject("icmp"), lambda: nft.reject("tcp reset", "x"), lambda: nft.log(level="loud"),
                 lambda: nft.log(group=1, level="info"), lambda: nft.limit(0), lambda: nft.limit(1, "fortnight"),
                 lambda: nft.dnat(None), lambda: nft.mangle(nft.meta("l4proto"), 1), lambda: nft.match(1, 2, "=~"),
                 lambda: nft.ref("bad name"), lambda: nft.jump("1x")):
        with pytest.raises(nft.InvalidObject):
            call()
