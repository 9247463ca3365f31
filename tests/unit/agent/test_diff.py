"""The pure lease diff: snapshot and events in, remote set and changes out."""

from __future__ import annotations

import ipaddress

from tulle.agent import diff
from tulle.cluster.lease import Lease, encode, subnet_key
from tulle.store import KV, Event

P = "/coreos.com/network"


def kv(subnet: str, ip: str, rev: int, data: dict | None = None, lease: int = 7) -> KV:
    l = Lease(ipaddress.IPv4Network(subnet), ipaddress.IPv4Address(ip), "host-gw", data or {})
    return KV(subnet_key(P, l.subnet), encode(l), rev, rev, 1, lease)


def test_snapshot_skips_foreign_and_malformed_keys():
    kvs = [kv("10.244.1.0/24", "198.51.100.11", 2), kv("10.244.2.0/24", "198.51.100.12", 3, lease=0),
           KV(f"{P}/subnets/garbage", b"{}", 4, 4, 1), KV(f"{P}/subnets/10.244.3.0-24", b"not json", 5, 5, 1)]
    leases = diff.from_snapshot(kvs)
    assert sorted(str(s) for s in leases) == ["10.244.1.0/24", "10.244.2.0/24"]
    assert leases[ipaddress.IPv4Network("10.244.2.0/24")].reservation


def test_events_then_diff():
    a, b = kv("10.244.1.0/24", "198.51.100.11", 2), kv("10.244.2.0/24", "198.51.100.12", 3)
    old = diff.from_snapshot([a, b])
    events = [
        Event("delete", KV(b.key, b"", 0, 10, 0), 10),
        Event("put", kv("10.244.3.0/24", "198.51.100.13", 11), 11),
        Event("put", kv("10.244.1.0/24", "198.51.100.11", 12, data={"VtepMAC": "x"}), 12),
        Event("put", KV(f"{P}/subnets/nonsense", b"{}", 13, 13, 1), 13),
    ]
    new = diff.apply(old, events)
    assert len(old) == 2  # not modified
    d = diff.diff(old, new)
    assert [str(l.subnet) for l in d.added] == ["10.244.3.0/24"]
    assert [str(l.subnet) for l in d.removed] == ["10.244.2.0/24"]
    assert [l.backend_data for l in d.changed] == [{"VtepMAC": "x"}]
    assert d and not diff.diff(new, new)
    # a re-put with the same content (a renewal, a take-over) is no change
    same = diff.apply(new, [Event("put", kv("10.244.3.0/24", "198.51.100.13", 20), 20)])
    assert not diff.diff(new, same)


def test_remotes_excludes_own_and_is_sorted():
    leases = diff.from_snapshot([kv("10.244.10.0/24", "198.51.100.11", 2), kv("10.244.2.0/24", "198.51.100.12", 3),
                                 kv("10.244.3.0/24", "198.51.100.13", 4)])
    own = ipaddress.IPv4Network("10.244.3.0/24")
    assert [str(l.subnet) for l in diff.remotes(leases, own)] == ["10.244.2.0/24", "10.244.10.0/24"]
    assert len(diff.remotes(leases, None)) == 3
