"""The node's data plane as two controllers: the backend (how this node reaches every
other node's pods) and the masquerade rules (what leaves the cluster network)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Callable

from tulle.agent import diff, log, masquerade, metrics
from tulle.agent.backends.base import Backend
from tulle.agent.controller import Snapshot
from tulle.cluster.blocks import blocks_prefix, decode_kvs, local_prefixes
from tulle.cluster.lease import Lease, subnets_prefix
from tulle.kernel import nft

IPv4Net = ipaddress.IPv4Network


def leases_in(snap: Snapshot, prefix: str) -> diff.LeaseMap:
    return diff.from_snapshot(snap.under(subnets_prefix(prefix)))


@dataclass
class NetworkController:
    """backend.sync (full: reads the kernel back) or backend.update (only the difference)
    with every remote lease; bgp also reads the IPAM blocks, so a new block is announced
    at once."""

    backend: Backend
    prefix: str                                   # the agent's key prefix (Flannel's)
    own: Callable[[], Lease | None]               # this node's lease, held by the agent
    name: str = "network"
    leader_only: bool = False

    @property
    def prefixes(self) -> tuple[str, ...]:
        base = self.prefix.rstrip("/")
        return (subnets_prefix(self.prefix), *(f"{base}/{p}" for p in self.backend.watch_prefixes))

    def plan(self, snap: Snapshot) -> list[Lease]:
        own = self.own()
        return diff.remotes(leases_in(snap, self.prefix), own.subnet if own else None)

    def apply(self, remotes: list[Lease], full: bool) -> None:
        metrics.LEASES.set(len(remotes))
        if full:
            self.backend.sync(remotes)
        else:
            self.backend.update(remotes)


@dataclass(frozen=True)
class MasqueradePlan:
    enabled: bool
    network: IPv4Net
    local: tuple[IPv4Net, ...]     # where this node's pods are


def lease_pods(snap: Snapshot, own: Lease) -> list[IPv4Net]:
    """host-gw, vxlan, udp: the node's pods are in its lease."""
    return [own.subnet]


def block_pods(prefix: str, node: str) -> Callable[[Snapshot, Lease], list[IPv4Net]]:
    """bgp: the node's pods are in its affine blocks and the /32s it borrowed."""
    def local(snap: Snapshot, own: Lease) -> list[IPv4Net]:
        return local_prefixes(decode_kvs(snap.under(blocks_prefix(prefix))), node)
    return local


@dataclass
class MasqueradeController:
    network: IPv4Net
    prefix: str
    own: Callable[[], Lease | None]
    local_pods: Callable[[Snapshot, Lease], list[IPv4Net]]
    enabled: bool = True
    extra_prefixes: tuple[str, ...] = ()          # e.g. the blocks prefix in bgp mode
    runner: nft.Runner = nft.KERNEL               # the calling thread's netns (a FakeNft in tests)
    name: str = "masquerade"
    leader_only: bool = False

    @property
    def prefixes(self) -> tuple[str, ...]:
        return (subnets_prefix(self.prefix), *self.extra_prefixes)

    def plan(self, snap: Snapshot) -> MasqueradePlan | None:
        own = self.own()
        if own is None:
            return None                           # no lease yet: nothing to say about local pods
        return MasqueradePlan(self.enabled, self.network, tuple(self.local_pods(snap, own)))

    def apply(self, plan: MasqueradePlan | None, full: bool) -> None:
        if plan is None:
            return
        if plan.enabled:
            if masquerade.ensure(plan.network, list(plan.local), self.runner):
                log.info("masquerade rules written", table=f"{masquerade.FAMILY} {masquerade.TABLE}")
        elif masquerade.remove(self.runner):
            log.info("masquerade table removed (--no-ip-masq)")
