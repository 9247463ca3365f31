"""The set of remote leases as a pure function of store snapshots and events.

The daemon keeps a `LeaseMap` (subnet → Lease). A full listing replaces it
(`from_snapshot`), a batch of watch events updates it (`apply`), and `diff`
says what changed between two maps: the daemon logs it and, when it is not
empty, has the backend apply the change (`update`). Backends still receive the
complete remote set, never the diff: each compares what it wants for that set
with what it last wrote (one lease's cross-checks, such as overlapping subnets
or a VtepMAC used twice, depend on the others), and a missed event is harmless
(the next tick converges anyway).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Iterable

from tulle.cluster.lease import Lease, subnet_from_key
from tulle.agent.subnet import kv_to_lease
from tulle.store import KV, Event

LeaseMap = dict[ipaddress.IPv4Network, Lease]


@dataclass(frozen=True)
class LeaseDiff:
    added: list[Lease] = field(default_factory=list)
    removed: list[Lease] = field(default_factory=list)
    changed: list[Lease] = field(default_factory=list)  # same subnet, new content (the new lease)

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.changed)


def from_snapshot(kvs: Iterable[KV]) -> LeaseMap:
    """Every lease in a listing, keyed by subnet."""
    out: LeaseMap = {}
    for kv in kvs:
        lease = kv_to_lease(kv)
        if lease is not None:
            out[lease.subnet] = lease
    return out


def apply(current: LeaseMap, events: Iterable[Event]) -> LeaseMap:
    """`current` after the events (a new map; `current` is not modified)."""
    out = dict(current)
    for ev in events:
        subnet = subnet_from_key(ev.kv.key)
        if subnet is None:
            continue
        if ev.type == "delete":
            out.pop(subnet, None)
            continue
        lease = kv_to_lease(ev.kv)
        if lease is not None:
            out[subnet] = lease
    return out


def diff(old: LeaseMap, new: LeaseMap) -> LeaseDiff:
    added = [l for s, l in new.items() if s not in old]
    removed = [l for s, l in old.items() if s not in new]
    changed = [l for s, l in new.items() if s in old and not old[s].same_content(l)]
    key = lambda l: int(l.subnet.network_address)  # noqa: E731
    return LeaseDiff(sorted(added, key=key), sorted(removed, key=key), sorted(changed, key=key))


def remotes(leases: LeaseMap, own: ipaddress.IPv4Network | None) -> list[Lease]:
    """Every lease but our own, in subnet order (what backend.sync receives)."""
    return sorted((l for s, l in leases.items() if s != own), key=lambda l: int(l.subnet.network_address))
