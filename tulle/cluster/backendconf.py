"""The network config's "Backend" object: one typed config per backend type.

Flannel's shape, with bgp's fields in the same style (every field optional):

  host-gw  {"Type": "host-gw"}
  vxlan    {"Type": "vxlan", "VNI": 1, "Port": 8472, "DirectRouting": false}
  udp      {"Type": "udp", "Port": 8285}
  bgp      {"Type": "bgp",
            "ASNumber": 64512,                 cluster AS (1..4294967295), every node's
            "BlockSize": 26,                   prefix length of an IPAM block (tulle-blocks)
            "Pools": ["10.244.0.0/16"],        block pools; default [Network]; inside Network, disjoint
            "RouteReflectors": ["n1", "n2"],   node names; empty: node-to-node mesh
            "RRClusterID": "244.0.0.1",        the reflectors' shared cluster id
            "CrossSubnet": true,               VXLAN (tulle-vxlan) to nodes on other segments
            "VNI": 4096, "Port": 4789,         of that VXLAN (Calico's values)
            "ToR": {"ASNumber": 64513,         top-of-rack peering (eBGP) on every segment;
                    "Peers": {"198.51.100.0/24": "198.51.100.1"}}}   router per segment
                                                (default: the segment's first address)

TYPES maps each type name to its parser and the defaults the stored object shows
(Flannel fills VNI/Port in). `fill` checks the object, its Type and Flannel's shared
fields (VNI, Port, DirectRouting: wrong is wrong under any type, so a config keeps
meaning the same when its Type changes) and fills those defaults in; `parse` gives
the typed config, each mistake a ConfigError naming the field (`Backend.VNI 0 is
out of range 1..16777215`). Pure, and below the agent: the network config validates
through it, and the agent's backend factories receive what it returns instead of
reading a dict again.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Mapping, Union

from tulle.cluster.blocks import DEFAULT_BLOCK_SIZE, validate_block_size
from tulle.errors import ConfigError

IPv4Net = ipaddress.IPv4Network
IPv4Addr = ipaddress.IPv4Address

DEFAULT_TYPE = "vxlan"           # tulle's default (Flannel's is udp)
MAX_VNI = (1 << 24) - 1
MAX_PORT = 65535
VXLAN_VNI = 1
VXLAN_PORT = 8472                # Flannel's (and the Linux kernel's legacy) VXLAN port
UDP_PORT = 8285                  # Flannel's udp port
MIN_ASN, MAX_ASN = 1, 4294967295
DEFAULT_ASN = 64512              # Calico's default cluster AS
DEFAULT_TOR_ASN = 64513
DEFAULT_CLUSTER_ID = IPv4Addr("244.0.0.1")
BGP_VNI = 4096                   # CrossSubnet's VXLAN: Calico's VNI and port
BGP_PORT = 4789


# --- typed reads of one field (the error names it) ----------------------------------

def integer(obj: Mapping[str, Any], name: str, default: int, lo: int, hi: int, where: str = "Backend.") -> int:
    """obj[name] as an int in lo..hi; `default` when absent or null."""
    value = obj.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{where}{name}: expected an integer, got {value!r}")
    if not lo <= value <= hi:
        raise ConfigError(f"{where}{name} {value} is out of range {lo}..{hi}")
    return value


def flag(obj: Mapping[str, Any], name: str, default: bool, where: str = "Backend.") -> bool:
    """obj[name] as true/false; `default` when absent or null."""
    value = obj.get(name)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise ConfigError(f"{where}{name}: expected true or false, got {value!r}")
    return value


def validate_asn(asn: Any, what: str = "AS number") -> int:
    """An AS number BIRD accepts (4-byte ASNs included)."""
    if isinstance(asn, bool) or not isinstance(asn, int) or not MIN_ASN <= asn <= MAX_ASN:
        raise ConfigError(f"{what} must be within [{MIN_ASN}, {MAX_ASN}], got {asn!r}")
    return asn


def validate_pools(pools: list[IPv4Net]) -> None:
    """Pools must not overlap each other (an address would belong to two pools)."""
    for i, a in enumerate(pools):
        for b in pools[i + 1:]:
            if a.overlaps(b):
                raise ConfigError(f"IP pools {a} and {b} overlap")


# --- the typed configs ------------------------------------------------------------------

@dataclass(frozen=True)
class HostGwConfig:
    """host-gw has no fields of its own."""

    TYPE: ClassVar[str] = "host-gw"


@dataclass(frozen=True)
class VxlanConfig:
    TYPE: ClassVar[str] = "vxlan"

    vni: int = VXLAN_VNI
    port: int = VXLAN_PORT
    direct_routing: bool = False     # plain routes to peers on a connected underlay subnet


@dataclass(frozen=True)
class UdpConfig:
    TYPE: ClassVar[str] = "udp"

    port: int = UDP_PORT


@dataclass(frozen=True)
class Tor:
    """The top-of-rack routers: an AS and, per underlay segment, the router's address
    (a segment without one uses its first host address, the usual gateway)."""

    asn: int
    addresses: tuple[tuple[IPv4Net, IPv4Addr], ...] = ()

    def address_for(self, connected: list[IPv4Net]) -> IPv4Addr:
        for net in connected:
            for seg, addr in self.addresses:
                if addr in net or seg == net:
                    return addr
        if not connected:
            raise ConfigError("ToR: this node has no underlay subnet to find its top-of-rack router on")
        return connected[0].network_address + 1


@dataclass(frozen=True)
class BgpConfig:
    TYPE: ClassVar[str] = "bgp"

    asn: int = DEFAULT_ASN
    block_size: int = DEFAULT_BLOCK_SIZE
    pools: tuple[IPv4Net, ...] = ()          # empty: the whole Network
    reflectors: frozenset[str] = frozenset()
    cluster_id: IPv4Addr = DEFAULT_CLUSTER_ID
    cross_subnet: bool = True
    vni: int = BGP_VNI
    port: int = BGP_PORT
    tor: Tor | None = None


BackendConfig = Union[HostGwConfig, VxlanConfig, UdpConfig, BgpConfig]


# --- one parser per type (the object comes filled: Type checked, defaults in) -----------

def parse_host_gw(obj: Mapping[str, Any], network: IPv4Net | None = None) -> HostGwConfig:
    return HostGwConfig()


def parse_vxlan(obj: Mapping[str, Any], network: IPv4Net | None = None) -> VxlanConfig:
    return VxlanConfig(vni=integer(obj, "VNI", VXLAN_VNI, 1, MAX_VNI),
                       port=integer(obj, "Port", VXLAN_PORT, 1, MAX_PORT),
                       direct_routing=flag(obj, "DirectRouting", False))


def parse_udp(obj: Mapping[str, Any], network: IPv4Net | None = None) -> UdpConfig:
    return UdpConfig(port=integer(obj, "Port", UDP_PORT, 1, MAX_PORT))


def _pools(raw_pools: Any, network: IPv4Net | None) -> list[IPv4Net]:
    """Backend.Pools: CIDRs inside Network (when known) that do not overlap."""
    raw_pools = raw_pools or []
    if not isinstance(raw_pools, list):
        raise ConfigError(f"Backend.Pools: must be a list of CIDRs, got {raw_pools!r}")
    pools: list[IPv4Net] = []
    for i, raw in enumerate(raw_pools):
        try:
            pools.append(IPv4Net(raw))
        except (ValueError, TypeError):
            raise ConfigError(f"Backend.Pools[{i}]: {raw!r} is not an IPv4 CIDR") from None
        if network is not None and not pools[-1].subnet_of(network):
            raise ConfigError(f"Backend.Pools[{i}]: {raw} is not inside Network {network}")
    try:
        validate_pools(pools)
    except ConfigError as exc:
        raise ConfigError(f"Backend.Pools: {exc.msg}") from None
    return pools


def _tor(raw: Any) -> Tor | None:
    """Backend.ToR: absent/false for none, true for every default, or an object."""
    if raw is None or raw is False:
        return None
    if raw is True:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"Backend.ToR: must be an object like {{\"ASNumber\": 64513}}, got {raw!r}")
    asn = validate_asn(raw.get("ASNumber", DEFAULT_TOR_ASN), "Backend.ToR.ASNumber")
    table = raw.get("Peers") or {}
    if not isinstance(table, dict):
        raise ConfigError("Backend.ToR.Peers: must map an underlay segment CIDR to its router's address")
    addresses = []
    for seg, addr in table.items():
        try:
            addresses.append((IPv4Net(seg), IPv4Addr(addr)))
        except (ValueError, TypeError):
            raise ConfigError(f"Backend.ToR.Peers: {seg!r} → {addr!r} is not CIDR → IPv4 address") from None
        if addresses[-1][1] not in addresses[-1][0]:
            raise ConfigError(f"Backend.ToR.Peers: router {addr} is not on its segment {seg}")
    return Tor(asn, tuple(addresses))


def parse_bgp(obj: Mapping[str, Any], network: IPv4Net | None = None) -> BgpConfig:
    """`network` (the config's Network) bounds the pools and, without pools, the block size."""
    vni = integer(obj, "VNI", BGP_VNI, 1, MAX_VNI)
    port = integer(obj, "Port", BGP_PORT, 1, MAX_PORT)
    pools = _pools(obj.get("Pools"), network)
    block_size = integer(obj, "BlockSize", DEFAULT_BLOCK_SIZE, 1, 32)
    for pool in pools or ([network] if network is not None else []):
        try:
            validate_block_size(pool, block_size)
        except ConfigError as exc:
            raise ConfigError(f"Backend.BlockSize: {exc.msg}") from None
    rrs = obj.get("RouteReflectors") or []
    if not isinstance(rrs, list) or not all(isinstance(n, str) and n for n in rrs):
        raise ConfigError(f"Backend.RouteReflectors: must be a list of node names, got {rrs!r}")
    try:
        cluster_id = IPv4Addr(obj.get("RRClusterID") or str(DEFAULT_CLUSTER_ID))
    except ValueError:
        raise ConfigError(f"Backend.RRClusterID: {obj.get('RRClusterID')!r} is not an IPv4 address") from None
    cross = flag(obj, "CrossSubnet", True)
    asn = validate_asn(obj.get("ASNumber", DEFAULT_ASN), "Backend.ASNumber")
    tor = _tor(obj.get("ToR"))
    if tor is not None and tor.asn == asn:
        raise ConfigError(f"Backend.ToR.ASNumber {tor.asn} must differ from Backend.ASNumber "
                          f"(the nodes peer with the top-of-rack router over eBGP)")
    return BgpConfig(asn=asn, block_size=block_size, pools=tuple(pools), reflectors=frozenset(rrs),
                     cluster_id=cluster_id, cross_subnet=cross, vni=vni, port=port, tor=tor)


# --- the registry -----------------------------------------------------------------------

@dataclass(frozen=True)
class BackendType:
    parse: Callable[[Mapping[str, Any], IPv4Net | None], BackendConfig]
    defaults: Mapping[str, Any]      # shown in the stored object when absent, as Flannel does


TYPES: dict[str, BackendType] = {
    "host-gw": BackendType(parse_host_gw, {}),
    "vxlan": BackendType(parse_vxlan, {"VNI": VXLAN_VNI, "Port": VXLAN_PORT, "DirectRouting": False}),
    "udp": BackendType(parse_udp, {"Port": UDP_PORT}),
    "bgp": BackendType(parse_bgp, {"ASNumber": DEFAULT_ASN, "BlockSize": DEFAULT_BLOCK_SIZE, "CrossSubnet": True,
                                   "VNI": BGP_VNI, "Port": BGP_PORT}),
}
NAMES = tuple(sorted(TYPES))     # the backend types a network config may name


def fill(raw: Any) -> dict[str, Any]:
    """The "Backend" object as the store keeps it: an object (absent: {}), its Type known
    (default vxlan), the type's defaults for absent fields; a null field counts as absent."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"Backend: expected an object, got {raw!r}")
    btype = raw.get("Type", DEFAULT_TYPE)
    if not isinstance(btype, str) or btype not in TYPES:
        raise ConfigError(f"Backend.Type: unknown backend {btype!r}; known backends: {', '.join(NAMES)}")
    out = {"Type": btype, **TYPES[btype].defaults, **{k: v for k, v in raw.items() if v is not None}}
    integer(out, "VNI", VXLAN_VNI, 1, MAX_VNI)
    integer(out, "Port", VXLAN_PORT, 1, MAX_PORT)
    flag(out, "DirectRouting", False)
    return out


def parse(raw: Any, network: IPv4Net | None = None) -> BackendConfig:
    """The typed config of a "Backend" object (filled first); `network` is the config's
    Network, which bgp's pools must lie in."""
    obj = fill(raw)
    return TYPES[obj["Type"]].parse(obj, network)
