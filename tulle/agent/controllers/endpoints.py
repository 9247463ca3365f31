"""Leader only: EndpointSlices follow Services and Pods (tulle.cluster.endpointslices
computes the writes; this applies them through the object API)."""

from __future__ import annotations

from dataclasses import dataclass

from tulle.agent.controller import Snapshot
from tulle.cluster import endpointslices, errors
from tulle.cluster.api import Client, decode
from tulle.cluster.kinds import Kind, lookup


def objects(api: Client, snap: Snapshot, kind: Kind) -> list[dict]:
    """The objects of one kind in a snapshot (keys that do not parse are skipped)."""
    out = []
    for kv in snap.under(api.kind_prefix(kind)):
        if api.parse_key(kv.key) is not None:
            out.append(decode(kind, kv))
    return out


@dataclass
class EndpointsController:
    api: Client
    name: str = "endpoints"
    leader_only: bool = True

    @property
    def prefixes(self) -> tuple[str, ...]:
        return tuple(self.api.kind_prefix(k) for k in ("services", "pods", "endpointslices"))

    def plan(self, snap: Snapshot) -> endpointslices.Plan:
        return endpointslices.plan(objects(self.api, snap, lookup("services")),
                                   objects(self.api, snap, lookup("pods")),
                                   objects(self.api, snap, lookup("endpointslices")))

    def apply(self, plan: endpointslices.Plan, full: bool) -> None:
        """Each write is independent; a Conflict (the slice changed since the snapshot) or a
        NotFound (the Service went) is left for the next pass, which plans from fresher data."""
        stale = 0
        for ns, name in plan.delete:
            try:
                self.api.delete("endpointslices", name, ns)
            except errors.NotFound:
                pass
        for slc in plan.update:
            try:
                self.api.update(slc)
            except (errors.Conflict, errors.NotFound):
                stale += 1
        for slc in plan.create:
            try:
                self.api.create(slc)
            except errors.NotFound:      # its namespace is being deleted
                stale += 1
        if stale:
            raise errors.Conflict(f"{stale} endpoint slice write(s) raced with another writer; retrying")
