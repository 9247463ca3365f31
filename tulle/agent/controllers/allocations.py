"""Leader only: release ClusterIP and NodePort claims that no Service holds.

A creator claims first and writes the Service second (tulle.cluster.allocators), so a
creator that dies in between leaves a claim without a Service. A claim that names no
live Service is released once it has been seen so, unchanged, for GRACE seconds — a
claim made for a Service being written right now is never taken for a leak (the API
server's repair loop does the same with repeated sightings).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

from tulle.agent.controller import Snapshot
from tulle.cluster import allocators
from tulle.cluster.api import Client, decode
from tulle.cluster.kinds import lookup

GRACE = 30.0


@dataclass(frozen=True)
class Leak:
    key: str
    mod_revision: int


def leaks(snap: Snapshot, api: Client) -> list[Leak]:
    """Claims whose owner is not a live Service (pure)."""
    live = {decode(lookup("services"), kv)["metadata"].get("uid")
            for kv in snap.under(api.kind_prefix("services")) if api.parse_key(kv.key)}
    out = []
    for claims in (api.service_ips, api.node_ports):
        for kv in snap.under(claims.prefix):
            owner = allocators.Owner.decode(kv.value)
            if owner is None or owner.uid not in live:
                out.append(Leak(kv.key, kv.mod_revision))
    return out


@dataclass
class AllocationRepair:
    api: Client
    clock: Callable[[], float] = time.monotonic
    grace: float = GRACE
    name: str = "allocations"
    leader_only: bool = True
    seen: dict[Leak, float] = field(default_factory=dict)   # suspected leak → first seen

    @property
    def prefixes(self) -> tuple[str, ...]:
        return (self.api.kind_prefix("services"), self.api.service_ips.prefix, self.api.node_ports.prefix)

    def plan(self, snap: Snapshot) -> list[Leak]:
        return leaks(snap, self.api)

    def apply(self, plan: list[Leak], full: bool) -> None:
        now = self.clock()
        self.seen = {leak: self.seen.get(leak, now) for leak in plan}
        for leak, since in list(self.seen.items()):
            if now - since >= self.grace:
                self.api.store.delete(leak.key, mod_revision=leak.mod_revision)
                del self.seen[leak]
