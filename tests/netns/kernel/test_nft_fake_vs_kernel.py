"""Golden: FakeNft holds, lists and prints exactly what the kernel does for the same transactions.

Representative rulesets — a kube-proxy-like services table (verdict map on
ipv4_addr . inet_proto . inet_service, numgen vmap, dnat, masquerade marks, a
dynamic timeout set, reject, counters), a NetworkPolicy-like table (sets of
prefixes and ranges, concatenations, element comments, log, limit) and a
bridge table — go through libnftables into a private netns and through the
fake; `nft list table` text and `nft -j list table` JSON must be equal, also
after incremental changes addressed by handle and after transactions that
must fail in both.
"""

from __future__ import annotations

import errno

import pytest

from tulle.errors import KernelError
from tulle.kernel import netns, nft

pytestmark = pytest.mark.netns

SVC, POL, BR = ("ip", "tulle-services"), ("inet", "tulle-policy"), ("bridge", "tulle-macspoof")
MASQ_BIT = 0x4000
SERVICE_IPS = nft.Map("service-ips", "ipv4_addr . inet_proto . inet_service", "verdict")
NO_ENDPOINTS = nft.Set("no-endpoints", ("ipv4_addr", "inet_proto", "inet_service"))
AFFINITY = nft.Set("affinity-svc-web", "ipv4_addr", flags=["dynamic", "timeout"], timeout=10800)
POD_CIDRS = nft.Set("pod-cidrs", "ipv4_addr", flags=["interval"], comment="pods and services",
                    elements=["10.244.0.0/16", "10.96.0.0/12", "192.168.5.7", "172.16.0.0-172.16.1.255",
                              "10.0.0.1-10.0.0.5"])
ALLOWED = nft.Set("allowed", "ipv4_addr . inet_proto . inet_service")
PORTS = nft.Set("ports", "inet_service", elements=[8080, 443, 22, 53, 80, 9090, 1])
NETS6 = nft.Set("nets6", "ipv6_addr", flags=["interval"], elements=["fd00::/64", "::1", "fe80::/10"])
IFACES = nft.Set("ifaces", "ifname", elements=["veth1", "eth0", "ab", "ba"])
POLICY = nft.Map("pod-policy", "ipv4_addr", "verdict")
MARKS = nft.Map("marks", "ipv4_addr", "mark", elements={"10.244.1.2": 1, "10.244.1.3": 0x4000})


def ip(field: str):
    return nft.ip_field(4, field)


def endpoint_rules(chain: str, addr: str, port: int, proto: str) -> list[nft.Rule]:
    return [
        nft.Rule(chain, [nft.match(ip("saddr"), addr), nft.jump("mark-for-masquerade")]),
        nft.Rule(chain, [nft.update_set(AFFINITY.name, ip("saddr"))]),
        nft.Rule(chain, [nft.match(nft.meta("l4proto"), proto), nft.dnat(addr, port)], comment=f"{addr}:{port}"),
    ]


def services(first: bool = True) -> nft.Transaction:
    """The whole services table; `first`: also the dynamic set, which can be added only once."""
    tx = nft.Transaction(*SVC)
    tx.add(nft.Table(*SVC, comment="services"))
    for s in (SERVICE_IPS, NO_ENDPOINTS, MARKS) + ((AFFINITY,) if first else ()):
        tx.add(s)
    for name in ("services", "masquerading", "mark-for-masquerade", "svc-web", "ep-web-a", "ep-web-b", "svc-dns"):
        tx.add(nft.Chain(name, comment=f"chain {name}"))
    tx.add(nft.Chain("prerouting", type="nat", hook="prerouting", priority="dstnat", policy="accept"))
    tx.add(nft.Chain("output", type="nat", hook="output", priority=-100))
    tx.add(nft.Chain("postrouting", type="nat", hook="postrouting", priority="srcnat + 10"))
    tx.add(nft.Chain("filter-forward", type="filter", hook="forward", priority="filter - 10"))
    key = nft.concat(ip("daddr"), nft.meta("l4proto"), nft.payload("th", "dport"))
    tx.add(nft.Rule("services", [nft.vmap(key, nft.ref(SERVICE_IPS.name))]))
    for chain in ("prerouting", "output"):
        tx.add(nft.Rule(chain, [nft.jump("services")]))
    tx.add(nft.Rule("postrouting", [nft.jump("masquerading")]))
    tx.add(nft.Rule("masquerading", [nft.match(nft.bit_and(nft.meta("mark"), MASQ_BIT), 0), nft.ret()]))
    tx.add(nft.Rule("masquerading", [nft.mangle(nft.meta("mark"), nft.bit_xor(nft.meta("mark"), MASQ_BIT))]))
    tx.add(nft.Rule("masquerading", [nft.counter(), nft.masquerade(fully_random=True)]))
    tx.add(nft.Rule("mark-for-masquerade", [nft.set_mark(MASQ_BIT, mask=MASQ_BIT)]))
    tx.add(nft.Rule("svc-web", [nft.match(ip("saddr"), nft.ref(AFFINITY.name)), nft.goto("ep-web-a")]))
    tx.add(nft.Rule("svc-web", [nft.counter(), nft.vmap(nft.numgen(2), {1: nft.goto("ep-web-b"),
                                                                          0: nft.goto("ep-web-a")})]))
    for rule in endpoint_rules("ep-web-a", "10.244.1.2", 8080, "tcp") + endpoint_rules("ep-web-b", "10.244.2.7",
                                                                                       8080, "tcp"):
        tx.add(rule)
    tx.add(nft.Rule("svc-dns", [nft.vmap(nft.numgen(3, offset=1, mode="inc"), {
        1: nft.jump("ep-web-a"), 2: nft.goto("ep-web-b"), 3: nft.drop()})]))
    tx.add(nft.Rule("filter-forward", [nft.match(nft.ct("state"), ["invalid"], op="in"), nft.drop()]))
    tx.add(nft.Rule("filter-forward", [nft.match(key, nft.ref(NO_ENDPOINTS.name)), nft.match(nft.meta("l4proto"),
                                                                                            "udp"), nft.reject()]))
    tcp_key = nft.concat(ip("daddr"), nft.meta("l4proto"), nft.payload("tcp", "dport"))
    tx.add(nft.Rule("filter-forward", [nft.match(tcp_key, nft.ref(NO_ENDPOINTS.name)), nft.reject("tcp reset")]))
    tx.add(nft.Rule("filter-forward", [nft.match(ip("daddr"), nft.set_of([nft.prefix("10.96.0.128/25"), "10.96.0.1"])),
                                       nft.reject("icmp", "admin-prohibited")]))
    tx.add(nft.Rule("filter-forward", [nft.match(nft.meta("mark"), MASQ_BIT), nft.counter(), nft.accept()]))
    for vip, proto, port, chain in (("10.96.0.10", "udp", 53, "svc-dns"), ("10.96.0.10", "tcp", 53, "svc-dns"),
                                    ("10.96.0.1", "tcp", 443, "svc-web"), ("10.96.0.200", "tcp", 80, "svc-web")):
        tx.add(nft.Element(SERVICE_IPS, (vip, proto, port), nft.goto(chain)))
    tx.add(nft.Element(NO_ENDPOINTS, ("10.96.0.99", "tcp", 80)))
    tx.add(nft.Element(NO_ENDPOINTS, ("10.96.0.9", "udp", 8080), comment="svc/empty:dns"))
    return tx


def policy() -> nft.Transaction:
    tx = nft.Transaction(*POL)
    tx.add(nft.Table(*POL))
    for s in (POD_CIDRS, ALLOWED, PORTS, NETS6, IFACES, POLICY):
        tx.add(s)
    tx.add(nft.Chain("pol-a"))
    tx.add(nft.Chain("pol-b"))
    tx.add(nft.Chain("forward", type="filter", hook="forward", priority=-10, policy="drop"))
    tx.add(nft.Chain("input", type="filter", hook="input", priority="security"))
    tx.add(nft.Rule("forward", [nft.match(nft.ct("state"), ["related", "established"], op="in"), nft.accept()]))
    tx.add(nft.Rule("forward", [nft.vmap(ip("daddr"), nft.ref(POLICY.name))]))
    tx.add(nft.Rule("forward", [nft.limit(10, burst=20), nft.log(prefix="tulle-policy drop: ", group=2),
                                nft.counter(), nft.drop()]))
    tx.add(nft.Rule("pol-a", [nft.match(ip("saddr"), nft.ref(POD_CIDRS.name)),
                              nft.match(nft.concat(ip("daddr"), nft.meta("l4proto"), nft.payload("th", "dport")),
                                        nft.ref(ALLOWED.name)),
                              nft.counter(), nft.accept()], comment="ns/web:allow-dns"))
    tx.add(nft.Rule("pol-a", [nft.match(nft.payload("tcp", "dport"), nft.ref(PORTS.name)), nft.accept()]))
    tx.add(nft.Rule("pol-a", [nft.match(nft.ip_field(6, "saddr"), nft.ref(NETS6.name)), nft.accept()]))
    tx.add(nft.Rule("pol-a", [nft.match(nft.meta("iifname"), nft.ref(IFACES.name)), nft.ret()]))
    tx.add(nft.Rule("pol-a", [nft.match(nft.payload("udp", "dport"), nft.range_of(1000, 2000)),
                              nft.match(ip("saddr"), nft.ref(POD_CIDRS.name), "!="), nft.log(level="info"),
                              nft.drop()]))
    tx.add(nft.Rule("pol-b", [nft.match(nft.meta("l4proto"), "tcp"), nft.reject("tcp reset")]))
    tx.add(nft.Rule("pol-b", [nft.match(nft.ct("mark"), 1), nft.mangle(nft.ct("mark"), 2)]))
    tx.add(nft.Rule("pol-b", [nft.match(nft.meta("l4proto"), nft.set_of(["udp", "tcp"])),
                              nft.match(nft.payload("th", "dport"), 53), nft.accept()]))
    tx.add(nft.Rule("pol-b", [nft.match(nft.fib("type", ["daddr"]), "local"), nft.limit(1, "minute", over=True),
                              nft.reject("icmpx", "admin-prohibited")]))
    tx.add(nft.Rule("pol-b", [nft.match(nft.meta("nfproto"), "ipv6"), nft.limit(2, unit="mbytes"), nft.reject()]))
    tx.add(nft.Rule("pol-b", [nft.match(nft.payload("tcp", "dport"), 1024, ">="), nft.log(), nft.accept()]))
    tx.add(nft.Rule("pol-b", [nft.match(ip("saddr"), nft.ref(POD_CIDRS.name)), nft.reject()]))
    tx.add(nft.Rule("pol-b", [nft.reject()]))
    for key in (("10.244.3.9", "udp", 53), ("10.244.3.9", "tcp", 53), ("10.1.0.1", "tcp", 443), ("9.0.0.1", "tcp", 80)):
        tx.add(nft.Element(ALLOWED, key))
    tx.add(nft.Element(POLICY, "10.244.1.5", nft.jump("pol-a"), comment="ns/web/pod-1"))
    tx.add(nft.Element(POLICY, "10.244.1.4", nft.goto("pol-b")))
    tx.add(nft.Element(POLICY, "10.244.1.6", nft.accept()))
    return tx


def bridge() -> nft.Transaction:
    tx = nft.Transaction(*BR)
    tx.add(nft.Table(*BR))
    tx.add(nft.Chain("prerouting", type="filter", hook="prerouting", priority=-300, policy="accept"))
    tx.add(nft.Chain("forward", type="filter", hook="forward", priority="filter + 10"))
    tx.add(nft.Rule("prerouting", [nft.match(nft.meta("iifname"), "veth01234567"),
                                   nft.match(nft.payload("ether", "saddr"), "02:AA:BB:CC:DD:EE", "!="),
                                   nft.counter(), nft.drop()], comment="a08a0fcb:c1:eth0"))
    tx.add(nft.Rule("forward", [nft.match(nft.meta("oifname"), "veth*"), nft.accept()]))
    return tx


class Pair:
    """The kernel (in a private netns) and a FakeNft, driven alike."""

    def __init__(self, path: str) -> None:
        self.path, self.kernel, self.fake = path, nft.Libnft(), nft.FakeNft()

    def run(self, tx: nft.Transaction) -> None:
        netns.run_in(self.path, self.kernel.run, tx)
        self.fake.run(tx)

    def fails(self, tx: nft.Transaction, code: int) -> None:
        with pytest.raises(KernelError) as kernel_error:
            netns.run_in(self.path, self.kernel.run, tx)
        with pytest.raises(KernelError) as fake_error:
            self.fake.run(tx)
        assert (kernel_error.value.errno, fake_error.value.errno) == (code, code), (kernel_error.value,
                                                                                    fake_error.value)

    def assert_same(self, *tables: tuple[str, str]) -> None:
        for family, table in tables:
            assert self.fake.dump(family, table) == netns.run_in(self.path, self.kernel.dump, family, table)
            want = netns.run_in(self.path, self.kernel.list_table, family, table)
            assert self.fake.list_table(family, table)[1:] == want[1:]
        assert self.fake.dump() == netns.run_in(self.path, self.kernel.dump)

    def rules(self, table: tuple[str, str], chain: str) -> list[nft.Rule]:
        return nft.rules(self.fake.list_table(*table), chain)


@pytest.fixture
def pair(make_netns) -> Pair:
    return Pair(make_netns("nft"))


def test_fake_lists_and_prints_what_the_kernel_does(pair):
    for tx in (services(), policy(), bridge()):
        pair.run(tx)
    pair.assert_same(SVC, POL, BR)
    text = pair.fake.dump(*SVC)
    assert "type nat hook prerouting priority dstnat; policy accept;" in text
    assert "ip daddr . meta l4proto . th dport vmap @service-ips" in text
    assert "numgen random mod 2 vmap { 0 : goto ep-web-a, 1 : goto ep-web-b }" in text


def test_incremental_changes_by_handle(pair):
    for tx in (services(), policy()):
        pair.run(tx)
    web_a = pair.rules(SVC, "ep-web-a")
    tx = nft.Transaction(*SVC)
    tx.delete(nft.Element(SERVICE_IPS, ("10.96.0.200", "tcp", 80)))
    tx.add(nft.Element(SERVICE_IPS, ("10.96.0.201", "tcp", 80), nft.goto("svc-web")))
    tx.flush(nft.Chain("svc-dns"))
    tx.add(nft.Rule("svc-dns", [nft.goto("ep-web-b")]))
    tx.replace(nft.Rule("ep-web-a", [nft.match(nft.meta("l4proto"), "tcp"), nft.dnat("10.244.1.2", 8443)],
                        handle=web_a[2].handle))
    tx.insert(nft.Rule("ep-web-a", [nft.counter()]))
    tx.insert(nft.Rule("ep-web-a", [nft.log(prefix="before-update ")], handle=web_a[1].handle))
    tx.insert(nft.Rule("ep-web-a", [nft.log(prefix="before-mark ")], handle=web_a[0].handle))
    tx.add(nft.Rule("ep-web-a", [nft.log(prefix="last ")]))
    tx.delete(web_a[1])
    tx.add(nft.Chain("unused"))
    tx.delete(nft.Element(MARKS, "10.244.1.3"))
    tx.add(nft.Element(MARKS, "10.244.1.9", 7))
    pair.run(tx)
    tx = nft.Transaction(*POL)
    tx.delete(nft.Element(POD_CIDRS, "10.96.0.0/12"))
    tx.add(nft.Element(POD_CIDRS, "10.96.0.0/13"))
    tx.flush(ALLOWED)
    tx.add(nft.Element(ALLOWED, ("10.244.9.9", "udp", 5353)))
    tx.delete(nft.Element(POLICY, "10.244.1.6"))
    tx.delete(nft.Rule("pol-b", handle=pair.rules(POL, "pol-b")[0].handle))
    pair.run(tx)
    pair.run(nft.Transaction(*SVC).delete(nft.Chain("unused")))
    pair.assert_same(SVC, POL)
    # a resync of the same state adds nothing new but the rules (chains are not flushed here)
    pair.run(services(first=False))
    pair.assert_same(SVC)


@pytest.mark.parametrize("table,op,code", [
    (SVC, lambda tx: tx.delete(nft.Chain("ep-web-b")), errno.EBUSY),      # a vmap element and rules jump there
    (SVC, lambda tx: tx.delete(nft.Chain("svc-dns")), errno.EBUSY),       # named by the service map
    (SVC, lambda tx: tx.delete(NO_ENDPOINTS), errno.EBUSY),              # a rule looks it up
    (SVC, lambda tx: tx.create(SERVICE_IPS), errno.EEXIST),
    (SVC, lambda tx: tx.create(nft.Chain("services")), errno.EEXIST),
    (SVC, lambda tx: tx.add(nft.Element(SERVICE_IPS, ("10.96.0.1", "tcp", 443), nft.drop())), errno.EEXIST),
    (SVC, lambda tx: tx.create(nft.Element(NO_ENDPOINTS, ("10.96.0.99", "tcp", 80))), errno.EEXIST),
    (SVC, lambda tx: tx.delete(nft.Element(NO_ENDPOINTS, ("10.96.0.98", "tcp", 80))), errno.ENOENT),
    # a dynamic set cannot be added again (1.0.6 JSON cannot state the flag), nor as not dynamic
    (SVC, lambda tx: tx.add(AFFINITY).add(nft.Rule("services", [nft.update_set(AFFINITY.name, ip("daddr"))])),
     errno.EEXIST),
    (SVC, lambda tx: tx.add(nft.Set(AFFINITY.name, "ipv4_addr", flags=["timeout"], timeout=10800)), errno.EEXIST),
    (SVC, lambda tx: tx.add(nft.Rule("services", [nft.jump("nowhere")])), errno.ENOENT),
    (SVC, lambda tx: tx.add(nft.Rule("nowhere", [nft.accept()])), errno.ENOENT),
    (SVC, lambda tx: tx.add(nft.Rule("services", [nft.match(ip("saddr"), nft.ref("nowhere")), nft.drop()])),
     errno.ENOENT),
    (SVC, lambda tx: tx.delete(nft.Rule("services", handle=9999)), errno.ENOENT),
    (SVC, lambda tx: tx.flush(nft.Chain("nowhere")), errno.ENOENT),
    (SVC, lambda tx: tx.delete(nft.Chain("nowhere")), errno.ENOENT),
    (SVC, lambda tx: tx.flush(nft.Set("nowhere", "ipv4_addr")), errno.ENOENT),
    (SVC, lambda tx: tx.delete(nft.Map("nowhere", "ipv4_addr", "verdict")), errno.ENOENT),
    (SVC, lambda tx: tx.add(nft.Element(nft.Set("nowhere", "ipv4_addr"), "10.0.0.1")), errno.ENOENT),
    (("ip", "tulle-none"), lambda tx: tx, errno.ENOENT),                                  # no such table
    (SVC, lambda tx: tx.add(nft.Chain("prerouting", type="nat", hook="prerouting", priority=-90)), errno.EOPNOTSUPP),
    (POL, lambda tx: tx.add(nft.Element(POD_CIDRS, "10.244.7.0/24")), errno.EEXIST),     # overlaps 10.244.0.0/16
    (POL, lambda tx: tx.delete(nft.Element(POD_CIDRS, "10.96.0.0/13")), errno.ENOENT),   # only the /12 is there
    (POL, lambda tx: tx.delete(nft.Chain("pol-b")), errno.EBUSY),                          # a map element jumps there
])
def test_failed_transactions_change_nothing_in_either(pair, table, op, code):
    for tx in (services(), policy()):
        pair.run(tx)
    tx = nft.Transaction(*table).add(nft.Chain("must-not-appear"))     # proves all-or-nothing
    pair.fails(op(tx), code)
    pair.assert_same(SVC, POL)
    assert "must-not-appear" not in nft.chains(pair.fake.list_table(*table))
    # handles a failed batch took (or, refused by nft itself, did not) stay taken alike
    after = ("ip", "tulle-after")
    pair.run(nft.Transaction(*after).add(nft.Table(*after)))
    pair.run(nft.Transaction(*SVC).add(nft.Chain("after")).add(nft.Rule("after", [nft.accept()])))
    pair.assert_same(SVC, after)
