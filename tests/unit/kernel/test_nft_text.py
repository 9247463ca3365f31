"""JSON expressions and objects printed as nft 1.0.6 lists them.

Every expected string here is what `nft list` printed on this machine class
for the same JSON (the netns golden test re-proves a representative set).
"""

from __future__ import annotations

import pytest

from tulle.kernel import nft
from tulle.kernel.nft import text

IP4S, IP4D = nft.ip_field(4, "saddr"), nft.ip_field(4, "daddr")
L4 = nft.meta("l4proto")
STATE = nft.ct("state")
MARK = nft.meta("mark")
SERVICE_KEY = nft.concat(IP4D, L4, nft.payload("th", "dport"))


@pytest.mark.parametrize("family,expr,want", [
    ("inet", [nft.match(STATE, ["related", "established"], "in"), nft.accept()], "ct state established,related accept"),
    ("inet", [nft.match(STATE, "established"), nft.accept()], "ct state == established accept"),
    ("inet", [nft.match(STATE, "established", "in"), nft.accept()], "ct state established accept"),
    ("inet", [nft.match(STATE, nft.set_of(["related", "established"])), nft.accept()],
     "ct state { established, related } accept"),
    ("inet", [nft.match(STATE, ["new", "invalid", "untracked", "related", "established"], "in"), nft.drop()],
     "ct state invalid,established,related,new,untracked drop"),
    ("inet", [nft.match(nft.ct("status"), "dnat", "in"), nft.accept()], "ct status dnat accept"),
    ("inet", [nft.match(STATE, "invalid", "!="), nft.accept()], "ct state != invalid accept"),
    ("inet", [nft.match(nft.ct("mark"), 5), nft.mangle(nft.ct("mark"), 7)],
     "ct mark 0x00000005 ct mark set 0x00000007"),
    ("inet", [nft.match(MARK, 0x4000), nft.mangle(MARK, nft.bit_xor(MARK, 0x4000))],
     "meta mark 0x00004000 meta mark set meta mark ^ 0x00004000"),
    ("inet", [nft.match(nft.bit_and(MARK, 0x4000), 0), nft.ret()], "meta mark & 0x00004000 == 0x00000000 return"),
    ("inet", [nft.match(nft.bit_and(MARK, 0x4000), 0, "!="), nft.ret()], "meta mark & 0x00004000 != 0x00000000 return"),
    ("inet", [nft.set_mark(0x4000, mask=0x4000)], "meta mark set meta mark | 0x00004000"),
    ("inet", [nft.match(IP4S, "1.1.1.1"), nft.match(nft.payload("tcp", "dport"), 80), nft.accept()],
     "ip saddr 1.1.1.1 tcp dport 80 accept"),
    ("inet", [nft.match(L4, nft.set_of(["udp", "tcp"])),
              nft.match(nft.payload("th", "dport"), nft.range_of(1000, 2000)), nft.accept()],
     "meta l4proto { tcp, udp } th dport 1000-2000 accept"),
    ("inet", [nft.match(L4, 6), nft.accept()], "meta l4proto tcp accept"),
    ("inet", [nft.match(nft.meta("iifname"), "eth0"), nft.match(nft.meta("oifname"), "veth*"), nft.accept()],
     'iifname "eth0" oifname "veth*" accept'),
    ("inet", [nft.match(nft.meta("nfproto"), "ipv4"), nft.accept()], "meta nfproto ipv4 accept"),
    ("inet", [nft.match(IP4D, nft.set_of(["10.0.0.1", nft.prefix("10.1.0.0/16"),
                                           nft.range_of("10.2.0.1", "10.2.0.9")])), nft.counter(), nft.drop()],
     "ip daddr { 10.0.0.1, 10.1.0.0/16, 10.2.0.1-10.2.0.9 } counter packets 0 bytes 0 drop"),
    ("inet", [nft.match(nft.payload("tcp", "dport"), nft.set_of([443, 80, 22])), nft.accept()],
     "tcp dport { 22, 80, 443 } accept"),
    ("inet", [nft.match(IP4S, nft.set_of(["10.0.0.9", nft.prefix("9.0.0.0/8"), "1.1.1.1"])), nft.accept()],
     "ip saddr { 1.1.1.1, 9.0.0.0/8, 10.0.0.9 } accept"),
    ("inet", [nft.match(IP4D, nft.ref("s4"), "!="), nft.accept()], "ip daddr != @s4 accept"),
    ("inet", [nft.match(nft.concat(IP4S, nft.payload("tcp", "dport")), nft.ref("cc")), nft.accept()],
     "ip saddr . tcp dport @cc accept"),
    ("inet", [nft.match(nft.concat(IP4S, nft.payload("tcp", "dport")),
                        nft.set_of([nft.concat("1.1.1.1", 80), nft.concat("1.1.1.2", 443)])), nft.accept()],
     "ip saddr . tcp dport { 1.1.1.1 . 80, 1.1.1.2 . 443 } accept"),
    ("inet", [nft.vmap(SERVICE_KEY, nft.ref("svc"))], "ip daddr . meta l4proto . th dport vmap @svc"),
    ("inet", [nft.vmap(nft.numgen(3), [(2, nft.drop()), (0, nft.goto("a")), (1, nft.jump("a"))])],
     "numgen random mod 3 vmap { 0 : goto a, 1 : jump a, 2 : drop }"),
    ("inet", [nft.vmap(nft.numgen(2, offset=5, mode="inc"), {5: nft.goto("a"), 6: nft.goto("a")})],
     "numgen inc mod 2 offset 5 vmap { 5 : goto a, 6 : goto a }"),
    ("inet", [nft.vmap(L4, {"udp": nft.jump("d"), "tcp": nft.goto("d")})],
     "meta l4proto vmap { tcp : goto d, udp : jump d }"),
    ("inet", [nft.update_set("aff", IP4S, timeout=10800)], "update @aff { ip saddr timeout 3h }"),
    ("inet", [nft.add_to_set("aff", IP4S)], "add @aff { ip saddr }"),
    ("inet", [nft.update_set("affc", nft.concat(IP4S, nft.payload("tcp", "dport")))],
     "update @affc { ip saddr . tcp dport }"),
    ("inet", [nft.match(L4, "tcp"), nft.dnat("10.0.0.1", 8080, "ip")], "meta l4proto tcp dnat ip to 10.0.0.1:8080"),
    ("ip", [nft.match(L4, "tcp"), nft.dnat("10.0.0.1", 8080)], "meta l4proto tcp dnat to 10.0.0.1:8080"),
    ("inet", [nft.dnat("10.0.0.1", family="ip")], "dnat ip to 10.0.0.1"),
    ("inet", [nft.match(nft.meta("nfproto"), "ipv6"), nft.match(L4, "tcp"), nft.dnat("fd00::1", 80, "ip6")],
     "meta nfproto ipv6 meta l4proto tcp dnat ip6 to [fd00::1]:80"),
    ("ip", [nft.snat("1.2.3.4")], "snat to 1.2.3.4"),
    ("inet", [nft.snat("1.2.3.4", family="ip")], "snat ip to 1.2.3.4"),
    ("inet", [nft.masquerade()], "masquerade"),
    ("inet", [nft.masquerade(fully_random=True)], "masquerade fully-random"),
    ("inet", [nft.reject()], "reject"),
    ("ip", [nft.reject()], "reject"),
    ("inet", [nft.match(L4, "tcp"), nft.reject("tcp reset")], "meta l4proto tcp reject with tcp reset"),
    ("ip", [nft.reject("tcp reset")], "reject with tcp reset"),
    ("inet", [nft.reject("icmpx", "port-unreachable")], "reject"),
    ("inet", [nft.reject("icmpx", "admin-prohibited")], "reject with icmpx admin-prohibited"),
    ("inet", [nft.reject("icmp", "port-unreachable")], "reject with icmp port-unreachable"),
    ("ip", [nft.reject("icmp", "port-unreachable")], "reject"),
    ("ip", [nft.reject("icmp", "admin-prohibited")], "reject with icmp admin-prohibited"),
    ("inet", [nft.log(prefix="hi: ")], 'log prefix "hi: "'),
    ("inet", [nft.log(group=2)], "log group 2"),
    ("inet", [nft.log(prefix="p", group=2)], 'log prefix "p" group 2'),
    ("inet", [nft.log()], "log"),
    ("inet", [nft.log(prefix="p", level="info")], 'log prefix "p" level info'),
    ("inet", [nft.log(level="warn")], "log"),
    ("inet", [nft.limit(10)], "limit rate 10/second"),
    ("inet", [nft.limit(10, "minute", burst=20)], "limit rate 10/minute burst 20 packets"),
    ("inet", [nft.limit(10, burst=5, over=True), nft.drop()], "limit rate over 10/second drop"),
    ("inet", [nft.limit(1, unit="mbytes")], "limit rate 1 mbytes/second"),
    ("inet", [nft.limit(100, burst=200, unit="kbytes")], "limit rate 100 kbytes/second burst 200 kbytes"),
    ("inet", [nft.match(nft.fib("type", ["daddr"]), "local"), nft.jump("a")], "fib daddr type local jump a"),
    ("inet", [nft.match(nft.fib("type", ["iif", "daddr"]), "local"), nft.ret()], "fib daddr . iif type local return"),
    ("inet", [nft.match(nft.fib("oif", ["saddr", "iif"]), False), nft.drop()], "fib saddr . iif oif missing drop"),
    ("inet", [nft.match(nft.payload("tcp", "dport"), 1024, ">="), nft.accept()], "tcp dport >= 1024 accept"),
    ("bridge", [nft.match(nft.meta("iifname"), "veth0"), nft.match(nft.payload("ether", "saddr"), "02:AA:bb:cc:dd:ee",
                                                                     "!="), nft.counter(), nft.drop()],
     'iifname "veth0" ether saddr != 02:aa:bb:cc:dd:ee counter packets 0 bytes 0 drop'),
])
def test_rule_text(family, expr, want):
    nft.Transaction(family, "t").add(nft.Rule("c", expr))       # what the helpers build is also accepted
    assert text.rule_text(nft.Rule("c", expr), family) == want


def test_rule_comment_comes_last():
    assert text.rule_text(nft.Rule("c", [nft.accept()], comment="tag:1"), "inet") == 'accept comment "tag:1"'


@pytest.mark.parametrize("family,hook,prio,want", [
    ("ip", "prerouting", -110, "dstnat - 10"), ("ip", "prerouting", -111, "-111"), ("ip", "output", -100, "-100"),
    ("ip", "postrouting", 110, "srcnat + 10"), ("ip", "forward", -300, "raw"), ("ip", "forward", -145, "mangle + 5"),
    ("ip", "forward", 50, "security"), ("ip", "forward", 10, "filter + 10"), ("ip", "forward", 11, "11"),
    ("ip", "output", -150, "mangle"), ("ip", "postrouting", 200, "200"), ("inet", "input", 0, "filter"),
    ("bridge", "prerouting", -300, "dstnat"), ("bridge", "forward", -200, "filter"), ("bridge", "output", 100, "out"),
    ("bridge", "postrouting", 300, "srcnat"), ("bridge", "input", -190, "filter + 10"),
])
def test_priority_text(family, hook, prio, want):
    assert text.priority_text(family, hook, prio) == want


def dump(*objects: nft.Set | nft.Map | nft.Chain, family: str = "ip") -> str:
    fake = nft.FakeNft()
    tx = nft.Transaction(family, "p").add(nft.Table(family, "p"))
    for o in objects:
        tx.add(o)
    fake.run(tx)
    return fake.dump(family, "p")


def test_set_declarations_as_nft_prints_them():
    assert dump(nft.Set("a", "ipv4_addr", timeout=3600), nft.Set("b", "ipv4_addr", flags=["timeout"]),
                nft.Set("d", "ipv4_addr", flags=["constant"], elements=["1.1.1.1"]),
                nft.Set("m", "ipv4_addr", flags=["timeout"], size=1000, timeout=10800, comment="dropped by 1.0.6"),
                nft.Map("q", "mark", "verdict", flags=["constant"],
                        elements=[(4, {"continue": None}), (1, nft.accept()), (3, nft.ret()), (2, nft.drop())])) == (
        "table ip p {\n"
        "\tset a {\n\t\ttype ipv4_addr\n\t\ttimeout 1h\n\t}\n\n"
        "\tset b {\n\t\ttype ipv4_addr\n\t\tflags timeout\n\t}\n\n"
        "\tset d {\n\t\ttype ipv4_addr\n\t\tflags constant\n\t\telements = { 1.1.1.1 }\n\t}\n\n"
        "\tset m {\n\t\ttype ipv4_addr\n\t\tsize 1000\n\t\ttimeout 3h\n\t}\n\n"
        "\tmap q {\n\t\ttype mark : verdict\n\t\tflags constant\n\t\telements = { 0x00000001 : accept, "
        "0x00000002 : drop, 0x00000003 : return, 0x00000004 : continue }\n\t}\n"
        "}\n")


def test_elements_sort_and_wrap_as_nft_does():
    text_ = dump(nft.Set("hs", "ipv4_addr", elements=["10.0.0.9", "10.0.0.1", "10.0.0.3", "10.0.0.2", "9.9.9.9"]),
                 nft.Set("ports", "inet_service", elements=[80, 443, 22, 53, 8080, 9090, 1]),
                 nft.Set("e", "ifname", elements=["eth0", "veth1", "ab", "ba", "lo"]),
                 nft.Set("f", "mark", elements=[0x10, 0x2, 0x100, 256000]),
                 nft.Set("g", "inet_proto", elements=["udp", "tcp", "sctp", "icmp"]),
                 nft.Set("h", "ipv4_addr . inet_service",
                         elements=[("10.0.0.1", 443), ("10.0.0.2", 80), ("10.0.0.10", 80), ("9.0.0.1", 80)]),
                 nft.Set("k", "ipv6_addr", flags=["interval"], elements=["fd00::/64", "::1", "fe80::/10"]),
                 nft.Set("pp", "ipv4_addr . inet_service", flags=["interval"],
                         elements=[("10.0.0.0/8", 80), ("1.0.0.0/8", "1-100"), ("5.5.5.5", 22)]))
    assert "elements = { 9.9.9.9, 10.0.0.1,\n\t\t\t     10.0.0.2, 10.0.0.3,\n\t\t\t     10.0.0.9 }" in text_
    assert "elements = { 1, 22, 53, 80, 443,\n\t\t\t     8080, 9090 }" in text_
    assert 'elements = { "ba",\n\t\t\t     "ab",\n\t\t\t     "lo",\n\t\t\t     "eth0",\n\t\t\t     "veth1" }' in text_
    assert "elements = { 0x00000002, 0x00000010, 0x00000100, 0x0003e800 }" in text_
    assert "elements = { icmp, tcp, udp, sctp }" in text_
    assert ("elements = { 9.0.0.1 . 80,\n\t\t\t     10.0.0.2 . 80,\n\t\t\t     10.0.0.10 . 80,\n"
            "\t\t\t     10.0.0.1 . 443 }") in text_          # little-endian registers: the port weighs most
    assert "elements = { ::1,\n\t\t\t     fd00::/64,\n\t\t\t     fe80::/10 }" in text_
    assert "elements = { 10.0.0.0/8 . 80,\n\t\t\t     1.0.0.0/8 . 1-100,\n\t\t\t     5.5.5.5 . 22 }" in text_


def test_chains_print_type_hook_priority_and_policy():
    assert dump(nft.Chain("c1", type="nat", hook="prerouting", priority=-110),
                nft.Chain("c2", type="filter", hook="forward", priority="filter - 10", policy="drop"),
                nft.Chain("plain", comment="dropped by 1.0.6"), family="inet") == (
        "table inet p {\n"
        "\tchain c1 {\n\t\ttype nat hook prerouting priority dstnat - 10; policy accept;\n\t}\n\n"
        "\tchain c2 {\n\t\ttype filter hook forward priority filter - 10; policy drop;\n\t}\n\n"
        "\tchain plain {\n\t}\n"
        "}\n")


def test_empty_table_and_ruleset():
    fake = nft.FakeNft()
    assert fake.dump() == ""
    fake.run(nft.Transaction("ip", "empty").add(nft.Table("ip", "empty", comment="dropped")))
    fake.run(nft.Transaction("inet", "other").add(nft.Table("inet", "other")))
    assert fake.dump() == "table ip empty {\n}\ntable inet other {\n}\n"
    assert fake.dump("inet") == "table inet other {\n}\n"


def test_unknown_expressions_are_refused_not_misprinted():
    with pytest.raises(nft.InvalidObject, match="cannot print"):
        text.rule_text(nft.Rule("c", [{"notrack": None}]), "inet")
