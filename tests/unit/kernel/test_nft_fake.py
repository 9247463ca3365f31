"""FakeNft keeps the kernel's transaction semantics (the netns golden test proves the listings)."""

from __future__ import annotations

import errno

import pytest

from tulle.errors import KernelError
from tulle.kernel import nft

T = ("inet", "tulle-t")
SVC = nft.Map("svc", "ipv4_addr . inet_proto . inet_service", "verdict")
NETS = nft.Set("nets", "ipv4_addr", flags=["interval"], elements=["10.0.0.0/8"])
AFF = nft.Set("aff", "ipv4_addr", flags=["dynamic", "timeout"], timeout=600)


def tx() -> nft.Transaction:
    return nft.Transaction(*T)


@pytest.fixture
def fake() -> nft.FakeNft:
    f = nft.FakeNft()
    base = tx().add(nft.Table(*T)).add(SVC).add(NETS)
    for name in ("svc-a", "ep-1", "ep-2"):
        base.add(nft.Chain(name))
    base.add(nft.Chain("pre", type="nat", hook="prerouting", priority="dstnat"))
    base.add(nft.Rule("pre", [nft.vmap(nft.concat(nft.ip_field(4, "daddr"), nft.meta("l4proto"),
                                                  nft.payload("th", "dport")), nft.ref("svc"))]))
    base.add(nft.Rule("svc-a", [nft.match(nft.ip_field(4, "saddr"), nft.ref("nets")), nft.goto("ep-1")]))
    base.add(nft.Element(SVC, ("10.96.0.1", "tcp", 443), nft.goto("svc-a")))
    f.run(base)
    return f


def fails(fake: nft.FakeNft, t: nft.Transaction, code: int) -> None:
    before = fake.dump()
    with pytest.raises(KernelError) as failed:
        fake.run(t)
    assert failed.value.errno == code, failed.value
    assert fake.dump() == before                   # all or nothing


def test_add_is_idempotent_create_is_not(fake):
    before = fake.dump()
    fake.run(tx().add(nft.Table(*T)).add(SVC).add(nft.Chain("svc-a")).add(
        nft.Chain("pre", type="nat", hook="prerouting", priority=-100)).add(
        nft.Element(SVC, ("10.96.0.1", "tcp", 443), nft.goto("svc-a"))).add(nft.Element(NETS, "10.0.0.0/8")))
    assert fake.dump() == before
    for obj in (nft.Table(*T), SVC, nft.Chain("svc-a"), nft.Element(SVC, ("10.96.0.1", "tcp", 443), nft.goto("svc-a"))):
        fails(fake, tx().create(obj), errno.EEXIST)


def test_a_failure_anywhere_undoes_the_whole_transaction(fake):
    t = tx().add(nft.Chain("new")).add(nft.Element(SVC, ("10.96.0.2", "udp", 53), nft.goto("ep-2")))
    t.add(nft.Rule("new", [nft.jump("missing")]))
    fails(fake, t, errno.ENOENT)
    assert "new" not in nft.chains(fake.list_table(*T))


@pytest.mark.parametrize("make,code", [
    (lambda: tx().delete(nft.Chain("nope")), errno.ENOENT),
    (lambda: tx().flush(nft.Chain("nope")), errno.ENOENT),
    (lambda: tx().delete(nft.Set("nope", "ipv4_addr")), errno.ENOENT),
    (lambda: tx().flush(nft.Set("nope", "ipv4_addr")), errno.ENOENT),
    (lambda: tx().delete(nft.Element(NETS, "11.0.0.0/8")), errno.ENOENT),
    (lambda: tx().delete(nft.Rule("pre", handle=999)), errno.ENOENT),
    (lambda: tx().replace(nft.Rule("pre", [nft.accept()], handle=999)), errno.ENOENT),
    (lambda: tx().insert(nft.Rule("pre", [nft.accept()], handle=999)), errno.ENOENT),
    (lambda: tx().add(nft.Rule("nope", [nft.accept()])), errno.ENOENT),
    (lambda: tx().add(nft.Rule("ep-1", [nft.match(nft.ip_field(4, "saddr"), nft.ref("nope")), nft.drop()])),
     errno.ENOENT),
    (lambda: tx().add(nft.Rule("ep-1", [nft.jump("pre")])), errno.EOPNOTSUPP),          # a base chain
    (lambda: nft.Transaction("ip", "other").add(nft.Chain("c")), errno.ENOENT),         # no such table
    (lambda: tx().delete(nft.Chain("svc-a")), errno.EBUSY),                             # a verdict element
    (lambda: tx().delete(nft.Chain("ep-1")), errno.EBUSY),                              # a goto
    (lambda: tx().delete(NETS), errno.EBUSY),                                           # a lookup
    (lambda: tx().delete(SVC), errno.EBUSY),                                            # a vmap
    (lambda: tx().add(nft.Element(SVC, ("10.96.0.1", "tcp", 443), nft.drop())), errno.EEXIST),
    (lambda: tx().add(nft.Element(NETS, "10.1.0.0/16")), errno.EEXIST),                 # overlaps
    (lambda: tx().add(nft.Element(SVC, ("10.96.0.9", "tcp", 80), nft.goto("nope"))), errno.ENOENT),
    (lambda: tx().add(nft.Set("svc", "ipv4_addr")), errno.EEXIST),                     # other type, same name
    (lambda: tx().add(nft.Set("nets", "ipv4_addr")), errno.EEXIST),                    # other flags
    (lambda: tx().add(nft.Chain("svc-a", type="filter", hook="input", priority=0)), errno.EEXIST),
    (lambda: tx().add(nft.Chain("pre", type="nat", hook="prerouting", priority=-90)), errno.EOPNOTSUPP),
    (lambda: tx().add(nft.Chain("pre", type="nat", hook="output", priority=-100)), errno.EOPNOTSUPP),
    (lambda: tx().add(nft.Element(nft.Set("svc", "ipv4_addr"), "10.0.0.1")), errno.EINVAL),    # a map, not a set
])
def test_what_the_kernel_refuses(fake, make, code):
    fails(fake, make(), code)


def test_delete_and_flush_release_references(fake):
    fake.run(tx().delete(nft.Element(SVC, ("10.96.0.1", "tcp", 443))).flush(nft.Chain("svc-a"))
             .delete(nft.Chain("svc-a")).delete(nft.Chain("ep-1")).delete(NETS))
    listing = fake.list_table(*T)
    assert nft.chains(listing) == ["ep-2", "pre"]
    assert [o for o in listing if "set" in o] == []
    fake.run(tx().flush(SVC).delete(nft.Chain("ep-2")))       # a chain with no users, rules or not, goes
    fake.run(tx().delete(nft.Table(*T)))
    assert fake.list_table(*T) is None and fake.list_tables() == []


def test_handles_grow_per_table_and_are_not_reused(fake):
    handles = [o[k]["handle"] for o in fake.list_table(*T)[2:] for k in o]
    assert sorted(handles) == list(range(1, len(handles) + 1))      # sets, chains and rules share one counter
    rule = nft.rules(fake.list_table(*T), "svc-a")[0]
    # the kernel gives the chain and the rule their handles before it finds the jump's target missing
    fails(fake, tx().add(nft.Chain("x")).add(nft.Rule("x", [nft.jump("nope")])), errno.ENOENT)
    # nft finds the missing set in its own copy and sends nothing
    fails(fake, tx().add(nft.Chain("y")).add(nft.Rule("y", [nft.match(nft.ip_field(4, "saddr"), nft.ref("nope"))])),
          errno.ENOENT)
    fake.run(tx().delete(rule).add(nft.Rule("svc-a", [nft.match(nft.ip_field(4, "saddr"), nft.set_of(
        ["10.0.0.1", "10.0.0.2"])), nft.accept()])))
    new = nft.rules(fake.list_table(*T), "svc-a")[0]
    assert new.handle == max(handles) + 4       # +2 taken by the failed transaction, +1 by the anonymous set


def test_rule_positions(fake):
    def prefixes() -> list[str]:
        return [r.expr[0]["log"]["prefix"] for r in nft.rules(fake.list_table(*T), "ep-2")]

    fake.run(tx().add(nft.Rule("ep-2", [nft.log(prefix="b")])).add(nft.Rule("ep-2", [nft.log(prefix="d")])))
    b, d = nft.rules(fake.list_table(*T), "ep-2")
    fake.run(tx().insert(nft.Rule("ep-2", [nft.log(prefix="a")])).insert(nft.Rule("ep-2", [nft.log(prefix="c")],
                                                                                  handle=d.handle)))
    assert prefixes() == ["a", "b", "c", "d"]
    fake.run(tx().replace(nft.Rule("ep-2", [nft.log(prefix="B")], handle=b.handle)))
    assert prefixes() == ["a", "B", "c", "d"]
    assert nft.rules(fake.list_table(*T), "ep-2")[1].handle == b.handle


def test_listing_holds_what_the_kernel_lists_back():
    fake = nft.FakeNft()
    t = tx().add(nft.Table(*T)).add(nft.Chain("c"))
    t.add(nft.Rule("c", [nft.match(nft.ct("state"), ["related", "established"], "in"), nft.counter(),
                         nft.masquerade(fully_random=True)], comment="tag"))
    t.add(nft.Rule("c", [nft.match(nft.meta("l4proto"), 6), nft.limit(10), nft.log(level="warn"), nft.reject()]))
    t.add(nft.Rule("c", [nft.match(nft.ip_field(6, "daddr"), "fd00:0::1"), nft.reject()]))
    fake.run(t)
    first, second, third = nft.rules(fake.list_table(*T), "c")
    assert first.comment == "tag" and first.expr == [
        {"match": {"op": "in", "left": {"ct": {"key": "state"}}, "right": ["established", "related"]}},
        {"counter": {"packets": 0, "bytes": 0}}, {"masquerade": {"flags": "fully-random"}}]
    assert second.comment is None and second.expr == [
        {"match": {"op": "==", "left": {"meta": {"key": "l4proto"}}, "right": "tcp"}},
        {"limit": {"rate": 10, "per": "second", "burst": 5}}, {"log": None},
        {"reject": {"type": "icmpx", "expr": "port-unreachable"}}]
    assert third.expr == [{"match": {"op": "==", "left": {"payload": {"protocol": "ip6", "field": "daddr"}},
                                     "right": "fd00::1"}},
                          {"reject": {"type": "icmpv6", "expr": "port-unreachable"}}]     # ip6: nft answers in icmpv6
    assert t.ops[2][1].expr[0]["match"]["right"] == ["related", "established"]           # the caller's rule untouched


def test_dynamic_sets_as_libnftables_1_0_6_makes_them():
    fake = nft.FakeNft()
    update = nft.Rule("ep", [nft.update_set("aff", nft.ip_field(4, "saddr"), timeout=600)])
    fake.run(tx().add(nft.Table(*T)).add(AFF).add(nft.Chain("ep")).add(update))
    assert "\t\tsize 65535\n\t\tflags dynamic,timeout\n\t\ttimeout 10m\n" in fake.dump(*T)
    aff = next(o["set"] for o in fake.list_table(*T) if "set" in o)
    assert aff["flags"] == ["timeout"] and aff["size"] == 65535           # 1.0.6's JSON does not list `dynamic`
    fails(fake, tx().add(AFF).add(update), errno.EEXIST)                 # JSON cannot repeat the flag
    fake.run(tx().add(update))


def test_elements_with_timeouts_and_comments(fake):
    s = nft.Set("t", "ipv4_addr", flags=["timeout"], timeout=60)
    fake.run(tx().add(s).add(nft.Element(s, "10.0.0.2", timeout=60, comment="same")).add(
        nft.Element(s, "10.0.0.1", timeout=3600)))
    assert 'elements = { 10.0.0.1 timeout 1h, 10.0.0.2 comment "same" }' in fake.dump(*T)


def test_comments_of_tables_chains_and_sets_are_dropped_as_by_libnftables_1_0_6():
    fake = nft.FakeNft()
    fake.run(tx().add(nft.Table(*T, comment="t")).add(nft.Chain("c", comment="c")).add(
        nft.Set("s", "ipv4_addr", comment="s")).add(nft.Rule("c", [nft.accept()], comment="kept")))
    assert fake.dump() == ('table inet tulle-t {\n\tset s {\n\t\ttype ipv4_addr\n\t}\n\n'
                           '\tchain c {\n\t\taccept comment "kept"\n\t}\n}\n')


def test_dump_of_a_missing_table_fails_like_nft():
    with pytest.raises(KernelError) as failed:
        nft.FakeNft().dump("ip", "nope")
    assert failed.value.errno == errno.ENOENT


def test_runners_share_a_protocol():
    runner: nft.Runner = nft.FakeNft()
    runner.run(tx().add(nft.Table(*T)))
    assert runner.list_tables() == [T]
    assert isinstance(nft.KERNEL, nft.Libnft)
