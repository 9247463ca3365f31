"""host-local's allocation logic over a small Store interface.

Pure of I/O: the disk store (tulle.cni.plugins.ipam.disk) and the in-memory
fake below both satisfy `Store`, so allocation order, requested IPs,
exhaustion and rollback are tested without touching a filesystem. The caller
holds the store's lock for the whole call.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Protocol

from tulle.cni.plugins.ipam.ranges import Range, RangeSet, candidates, describe, range_for
from tulle.cni.types import IPAddress
from tulle.errors import ConfigError, ExhaustedError, ExistsError, TulleError

# Who holds an address: (containerID, ifname); ifname is None in the legacy
# format that recorded only the container ID.
Owner = tuple[str, "str | None"]


class Store(Protocol):
    def allocations(self) -> dict[IPAddress, Owner]:
        """Every reserved address and its owner."""

    def reserve(self, ip: IPAddress, container_id: str, ifname: str, set_index: int) -> bool:
        """Reserve `ip` (False when it is taken) and remember it as the set's last one."""

    def release(self, ip: IPAddress) -> None:
        """Forget the reservation of `ip`."""

    def last_reserved(self, set_index: int) -> IPAddress | None:
        """The address most recently handed out from range set `set_index`."""


@dataclass(frozen=True)
class Lease:
    ip: IPAddress
    range: Range
    set_index: int


Requested = tuple[IPAddress, str]  # the address and where it was asked for (for messages)


def _plan(sets: list[RangeSet], requested: list[Requested]) -> dict[int, Requested]:
    """Which range set serves which requested address; every address needs exactly one."""
    plan: dict[int, Requested] = {}
    for ip, where in requested:
        idx = next((i for i, rs in enumerate(sets) if range_for(rs, ip)), None)
        if idx is None:
            raise ConfigError(f"{where}: requested IP {ip} is not in any range set "
                              f"({'; '.join(describe(rs) for rs in sets)})")
        if idx in plan:
            raise ConfigError(f"{where}: requested IPs {plan[idx][0]} and {ip} are both in range set "
                              f"{idx} ({describe(sets[idx])}); a range set yields one IP")
        r = range_for(sets[idx], ip)
        assert r is not None
        if ip == r.gateway:
            raise ConfigError(f"{where}: requested IP {ip} is the gateway of range {r}")
        plan[idx] = (ip, where)
    return plan


def _owner_text(owner: Owner) -> str:
    cid, ifname = owner
    return f"container {cid}" + (f" ({ifname})" if ifname is not None else "")


def _reserve_requested(store: Store, allocs: dict[IPAddress, Owner], sets: list[RangeSet],
                       idx: int, req: Requested, cid: str, ifname: str) -> Lease:
    ip, where = req
    r = range_for(sets[idx], ip)
    assert r is not None
    if ip in allocs or not store.reserve(ip, cid, ifname, idx):
        holder = _owner_text(allocs[ip]) if ip in allocs else "another container"
        raise ExistsError(f"{where}: requested IP {ip} is already allocated to {holder}")
    return Lease(ip, r, idx)


def _reserve_next(store: Store, allocs: dict[IPAddress, Owner], rs: RangeSet, idx: int,
                  cid: str, ifname: str, network: str) -> Lease:
    for ip, owner in allocs.items():
        if owner in ((cid, ifname), (cid, None)) and range_for(rs, ip):
            raise ExistsError(f"{ip} in range set {idx} is already allocated to {_owner_text(owner)}; "
                              "duplicate allocation is not allowed")
    for r, ip in candidates(rs, store.last_reserved(idx)):
        if ip not in allocs and store.reserve(ip, cid, ifname, idx):
            return Lease(ip, r, idx)
    raise ExhaustedError(f"no IP addresses available in range set {idx} ({describe(rs)}) "
                         f"of network {network!r}")


def allocate(store: Store, sets: list[RangeSet], cid: str, ifname: str,
             requested: list[Requested], network: str = "") -> list[Lease]:
    """One address per range set (a requested one where asked); all or nothing."""
    plan = _plan(sets, requested)
    allocs = store.allocations()
    leases: list[Lease] = []
    try:
        for idx, rs in enumerate(sets):
            if idx in plan:
                lease = _reserve_requested(store, allocs, sets, idx, plan[idx], cid, ifname)
            else:
                lease = _reserve_next(store, allocs, rs, idx, cid, ifname, network)
            leases.append(lease)
    except BaseException:
        for lease in leases:
            store.release(lease.ip)
        raise
    return leases


def owned_by(allocs: dict[IPAddress, Owner], cid: str, ifname: str) -> list[IPAddress]:
    """Addresses held by (cid, ifname); only when there are none, those recorded
    in the legacy format under the bare container ID (as the reference does)."""
    found = [ip for ip, owner in allocs.items() if owner == (cid, ifname)]
    if not found:
        found = [ip for ip, owner in allocs.items() if owner == (cid, None)]
    return found


def release(store: Store, cid: str, ifname: str) -> list[IPAddress]:
    ips = owned_by(store.allocations(), cid, ifname)
    for ip in ips:
        store.release(ip)
    return ips


def collect(store: Store, keep: Iterable[tuple[str, str]]) -> tuple[list[IPAddress], list[str]]:
    """GC: release every address whose owner is not a valid attachment; a legacy
    record (container ID only) stays while any attachment of that container does.
    Returns what was released and the failures (collection goes on past them)."""
    keep = set(keep)
    keep_ids = {cid for cid, _ in keep}
    released, failures = [], []
    for ip, (cid, ifname) in store.allocations().items():
        alive = cid in keep_ids if ifname is None else (cid, ifname) in keep
        if alive:
            continue
        try:
            store.release(ip)
            released.append(ip)
        except (OSError, TulleError) as exc:
            failures.append(f"{ip}: {exc}")
    return released, failures


class MemoryStore:
    """The in-memory Store used by the unit tests of this module's logic."""

    def __init__(self) -> None:
        self.ips: dict[IPAddress, Owner] = {}
        self.last: dict[int, IPAddress] = {}

    def allocations(self) -> dict[IPAddress, Owner]:
        return dict(self.ips)

    def reserve(self, ip: IPAddress, container_id: str, ifname: str, set_index: int) -> bool:
        if ip in self.ips:
            return False
        self.ips[ip] = (container_id.strip(), ifname)
        self.last[set_index] = ip
        return True

    def release(self, ip: IPAddress) -> None:
        self.ips.pop(ip, None)

    def last_reserved(self, set_index: int) -> IPAddress | None:
        return self.last.get(set_index)
