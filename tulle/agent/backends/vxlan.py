"""The vxlan backend (Flannel's vxlan): pods of other nodes are reached through one
VTEP per node, `tulle.<VNI>`, with no learning — every peer is programmed from
its lease, exactly as Flannel does it:

  per remote lease    neighbour  <remote subnet>.0 → remote VtepMAC   (permanent, on the VTEP)
                      FDB        remote VtepMAC    → remote PublicIP  (the VTEP's underlay peer)
                      route      <remote subnet> via <remote subnet>.0 dev tulle.<VNI> onlink

With DirectRouting, a peer whose PublicIP sits on a directly connected underlay
subnet gets a plain route `<subnet> via <PublicIP>` instead (no encapsulation),
the others keep the VXLAN path — so a cluster spanning routed segments works.

Routes this backend owns carry protocol number 251 (`ip route ... proto 251`), so
sync() can find and remove exactly its own routes (host-gw uses 250). Neighbour
and FDB entries are owned by the VTEP itself: every permanent entry on it is ours.

sync() is the full converge (it reads the kernel back and repairs drift: the
reconcile tick); update() applies only the difference between the plan it last
made true and the new one (`changes`), with no kernel dumps: the store-change
path, so a join costs every node three netlink writes instead of three dumps.

The VTEP's MAC is published in the lease (BackendData {"VNI", "VtepMAC"}), so it
must stay stable: prepare() keeps an existing compatible device with its MAC,
and a new device gets a MAC derived from (PublicIP, VNI), so even a rebuilt VTEP
keeps the address other nodes have programmed.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
import socket
import threading
from dataclasses import dataclass, field
from typing import Any

from tulle.agent import log
from tulle.agent.backends.base import BackendInfo, NodeInfo, SkipWarnings
from tulle.cluster.lease import Lease
from tulle.errors import ConfigError, TulleError

TYPE = "vxlan"
PROTO = 251                 # rtm_protocol of every route this backend installs
DEFAULT_VNI = 1
DEFAULT_PORT = 8472         # Flannel's (and the Linux kernel's legacy) VXLAN port
OVERHEAD = 50               # outer IPv4 20 + UDP 8 + VXLAN 8 + inner Ethernet 14
MAX_VNI = (1 << 24) - 1

_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")


@dataclass(frozen=True)
class VxlanConfig:
    vni: int = DEFAULT_VNI
    port: int = DEFAULT_PORT
    direct_routing: bool = False

    @property
    def device(self) -> str:
        return f"tulle.{self.vni}"


def _int_field(cfg: dict[str, Any], key: str, default: int, lo: int, hi: int) -> int:
    value = cfg.get(key)
    if value is None or (value == 0 and lo > 0):   # Flannel treats Port 0 as "default"
        return default
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ConfigError(f"Backend.{key}: must be an integer in {lo}..{hi}, got {value!r}")
    return value


def load_config(cfg: dict[str, Any]) -> VxlanConfig:
    """The "Backend" object of the network config (Flannel's field names)."""
    if not isinstance(cfg, dict):
        raise ConfigError(f"Backend: must be an object, got {type(cfg).__name__}")
    direct = cfg.get("DirectRouting", False)
    if not isinstance(direct, bool):
        raise ConfigError(f"Backend.DirectRouting: must be true or false, got {direct!r}")
    return VxlanConfig(
        vni=_int_field(cfg, "VNI", DEFAULT_VNI, 0, MAX_VNI),
        port=_int_field(cfg, "Port", DEFAULT_PORT, 1, 65535),
        direct_routing=direct,
    )


def vtep_mac(public_ip: ipaddress.IPv4Address, vni: int) -> str:
    """A locally administered unicast MAC derived from the node's identity, so a
    VTEP rebuilt from scratch (after a reboot, a deleted device) keeps its address."""
    digest = hashlib.sha256(f"tulle-vtep/{public_ip}/{vni}".encode()).digest()
    return ":".join(f"{b:02x}" for b in (0x0E, *digest[:5]))


# --- the pure core: which entries the remote leases ask for --------------------

@dataclass(frozen=True)
class RouteSpec:
    """One route this backend wants (compared by these fields only)."""

    dst: ipaddress.IPv4Network
    gw: ipaddress.IPv4Address
    dev: str
    onlink: bool


@dataclass
class Plan:
    neighbours: dict[ipaddress.IPv4Address, str] = field(default_factory=dict)
    fdb: dict[str, ipaddress.IPv4Address] = field(default_factory=dict)
    routes: dict[ipaddress.IPv4Network, RouteSpec] = field(default_factory=dict)
    skipped: list[tuple[Lease, str]] = field(default_factory=list)


def _lease_mac(lease: Lease, vni: int) -> str:
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


def plan(remotes: list[Lease], *, config: VxlanConfig, underlay_dev: str,
         connected: list[ipaddress.IPv4Network],
         own_subnet: ipaddress.IPv4Network | None = None) -> Plan:
    """Exactly the neighbours, FDB entries and routes `remotes` need. Unusable
    leases (another backend type, bad BackendData, a clash with an earlier lease)
    are listed in `skipped` with the reason instead."""
    out = Plan()
    for lease in sorted(remotes, key=lambda l: (l.subnet, l.public_ip)):
        if lease.backend_type != TYPE:
            out.skipped.append((lease, f"backend type {lease.backend_type!r} is not {TYPE!r}"))
            continue
        if lease.subnet in out.routes or (own_subnet is not None and lease.subnet.overlaps(own_subnet)):
            out.skipped.append((lease, "subnet overlaps another lease"))
            continue
        if config.direct_routing and any(lease.public_ip in net for net in connected):
            out.routes[lease.subnet] = RouteSpec(lease.subnet, lease.public_ip, underlay_dev, False)
            continue
        try:
            mac = _lease_mac(lease, config.vni)
        except ValueError as exc:
            out.skipped.append((lease, str(exc)))
            continue
        if out.fdb.get(mac, lease.public_ip) != lease.public_ip:
            out.skipped.append((lease, f"VtepMAC {mac} is already used by {out.fdb[mac]}"))
            continue
        gw = lease.subnet.network_address
        out.neighbours[gw] = mac
        out.fdb[mac] = lease.public_ip
        out.routes[lease.subnet] = RouteSpec(lease.subnet, gw, config.device, True)
    return out


@dataclass
class Changes:
    """What turns one plan's kernel state into another's (removals first, then additions)."""

    routes_del: list[RouteSpec] = field(default_factory=list)
    neighbours_del: list[ipaddress.IPv4Address] = field(default_factory=list)
    fdb_del: list[tuple[str, ipaddress.IPv4Address]] = field(default_factory=list)
    neighbours_set: dict[ipaddress.IPv4Address, str] = field(default_factory=dict)
    fdb_add: list[tuple[str, ipaddress.IPv4Address]] = field(default_factory=list)
    routes_set: list[RouteSpec] = field(default_factory=list)

    def __bool__(self) -> bool:
        return any((self.routes_del, self.neighbours_del, self.fdb_del, self.neighbours_set, self.fdb_add,
                    self.routes_set))


def changes(old: Plan, new: Plan) -> Changes:
    """The entries to remove and to write to go from `old` to `new` (pure; both complete plans)."""
    out = Changes()
    out.routes_del = [spec for dst, spec in old.routes.items() if dst not in new.routes]
    out.routes_set = [spec for dst, spec in new.routes.items() if old.routes.get(dst) != spec]
    out.neighbours_del = [ip for ip in old.neighbours if ip not in new.neighbours]
    out.neighbours_set = {ip: mac for ip, mac in new.neighbours.items() if old.neighbours.get(ip) != mac}
    old_fdb, new_fdb = set(old.fdb.items()), set(new.fdb.items())
    out.fdb_del = sorted(old_fdb - new_fdb, key=str)
    out.fdb_add = sorted(new_fdb - old_fdb, key=str)
    return out


# --- the kernel shell -----------------------------------------------------------

class VxlanBackend:
    """Runs in the netns of the calling thread (the node's); holds no threads."""

    type_name = TYPE

    def __init__(self, node: NodeInfo, config: VxlanConfig) -> None:
        self.node = node
        self.config = config
        self.mac = ""
        self.own: Lease | None = None
        self._lock = threading.Lock()   # the agent may sync from its watch and reconcile threads
        self._skips = SkipWarnings("vxlan: lease skipped", "subnet")
        self._applied: Plan | None = None   # what the kernel held after the last sync/update
        self._connected: list[ipaddress.IPv4Network] = []   # the underlay subnets seen by the last sync

    @property
    def device(self) -> str:
        return self.config.device

    @property
    def mtu(self) -> int:
        return self.node.underlay_mtu - OVERHEAD

    # contract ------------------------------------------------------------------

    def prepare(self) -> BackendInfo:
        with self._lock:
            self._ensure_device()
            return BackendInfo(backend_data={"VNI": self.config.vni, "VtepMAC": self.mac}, mtu=self.mtu)

    def start(self, own: Lease) -> None:
        with self._lock:
            self.own = own
            self._applied = None   # a new own subnet changes the plan: the next pass converges fully
            self._ensure_device()
            self._ensure_address()

    def sync(self, remotes: list[Lease]) -> None:
        with self._lock:
            self._sync(remotes)

    def update(self, remotes: list[Lease]) -> None:
        """The same end state as sync(), writing only what changed since the last pass and
        reading nothing back; a full sync when there was no good last pass or a write fails."""
        with self._lock:
            if self._applied is None:
                self._sync(remotes)
                return
            wanted = self._plan(remotes, self._connected)
            todo = changes(self._applied, wanted)
            self._applied = None   # until every write went through
            try:
                apply_changes(self.device, todo, PROTO)
            except TulleError as exc:
                log.warning("vxlan: incremental update failed, converging fully", error=exc.msg)
                self._sync(remotes)
                return
            self._applied = wanted

    def _sync(self, remotes: list[Lease]) -> None:
        from tulle.kernel import addrs

        if self.own is None:
            raise TulleError("vxlan backend: sync() before start()")
        self._applied = None
        self._ensure_device()
        self._ensure_address()
        connected = [a.network for a in addrs.list_on(self.node.underlay_dev, socket.AF_INET)]
        wanted = self._plan(remotes, connected)
        self._converge_neighbours(wanted.neighbours)
        self._converge_fdb(wanted.fdb)
        self._converge_routes(wanted.routes)
        self._applied, self._connected = wanted, connected

    def _plan(self, remotes: list[Lease], connected: list[ipaddress.IPv4Network]) -> Plan:
        own = self.own
        assert own is not None
        remotes = [l for l in remotes if (l.subnet, l.public_ip) != (own.subnet, own.public_ip)]
        wanted = plan(remotes, config=self.config, underlay_dev=self.node.underlay_dev,
                      connected=connected, own_subnet=own.subnet)
        self._skips.leases(wanted.skipped)
        return wanted

    def stop(self) -> None:
        """Nothing runs in the background; the kernel keeps forwarding on its own."""

    def teardown(self) -> None:
        from tulle.kernel import links, routes

        with self._lock:
            self._applied = None
            for route in self._own_routes():
                routes.delete(route)   # direct routes live on the underlay, not the VTEP
            if links.delete(self.device):
                log.info("vxlan device removed", dev=self.device)

    # device ----------------------------------------------------------------------

    def _ensure_device(self) -> None:
        self.mac = ensure_vtep(self.device, self.config.vni, self.config.port, self.node.public_ip,
                               self.node.underlay_dev, self.mtu, self.mac)

    def _ensure_address(self) -> None:
        """Exactly <own subnet>.0/32 on the VTEP, and the VTEP up."""
        from tulle.kernel import addrs, links

        if self.own is None:
            return
        want = ipaddress.IPv4Interface(f"{self.own.subnet.network_address}/32")
        for addr in addrs.list_on(self.device, socket.AF_INET):
            if addr != want:
                addrs.delete(self.device, addr)
        addrs.ensure(self.device, want)
        if not links.require(self.device).up:
            links.set_up(self.device)

    # entries ---------------------------------------------------------------------

    def _converge_neighbours(self, wanted: dict[ipaddress.IPv4Address, str]) -> None:
        converge_neighbours(self.device, wanted)

    def _converge_fdb(self, wanted: dict[str, ipaddress.IPv4Address]) -> None:
        converge_fdb(self.device, wanted)

    def _own_routes(self) -> list:
        return owned_routes(PROTO)

    def _converge_routes(self, wanted: dict[ipaddress.IPv4Network, RouteSpec]) -> None:
        converge_routes(wanted, PROTO)


# --- kernel helpers (shared with the bgp backend's CrossSubnet VXLAN) -------------

def ensure_vtep(device: str, vni: int, port: int, local: ipaddress.IPv4Address, underlay_dev: str,
                mtu: int, mac: str = "") -> str:
    """The VTEP `device` with this VNI/port/local/underlay and no learning; returns its MAC.
    A compatible device is kept (adopting its MAC when `mac` is empty: other nodes may
    already know it), an incompatible one rebuilt, a new one gets `mac` or vtep_mac()."""
    from tulle.kernel import links
    from tulle.kernel import vxlan as kvxlan

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


def converge_neighbours(device: str, wanted: dict[ipaddress.IPv4Address, str]) -> None:
    """Exactly `wanted` (ip → MAC) as the neighbour entries of `device`."""
    from tulle.kernel import neigh

    have = {n.ip: n.mac.lower() for n in neigh.list_on(device)}
    write_neighbours(device, [ip for ip in have if ip not in wanted],
                     {ip: mac for ip, mac in wanted.items() if have.get(ip) != mac})


def converge_fdb(device: str, wanted: dict[str, ipaddress.IPv4Address]) -> None:
    """Exactly `wanted` (MAC → underlay peer) as the FDB entries of `device`."""
    from tulle.kernel import neigh

    have = {(e.mac.lower(), e.dst) for e in neigh.fdb_list(device) if e.dst is not None}
    want = set(wanted.items())
    write_fdb(device, sorted(have - want, key=str), sorted(want - have, key=str))


def owned_routes(proto: int) -> list:
    from tulle.kernel import routes

    return [r for r in routes.list_routes(4) if r.proto == proto]


def converge_routes(wanted: dict[ipaddress.IPv4Network, RouteSpec], proto: int) -> None:
    """Exactly `wanted` as the routes carrying protocol number `proto`."""
    have = {r.dst: r for r in owned_routes(proto)}
    specs = {dst: RouteSpec(r.dst, r.gw, r.dev, r.onlink) for dst, r in have.items()}
    write_routes([r for dst, r in have.items() if wanted.get(dst) != specs[dst]], [], proto)  # type: ignore[arg-type]
    write_routes([], [spec for dst, spec in wanted.items() if specs.get(dst) != spec], proto)


def apply_changes(device: str, todo: Changes, proto: int) -> None:
    """Write `todo` to the kernel (no reads): routes go before, and come after, their
    neighbour and FDB entries, so a route never points into a VTEP that cannot deliver."""
    write_routes([_route(spec, proto) for spec in todo.routes_del], [], proto)
    write_neighbours(device, todo.neighbours_del, todo.neighbours_set)
    write_fdb(device, todo.fdb_del, todo.fdb_add)
    write_routes([], todo.routes_set, proto)


# --- the writes (what converge_* and apply_changes both end in) --------------------

def write_neighbours(device: str, remove: list[ipaddress.IPv4Address],
                     put: dict[ipaddress.IPv4Address, str]) -> None:
    from tulle.kernel import neigh

    for ip in remove:
        neigh.delete(device, ip)
        log.info("vxlan neighbour removed", ip=ip)
    for ip, mac in put.items():
        neigh.replace(device, ip, mac)
        log.info("vxlan neighbour set", ip=ip, mac=mac)


def write_fdb(device: str, remove: list[tuple[str, ipaddress.IPv4Address]],
              add: list[tuple[str, ipaddress.IPv4Address]]) -> None:
    from tulle.kernel import neigh

    for mac, dst in remove:
        neigh.fdb_delete(device, mac, dst)
        log.info("vxlan fdb entry removed", mac=mac, dst=dst)
    for mac, dst in add:
        neigh.fdb_append(device, mac, dst)
        log.info("vxlan fdb entry set", mac=mac, dst=dst)


def _route(spec: RouteSpec, proto: int):
    from tulle.kernel import routes

    return routes.Route(dst=spec.dst, gw=spec.gw, dev=spec.dev, onlink=spec.onlink, proto=proto)


def write_routes(remove: list, put: list[RouteSpec], proto: int) -> None:
    """Delete the kernel routes `remove`, then set (replace) each of `put` with protocol `proto`."""
    from tulle.kernel import routes

    for route in remove:
        routes.delete(route)
        log.info("vxlan route removed", dst=route.dst)
    for spec in put:
        routes.replace(_route(spec, proto))
        log.info("vxlan route set", dst=spec.dst, via=spec.gw, dev=spec.dev)


def factory(node: NodeInfo, backend_config: dict[str, Any]) -> VxlanBackend:
    return VxlanBackend(node, load_config(backend_config or {}))
