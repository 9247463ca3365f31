"""host-local's pure core: range parsing/validation, round-robin order and the
allocation logic over the in-memory store."""

from __future__ import annotations

import ipaddress
import itertools

import pytest

from tulle.cni.conf import Fields
from tulle.cni.plugins.ipam import allocator
from tulle.cni.plugins.ipam.ranges import candidates, parse_range_sets
from tulle.errors import ConfigError, ExhaustedError, ExistsError

ip = ipaddress.ip_address


def sets(ipam: dict, runtime: list | None = None):
    return parse_range_sets(Fields(ipam, "ipam"), runtime or [])


def order(rs, last=None, n=100):
    return [str(a) for _, a in itertools.islice(candidates(rs, ip(last) if last else None), n)]


def test_defaults_ipv4():
    [[r]] = sets({"ranges": [[{"subnet": "10.1.2.0/24"}]]})
    assert (str(r.start), str(r.end), str(r.gateway)) == ("10.1.2.1", "10.1.2.254", "10.1.2.1")


def test_defaults_ipv6_and_host_bits_masked():
    [[r]] = sets({"ranges": [[{"subnet": "fd00:1::7/64"}]]})
    assert str(r.subnet) == "fd00:1::/64"
    assert (str(r.start), str(r.end), str(r.gateway)) == ("fd00:1::1", "fd00:1::ffff:ffff:ffff:ffff", "fd00:1::1")


def test_legacy_form_and_runtime_ranges_order():
    got = sets({"subnet": "10.2.0.0/24", "rangeStart": "10.2.0.10", "gateway": "10.2.0.254",
                "ranges": [[{"subnet": "10.3.0.0/24"}]]},
               runtime=[[{"subnet": "10.4.0.0/24"}]])
    assert [str(rs[0].subnet) for rs in got] == ["10.4.0.0/24", "10.2.0.0/24", "10.3.0.0/24"]
    assert (str(got[1][0].start), str(got[1][0].gateway)) == ("10.2.0.10", "10.2.0.254")


@pytest.mark.parametrize("ipam,field", [
    ({}, "no IP ranges"),
    ({"ranges": "x"}, "ipam.ranges"),
    ({"ranges": [[]]}, "ipam.ranges[0]: empty range set"),
    ({"ranges": [{"subnet": "10.0.0.0/24"}]}, "ipam.ranges[0]"),
    ({"ranges": [[{"subnet": "10.0.0.0"}]]}, "ipam.ranges[0][0].subnet"),
    ({"ranges": [[{"subnet": "banana/24"}]]}, "ipam.ranges[0][0].subnet"),
    ({"ranges": [[{}]]}, "ipam.ranges[0][0].subnet is required"),
    ({"ranges": [[{"subnet": "10.0.0.0/31"}]]}, "too small"),
    ({"ranges": [[{"subnet": "fd00::/127"}]]}, "too small"),
    ({"ranges": [[{"subnet": "::ffff:10.0.0.0/120"}]]}, "IPv4-mapped"),
    ({"ranges": [[{"subnet": "10.0.0.0/24", "rangeStart": "10.0.1.1"}]]}, "ipam.ranges[0][0].rangeStart"),
    ({"ranges": [[{"subnet": "10.0.0.0/24", "rangeEnd": "10.0.1.1"}]]}, "ipam.ranges[0][0].rangeEnd"),
    ({"ranges": [[{"subnet": "10.0.0.0/24", "gateway": "10.0.1.1"}]]}, "ipam.ranges[0][0].gateway"),
    ({"ranges": [[{"subnet": "10.0.0.0/24", "gateway": "fd00::1"}]]}, "ipam.ranges[0][0].gateway"),
    ({"ranges": [[{"subnet": "10.0.0.0/24", "gateway": "x"}]]}, "ipam.ranges[0][0].gateway"),
    ({"ranges": [[{"subnet": "10.0.0.0/24", "rangeStart": "10.0.0.9", "rangeEnd": "10.0.0.8"}]]},
     "rangeStart 10.0.0.9 is after rangeEnd"),
    ({"ranges": [[{"subnet": "10.0.0.0/24"}, {"subnet": "fd00::/64"}]]}, "mixed address families"),
    ({"ranges": [[{"subnet": "10.0.0.0/24"}, {"subnet": "10.0.0.0/25"}]]}, "ipam.ranges[0]: ranges 0"),
    ({"ranges": [[{"subnet": "10.0.0.0/24"}], [{"subnet": "10.0.0.128/25"}]]}, "range set 0"),
    ({"subnet": "10.0.0.0/16", "ranges": [[{"subnet": "10.0.5.0/24"}]]}, "overlaps"),
    ({"subnet": "10.0.0.0/24", "rangeEnd": "nope"}, "ipam.rangeEnd"),
])
def test_validation_errors_name_the_field(ipam, field):
    with pytest.raises(ConfigError) as exc:
        sets(ipam)
    assert field in exc.value.msg


def test_disjoint_ranges_in_one_subnet_are_fine():
    got = sets({"ranges": [[{"subnet": "10.0.0.0/24", "rangeEnd": "10.0.0.9"},
                            {"subnet": "10.0.0.0/24", "rangeStart": "10.0.0.10"}]]})
    assert len(got[0]) == 2


def test_round_robin_order_wraps_and_skips_gateway():
    [rs] = sets({"ranges": [[{"subnet": "10.0.0.0/29"}]]})          # .1 gw, .2-.6
    assert order(rs) == ["10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6"]
    assert order(rs, "10.0.0.4") == ["10.0.0.5", "10.0.0.6", "10.0.0.2", "10.0.0.3", "10.0.0.4"]
    assert order(rs, "10.0.0.6") == ["10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6"]
    assert order(rs, "10.9.9.9") == order(rs)                        # not in the set: from the start


def test_order_across_ranges_of_a_set():
    [rs] = sets({"ranges": [[{"subnet": "10.0.0.0/29", "rangeStart": "10.0.0.5"},
                             {"subnet": "10.0.1.0/29", "rangeEnd": "10.0.1.3", "gateway": "10.0.1.3"}]]})
    assert order(rs) == ["10.0.0.5", "10.0.0.6", "10.0.1.1", "10.0.1.2"]
    assert order(rs, "10.0.0.6") == ["10.0.1.1", "10.0.1.2", "10.0.0.5", "10.0.0.6"]
    assert order(rs, "10.0.1.2") == ["10.0.0.5", "10.0.0.6", "10.0.1.1", "10.0.1.2"]


def test_ipv6_order_is_lazy():
    [rs] = sets({"ranges": [[{"subnet": "fd00::/64"}]]})
    assert order(rs, n=3) == ["fd00::2", "fd00::3", "fd00::4"]


TWO = {"ranges": [[{"subnet": "10.0.0.0/29"}], [{"subnet": "fd00::/125"}]]}


def test_allocate_one_per_set_then_round_robin():
    store, s = allocator.MemoryStore(), sets(TWO)
    got = [[str(l.ip) for l in allocator.allocate(store, s, f"c{i}", "eth0", [])] for i in range(3)]
    assert got == [["10.0.0.2", "fd00::2"], ["10.0.0.3", "fd00::3"], ["10.0.0.4", "fd00::4"]]
    allocator.release(store, "c0", "eth0")
    # round robin continues after the last reserved address, not in the freed hole
    assert [str(l.ip) for l in allocator.allocate(store, s, "c3", "eth0", [])] == ["10.0.0.5", "fd00::5"]


def test_exhaustion_rolls_back_earlier_sets():
    store = allocator.MemoryStore()
    s = sets({"ranges": [[{"subnet": "10.0.0.0/29"}], [{"subnet": "10.1.0.0/30"}]]})  # 5 and 1 usable
    allocator.allocate(store, s, "a", "eth0", [])
    with pytest.raises(ExhaustedError) as exc:
        allocator.allocate(store, s, "b", "eth0", [])
    assert "range set 1 (10.1.0.1-10.1.0.2)" in exc.value.msg
    assert sorted(map(str, store.ips)) == ["10.0.0.2", "10.1.0.2"]


def test_requested_ips():
    store, s = allocator.MemoryStore(), sets(TWO)
    leases = allocator.allocate(store, s, "a", "eth0", [(ip("fd00::6"), "CNI_ARGS IP")])
    assert [str(l.ip) for l in leases] == ["10.0.0.2", "fd00::6"]
    with pytest.raises(ExistsError, match="fd00::6 is already allocated to container a"):
        allocator.allocate(store, s, "b", "eth0", [(ip("fd00::6"), "CNI_ARGS IP")])
    assert set(store.ips.values()) == {("a", "eth0")}


@pytest.mark.parametrize("requested,msg", [
    (["10.5.0.1"], "not in any range set"),
    (["10.0.0.7"], "not in any range set"),       # broadcast: outside rangeEnd
    (["10.0.0.1"], "is the gateway"),
    (["10.0.0.2", "10.0.0.3"], "both in range set 0"),
])
def test_requested_ip_errors(requested, msg):
    store = allocator.MemoryStore()
    with pytest.raises(ConfigError, match=msg):
        allocator.allocate(store, sets(TWO), "a", "eth0", [(ip(x), "args.cni.ips") for x in requested])
    assert store.ips == {}


def test_duplicate_allocation_refused():
    store, s = allocator.MemoryStore(), sets(TWO)
    allocator.allocate(store, s, "a", "eth0", [])
    with pytest.raises(ExistsError, match="duplicate allocation"):
        allocator.allocate(store, s, "a", "eth0", [])
    assert len(allocator.allocate(store, s, "a", "eth1", [])) == 2


def test_release_legacy_only_when_no_new_format():
    store = allocator.MemoryStore()
    store.ips = {ip("10.0.0.2"): ("a", None), ip("10.0.0.3"): ("a", "eth0"), ip("10.0.0.4"): ("a", "eth1")}
    assert allocator.release(store, "a", "eth0") == [ip("10.0.0.3")]
    assert allocator.release(store, "a", "eth9") == [ip("10.0.0.2")]
    assert list(store.ips) == [ip("10.0.0.4")]


def test_collect_keeps_valid_attachments():
    store = allocator.MemoryStore()
    store.ips = {ip("10.0.0.2"): ("a", "eth0"), ip("10.0.0.3"): ("b", "eth0"),
                 ip("10.0.0.4"): ("a", None), ip("10.0.0.5"): ("c", None), ip("10.0.0.6"): ("", None)}
    released, failures = allocator.collect(store, {("a", "eth0")})
    assert sorted(map(str, released)) == ["10.0.0.3", "10.0.0.5", "10.0.0.6"] and not failures
    assert sorted(map(str, store.ips)) == ["10.0.0.2", "10.0.0.4"]
