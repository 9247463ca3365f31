"""A VTEP and what it holds for its peers, written once for the vxlan backend and bgp's
CrossSubnet: the VXLAN device, its neighbour and FDB entries, and the routes into it.

Flannel's exact entries, with no learning: for each peer a permanent neighbour (the
address a route's gateway resolves to → the peer's VtepMAC) and an FDB entry (that
MAC → the peer's underlay address); the routes carry their owner's route protocol
number, so the owner finds exactly its own.

Pure: vtep_mac and lease_mac (a VTEP's identity), Entries (what a plan wants), Held
(what a VTEP holds: read back from the kernel, or the Entries last written) and
changes(held, wanted). Shell (this thread's netns): ensure_vtep, read, apply and
converge = apply(changes(read(), wanted)) — the same writes whether the difference
comes from the kernel (reconcile) or from the last pass (store change).
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from dataclasses import dataclass, field
from typing import Mapping

from tulle.agent import log
from tulle.agent.backends import routediff
from tulle.cluster.lease import Lease
from tulle.kernel import links, neigh
from tulle.kernel import vxlan as kvxlan
from tulle.kernel.routes import Route

IPv4Addr = ipaddress.IPv4Address
IPv4Net = ipaddress.IPv4Network

_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")


# --- a VTEP's identity (pure) ----------------------------------------------------------

def vtep_mac(public_ip: IPv4Addr, vni: int) -> str:
    """A locally administered unicast MAC derived from the node's identity, so a
    VTEP rebuilt from scratch (after a reboot, a deleted device) keeps its address."""
    digest = hashlib.sha256(f"tulle-vtep/{public_ip}/{vni}".encode()).digest()
    return ":".join(f"{b:02x}" for b in (0x0E, *digest[:5]))


def lease_mac(lease: Lease, vni: int) -> str:
    """The lease's VtepMAC; ValueError (with the reason) for unusable BackendData."""
    data = lease.backend_data
    if not isinstance(data, dict):
        raise ValueError("BackendData is not an object")
    mac = data.get("VtepMAC")
    if not isinstance(mac, str) or not _MAC.match(mac.lower()):
        raise ValueError(f"BackendData.VtepMAC {mac!r} is not a MAC address")
    mac = mac.lower()
    if int(mac[:2], 16) & 1 or mac == "00:00:00:00:00:00":
        raise ValueError(f"BackendData.VtepMAC {mac} is not a unicast MAC")
    their_vni = data.get("VNI", vni)
    if their_vni != vni:
        raise ValueError(f"BackendData.VNI {their_vni!r} differs from this network's VNI {vni}")
    return mac


# --- what a VTEP should hold, what it holds, and the difference (pure) ----------------

@dataclass(frozen=True)
class Held:
    """What a VTEP holds. Read back from the kernel there may be several underlay peers
    for one MAC and several routes for one destination, hence pairs and a sequence."""

    neighbours: Mapping[IPv4Addr, str]                 # address → MAC
    fdb: frozenset[tuple[str, IPv4Addr]]               # (MAC, underlay peer)
    routes: tuple[Route, ...]                          # the owner's routes (any device)


@dataclass
class Entries:
    """What a VTEP should hold: one peer per MAC, one route per destination."""

    neighbours: dict[IPv4Addr, str] = field(default_factory=dict)
    fdb: dict[str, IPv4Addr] = field(default_factory=dict)
    routes: dict[IPv4Net, Route] = field(default_factory=dict)

    def held(self) -> Held:
        """These entries as the kernel holds them once written."""
        return Held(dict(self.neighbours), frozenset(self.fdb.items()), tuple(self.routes.values()))


@dataclass
class Changes:
    """What turns one VTEP state into another."""

    neighbours_del: list[IPv4Addr] = field(default_factory=list)
    neighbours_set: dict[IPv4Addr, str] = field(default_factory=dict)
    fdb_del: list[tuple[str, IPv4Addr]] = field(default_factory=list)
    fdb_add: list[tuple[str, IPv4Addr]] = field(default_factory=list)
    routes: routediff.RouteDiff = field(default_factory=routediff.RouteDiff)

    def __bool__(self) -> bool:
        return any((self.neighbours_del, self.neighbours_set, self.fdb_del, self.fdb_add, self.routes))


def changes(old: Held, new: Entries) -> Changes:
    """The entries to remove and to write to go from `old` to `new`."""
    new_fdb = set(new.fdb.items())
    return Changes(
        neighbours_del=[ip for ip in old.neighbours if ip not in new.neighbours],
        neighbours_set={ip: mac for ip, mac in new.neighbours.items() if old.neighbours.get(ip) != mac},
        fdb_del=sorted(old.fdb - new_fdb, key=str),
        fdb_add=sorted(new_fdb - old.fdb, key=str),
        routes=routediff.diff(new.routes.values(), old.routes),
    )


# --- the kernel shell ------------------------------------------------------------------

def ensure_vtep(device: str, vni: int, port: int, local: IPv4Addr, underlay_dev: str,
                mtu: int, mac: str = "") -> str:
    """The VTEP `device` with this VNI/port/local/underlay and no learning; returns its MAC.
    A compatible device is kept (adopting its MAC when `mac` is empty: other nodes may
    already know it), an incompatible one rebuilt, a new one gets `mac` or vtep_mac()."""
    underlay = links.require(underlay_dev)
    link = links.get(device)
    if link is not None:
        have = kvxlan.info(device)
        if have is not None and (have.vni, have.port, have.local, have.link_index, have.learning) == \
                (vni, port, local, underlay.index, False):
            if not mac:
                mac = link.mac.lower()
            elif link.mac.lower() != mac:
                links.set_mac(device, mac)
            if link.mtu != mtu:
                links.set_mtu(device, mtu)
            return mac
        log.warning("vxlan device incompatible, recreating", dev=device, kind=link.kind, found=str(have))
        links.delete(device)
    mac = mac or vtep_mac(local, vni)
    links.add_vxlan(device, vni, port, str(local), dev=underlay_dev, mtu=mtu, learning=False, mac=mac)
    log.info("vxlan device created", dev=device, vni=vni, port=port, mac=mac, mtu=mtu)
    return mac


def read(device: str, proto: int) -> Held:
    """What `device` holds (permanent neighbours, FDB entries with a peer) and the routes
    carrying `proto`."""
    return Held(neighbours={n.ip: n.mac.lower() for n in neigh.list_on(device)},
                fdb=frozenset((e.mac.lower(), e.dst) for e in neigh.fdb_list(device) if e.dst is not None),
                routes=tuple(routediff.owned(proto)))


def apply(device: str, todo: Changes, owner: str) -> None:
    """Write `todo` (no reads): routes go before, and come after, their neighbour and
    FDB entries, so a route never points into a VTEP that cannot deliver."""
    routediff.write(todo.routes.deletions(), owner)
    for ip in todo.neighbours_del:
        neigh.delete(device, ip)
        log.info("vxlan neighbour removed", ip=ip)
    for ip, mac in todo.neighbours_set.items():
        neigh.replace(device, ip, mac)
        log.info("vxlan neighbour set", ip=ip, mac=mac)
    for mac, dst in todo.fdb_del:
        neigh.fdb_delete(device, mac, dst)
        log.info("vxlan fdb entry removed", mac=mac, dst=dst)
    for mac, dst in todo.fdb_add:
        neigh.fdb_append(device, mac, dst)
        log.info("vxlan fdb entry set", mac=mac, dst=dst)
    routediff.write(todo.routes.writes(), owner)


def converge(device: str, wanted: Entries, proto: int, owner: str) -> None:
    """Make the kernel hold exactly `wanted` on `device` and as the routes of `proto`."""
    apply(device, changes(read(device, proto), wanted), owner)
