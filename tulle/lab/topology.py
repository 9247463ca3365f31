"""The plan of a lab: every name and address, computed from the options alone.

Pure (no I/O), so the whole layout and every refusal of bad input is tested
without root, and `lab up` validates everything before it creates anything.

Layout (contract with the other parts, see ARCHITECTURE.md):

  fabric netns  tulle-<lab>-fabric   one bridge per L2 segment (seg0, seg1); owns .254
                                     of segment 0: "outside the cluster", home of etcd
  router netns  tulle-<lab>-router   only with 2 segments: a leg on each at .1, forwarding
  node netns    tulle-<lab>-n<k>     underlay eth0 at .10+k of its segment; a route to the
                                     other segment via the router; NO default route
  pod netns     tulle-<lab>-pod-<namespace>_<pod>   ('_' is in no Kubernetes name: unambiguous)

Underlay: segment 0 = 198.51.100.0/24, segment 1 = 203.0.113.0/24 (the
documentation ranges, never anything a host could really use).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from tulle.errors import ConfigError

SEGMENTS = (ipaddress.IPv4Network("198.51.100.0/24"), ipaddress.IPv4Network("203.0.113.0/24"))
DEFAULT_NETWORK = ipaddress.IPv4Network("10.244.0.0/16")
DEFAULT_SUBNET_LEN = 24
BACKENDS = ("host-gw", "vxlan", "udp", "bgp")
DEFAULT_ASN = 64512         # the cluster AS of --backend bgp (Calico's default)
TOR_ASN = 64513             # the router netns' AS with --tor-bgp (eBGP to every node)
STORES = ("sqlite", "etcd")
MAX_NODES = 60
ROUTER_HOST = 1
FABRIC_HOST = 254
NODE_HOST_BASE = 10
ETCD_PORT = 2379
METRICS_PORT = 9109
UNDERLAY_DEV = "eth0"      # in a node netns
STATE_ROOT = "/run/tulle/labs"

_LAB_NAME = re.compile(r"^[a-z][a-z0-9]{0,11}$")
# Lab pods are DNS-1123 subdomains of at most 63 characters (what a generated Deployment
# pod name reaches at most), in a namespace that is a DNS-1123 label.
_POD_NAME = re.compile(r"^[a-z0-9]([a-z0-9.-]{0,61}[a-z0-9])?$")
_NAMESPACE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_NODE_NAME = re.compile(r"^n([1-9][0-9]*)$")

# Ranges a pod network must not overlap: the underlay, and what a host uses for itself.
_RESERVED = (*SEGMENTS, ipaddress.IPv4Network("127.0.0.0/8"), ipaddress.IPv4Network("169.254.0.0/16"),
             ipaddress.IPv4Network("224.0.0.0/4"), ipaddress.IPv4Network("240.0.0.0/4"),
             ipaddress.IPv4Network("0.0.0.0/8"))


@dataclass(frozen=True)
class Segment:
    index: int
    cidr: ipaddress.IPv4Network
    bridge: str                           # in the fabric netns
    router_ip: ipaddress.IPv4Interface    # the router's leg (.1)

    @property
    def router_leg(self) -> str:
        """Router-side veth name (in the router netns); the fabric end is `r-<bridge>`."""
        return self.bridge


@dataclass(frozen=True)
class Node:
    name: str                             # n1, n2, ...
    index: int
    segment: int
    ip: ipaddress.IPv4Interface           # underlay address (with the segment's prefix)
    netns: str                            # netns name

    @property
    def fabric_port(self) -> str:
        """The veth end in the fabric netns (enslaved to the segment bridge)."""
        return f"u-{self.name}"


@dataclass(frozen=True)
class Plan:
    lab: str
    nodes: tuple[Node, ...]
    segments: tuple[Segment, ...]
    backend: str
    store: str
    network: ipaddress.IPv4Network
    subnet_len: int
    route_reflectors: int = 0             # bgp: the first N nodes reflect (0: node-to-node mesh)
    tor_bgp: bool = False                 # bgp: the router netns runs BIRD as a top-of-rack peer
    asn: int = DEFAULT_ASN                # bgp: the cluster AS

    @property
    def fabric_netns(self) -> str:
        return f"tulle-{self.lab}-fabric"

    @property
    def router_netns(self) -> str | None:
        return f"tulle-{self.lab}-router" if len(self.segments) > 1 else None

    @property
    def fabric_ip(self) -> ipaddress.IPv4Interface:
        return fabric_ip()

    @property
    def state_dir(self) -> str:
        return state_dir(self.lab)

    def node(self, name: str) -> Node:
        for n in self.nodes:
            if n.name == name:
                return n
        raise ConfigError(f"lab {self.lab!r} has no node {name!r} (nodes: {', '.join(n.name for n in self.nodes)})")

    def routes_of(self, node: Node) -> list[tuple[ipaddress.IPv4Network, ipaddress.IPv4Address]]:
        """Underlay routes of a node: the other segments via the router of its own segment."""
        via = self.segments[node.segment].router_ip.ip
        return [(s.cidr, via) for s in self.segments if s.index != node.segment]

    def store_url(self, from_cli: bool = False) -> str:
        """The store URL the agents use; `from_cli`: as a process in the root netns reaches it."""
        if self.store == "sqlite":
            return f"sqlite://{self.state_dir}/store.db"
        url = f"etcd://{self.fabric_ip.ip}:{ETCD_PORT}"
        return f"{url}?netns={self.fabric_netns}" if from_cli else url


def fabric_ip() -> ipaddress.IPv4Interface:
    return ipaddress.IPv4Interface(f"{SEGMENTS[0][FABRIC_HOST]}/{SEGMENTS[0].prefixlen}")


def state_dir(lab: str) -> str:
    return f"{STATE_ROOT}/{lab}"


def node_netns(lab: str, node: str) -> str:
    return f"tulle-{lab}-{node}"


def pod_netns(lab: str, pod: str, namespace: str = "default") -> str:
    return f"tulle-{lab}-pod-{namespace}_{pod}"


def check_lab_name(lab: str) -> str:
    if not _LAB_NAME.match(lab or ""):
        raise ConfigError(f"bad lab name {lab!r}: use 1-12 lower-case letters and digits, starting with a letter")
    return lab


def check_pod_name(pod: str) -> str:
    if not _POD_NAME.match(pod or ""):
        raise ConfigError(f"bad pod name {pod!r}: use 1-63 lower-case letters, digits, '-' and '.', "
                          f"starting and ending with a letter or digit")
    return pod


def check_namespace(namespace: str) -> str:
    if not _NAMESPACE.match(namespace or ""):
        raise ConfigError(f"bad namespace {namespace!r}: use 1-63 lower-case letters, digits and '-', "
                          f"starting and ending with a letter or digit")
    return namespace


def node_index(name: str) -> int:
    m = _NODE_NAME.match(name or "")
    if not m:
        raise ConfigError(f"bad node name {name!r}: lab nodes are named n1, n2, ...")
    return int(m.group(1))


def check_network(network: str | ipaddress.IPv4Network, subnet_len: int, nodes: int,
                  backend: str = "vxlan") -> ipaddress.IPv4Network:
    """The pod CIDR must be a valid Flannel config, clear of the underlay and host ranges,
    and hold a subnet per node."""
    from tulle.cluster import netconfig

    try:
        net = ipaddress.IPv4Network(str(network), strict=True)
    except ValueError as exc:
        raise ConfigError(f"bad pod network {network!r}: {exc}") from None
    for reserved in _RESERVED:
        if net.overlaps(reserved):
            what = "the lab underlay" if reserved in SEGMENTS else "a reserved range"
            raise ConfigError(f"pod network {net} overlaps {what} {reserved}")
    cfg = netconfig.build(str(net), subnet_len, backend)
    if cfg.service_network is None:
        raise ConfigError(f"pod network {net} covers the ServiceNetwork {netconfig.DEFAULT_SERVICE_NETWORK} "
                          f"the lab gives Services: choose a pod network outside it")
    usable = sum(1 for _ in cfg.subnets())
    if usable < nodes:
        raise ConfigError(f"network {net} with SubnetLen {subnet_len} has {usable} node subnet(s), "
                          f"fewer than the {nodes} nodes asked for")
    return net


def check_bgp_options(backend: str, nodes: int, segments: int, route_reflectors: int, tor_bgp: bool,
                      asn: int | None) -> int:
    """The bgp-only options (--route-reflectors, --tor-bgp, --asn); returns the cluster AS.

    --tor-bgp needs --segments 2: the top-of-rack peer runs in the router netns, and
    the lab only has a router when it joins two segments (with one segment every node
    already reaches every other natively, so a ToR would add nothing)."""
    given = [opt for opt, on in (("--route-reflectors", bool(route_reflectors)), ("--tor-bgp", tor_bgp),
                                 ("--asn", asn is not None)) if on]
    if backend != "bgp":
        if given:
            raise ConfigError(f"{', '.join(given)}: only for --backend bgp (got --backend {backend})")
        return DEFAULT_ASN
    if isinstance(route_reflectors, bool) or not isinstance(route_reflectors, int) or \
            not 0 <= route_reflectors <= nodes:
        raise ConfigError(f"--route-reflectors must be between 0 (node-to-node mesh) and the number of nodes "
                          f"({nodes}), got {route_reflectors}")
    asn = DEFAULT_ASN if asn is None else asn
    if isinstance(asn, bool) or not isinstance(asn, int) or not 1 <= asn <= 4294967295:
        raise ConfigError(f"--asn must be an AS number in 1..4294967295, got {asn}")
    if tor_bgp and segments < 2:
        raise ConfigError("--tor-bgp needs --segments 2: the top-of-rack BGP peer runs in the lab's router, "
                          "which only exists when a router joins two segments")
    if tor_bgp and asn == TOR_ASN:
        raise ConfigError(f"--asn {asn} is the top-of-rack router's AS with --tor-bgp (eBGP needs two ASes); "
                          f"choose another, e.g. {DEFAULT_ASN}")
    return asn


def plan(lab: str = "lab", nodes: int = 3, segments: int = 1, backend: str = "vxlan", store: str = "sqlite",
         network: str | ipaddress.IPv4Network = DEFAULT_NETWORK, subnet_len: int = DEFAULT_SUBNET_LEN,
         route_reflectors: int = 0, tor_bgp: bool = False, asn: int | None = None) -> Plan:
    """Validate the options and lay the lab out; ConfigError names the bad option."""
    check_lab_name(lab)
    if backend not in BACKENDS:
        raise ConfigError(f"unknown backend {backend!r}; the lab supports: {', '.join(BACKENDS)}")
    if store not in STORES:
        raise ConfigError(f"unknown store {store!r}; the lab supports: {', '.join(STORES)}")
    if not isinstance(nodes, int) or not 1 <= nodes <= MAX_NODES:
        raise ConfigError(f"--nodes must be between 1 and {MAX_NODES}, got {nodes}")
    if not isinstance(segments, int) or not 1 <= segments <= len(SEGMENTS):
        raise ConfigError(f"--segments must be 1 or {len(SEGMENTS)} (the lab has {len(SEGMENTS)} underlay "
                          f"ranges: {', '.join(map(str, SEGMENTS))}), got {segments}")
    if backend == "host-gw" and segments > 1:
        raise ConfigError("backend host-gw needs every node on one L2 segment (a route 'via' a node only works "
                          "between neighbours); use --segments 1, or --backend vxlan/udp across segments")
    cluster_asn = check_bgp_options(backend, nodes, segments, route_reflectors, tor_bgp, asn)
    net = check_network(network, subnet_len, nodes, backend)
    segs = tuple(
        Segment(i, cidr, f"seg{i}", ipaddress.IPv4Interface(f"{cidr[ROUTER_HOST]}/{cidr.prefixlen}"))
        for i, cidr in enumerate(SEGMENTS[:segments]))
    laid = []
    for k in range(1, nodes + 1):
        seg = segs[(k - 1) % segments]
        laid.append(Node(f"n{k}", k, seg.index,
                         ipaddress.IPv4Interface(f"{seg.cidr[NODE_HOST_BASE + k]}/{seg.cidr.prefixlen}"),
                         node_netns(lab, f"n{k}")))
    return Plan(lab, tuple(laid), segs, backend, store, net, subnet_len, route_reflectors, tor_bgp, cluster_asn)


def is_lab_netns(lab: str, name: str) -> bool:
    """Whether netns `name` is one of lab `lab`'s (exact shapes only: never another lab's or a test's)."""
    rest = name[len(f"tulle-{lab}-"):] if name.startswith(f"tulle-{lab}-") else None
    if rest is None:
        return False
    if rest in ("fabric", "router") or _NODE_NAME.match(rest):
        return True
    namespace, sep, pod = rest[4:].partition("_") if rest.startswith("pod-") else ("", "", "")
    return bool(sep and _NAMESPACE.match(namespace) and _POD_NAME.match(pod))
