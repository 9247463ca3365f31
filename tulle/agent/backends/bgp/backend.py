"""The bgp backend: Calico-style routed mode — BIRD 2 tells peers the node's blocks.

Network config (`<prefix>/config`, "Backend" object; every field optional):

  {"Type": "bgp",
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

The node's lease is its registration (PublicIP, TTL liveness, BackendData
{"VtepMAC", "VNI", "ASNumber"}); its subnet carries no pods — pod addresses come
from the store's blocks (tulle.cluster.blocks, plugin tulle-blocks) and pods are
wired by tulle-routed.

  prepare()   the CrossSubnet VTEP (its MAC goes into the lease); BIRD started on a
              config with the node's blocks and no peers yet
  start(own)  remembers the lease
  sync(...)   peers from the remote leases (peers.plan), own blocks from the store →
              BIRD config; when it changed: `bird -p`, then `birdc configure`; the
              CrossSubnet VXLAN entries for blocks whose node is on another segment.
              The agent also calls it when `<prefix>/blocks/` changes
              (`watch_prefixes`), as a new block must be announced at once.
  stop()      `birdc graceful restart`: peers keep our routes as stale, the kernel
              keeps its routes (persist) until the agent is back
  teardown()  BIRD stopped (peers withdraw), its and our routes and the VTEP removed
"""

from __future__ import annotations

import ipaddress
import os
import socket
import threading
from dataclasses import dataclass
from typing import Any

from tulle.agent import log
from tulle.agent.backends.base import BackendInfo, NodeInfo, SkipWarnings
from tulle.agent.backends.bgp import crosssubnet, peers
from tulle.agent.backends.bgp.bird import Bird
from tulle.agent.backends.bgp.birdconf import DEFAULT_ASN, BirdConfig, render, validate_asn, validate_pools
from tulle.cluster.blocks import DEFAULT_BLOCK_SIZE, Block, local_prefixes, read_blocks, validate_block_size
from tulle.cluster.lease import Lease
from tulle.errors import ConfigError, TulleError

TYPE = "bgp"
OVERHEAD = 50          # the CrossSubnet VXLAN's encapsulation
BIRD_PROTO = 12        # rtm_protocol of the routes BIRD installs (RTPROT_BIRD)
DEFAULT_CLUSTER_ID = ipaddress.IPv4Address("244.0.0.1")
DEFAULT_TOR_ASN = 64513

IPv4Net = ipaddress.IPv4Network
IPv4Addr = ipaddress.IPv4Address


@dataclass(frozen=True)
class BgpConfig:
    asn: int = DEFAULT_ASN
    block_size: int = DEFAULT_BLOCK_SIZE
    pools: tuple[IPv4Net, ...] = ()
    reflectors: frozenset[str] = frozenset()
    cluster_id: IPv4Addr = DEFAULT_CLUSTER_ID
    cross_subnet: bool = True
    vni: int = crosssubnet.VNI
    port: int = crosssubnet.PORT
    tor: peers.Tor | None = None


def _int(cfg: dict[str, Any], key: str, default: int, lo: int, hi: int, where: str = "Backend.") -> int:
    value = cfg.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ConfigError(f"{where}{key}: must be an integer in {lo}..{hi}, got {value!r}")
    return value


def _asn(cfg: dict[str, Any], key: str, default: int, where: str = "Backend.") -> int:
    value = cfg.get(key, default)
    try:
        return validate_asn(value, f"{where}{key}")
    except ConfigError as exc:
        raise ConfigError(exc.msg) from None


def _tor(raw: Any) -> peers.Tor | None:
    if raw is None or raw is False:
        return None
    if raw is True:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"Backend.ToR: must be an object like {{\"ASNumber\": 64513}}, got {raw!r}")
    asn = _asn(raw, "ASNumber", DEFAULT_TOR_ASN, "Backend.ToR.")
    addresses = []
    table = raw.get("Peers") or {}
    if not isinstance(table, dict):
        raise ConfigError("Backend.ToR.Peers: must map an underlay segment CIDR to its router's address")
    for seg, addr in table.items():
        try:
            addresses.append((IPv4Net(seg), IPv4Addr(addr)))
        except (ValueError, TypeError):
            raise ConfigError(f"Backend.ToR.Peers: {seg!r} → {addr!r} is not CIDR → IPv4 address") from None
        if addresses[-1][1] not in addresses[-1][0]:
            raise ConfigError(f"Backend.ToR.Peers: router {addr} is not on its segment {seg}")
    return peers.Tor(asn, tuple(addresses))


def load_config(cfg: dict[str, Any], network: IPv4Net | None = None) -> BgpConfig:
    """The "Backend" object → BgpConfig; every mistake a ConfigError naming the field."""
    if not isinstance(cfg, dict):
        raise ConfigError(f"Backend: must be an object, got {type(cfg).__name__}")
    pools: list[IPv4Net] = []
    raw_pools = cfg.get("Pools") or []
    if not isinstance(raw_pools, list):
        raise ConfigError(f"Backend.Pools: must be a list of CIDRs, got {raw_pools!r}")
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
    block_size = _int(cfg, "BlockSize", DEFAULT_BLOCK_SIZE, 1, 32)
    for pool in pools or ([network] if network is not None else []):
        try:
            validate_block_size(pool, block_size)
        except ConfigError as exc:
            raise ConfigError(f"Backend.BlockSize: {exc.msg}") from None
    rrs = cfg.get("RouteReflectors") or []
    if not isinstance(rrs, list) or not all(isinstance(n, str) and n for n in rrs):
        raise ConfigError(f"Backend.RouteReflectors: must be a list of node names, got {rrs!r}")
    try:
        cluster_id = IPv4Addr(cfg.get("RRClusterID") or str(DEFAULT_CLUSTER_ID))
    except ValueError:
        raise ConfigError(f"Backend.RRClusterID: {cfg.get('RRClusterID')!r} is not an IPv4 address") from None
    cross = cfg.get("CrossSubnet", True)
    if not isinstance(cross, bool):
        raise ConfigError(f"Backend.CrossSubnet: must be true or false, got {cross!r}")
    asn = _asn(cfg, "ASNumber", DEFAULT_ASN)
    tor = _tor(cfg.get("ToR"))
    if tor is not None and tor.asn == asn:
        raise ConfigError(f"Backend.ToR.ASNumber {tor.asn} must differ from Backend.ASNumber "
                          f"(the nodes peer with the top-of-rack router over eBGP)")
    return BgpConfig(asn=asn, block_size=block_size, pools=tuple(pools),
                     reflectors=frozenset(rrs), cluster_id=cluster_id, cross_subnet=cross,
                     vni=_int(cfg, "VNI", crosssubnet.VNI, 1, (1 << 24) - 1),
                     port=_int(cfg, "Port", crosssubnet.PORT, 1, 65535), tor=tor)


class BgpBackend:
    """Runs in the netns of the calling thread (the node's); BIRD is its child process."""

    type_name = TYPE
    watch_prefixes = ("blocks/",)   # relative to the agent's prefix: blocks change → sync

    def __init__(self, node: NodeInfo, config: BgpConfig) -> None:
        self.node = node
        self.config = config
        self.pools = config.pools or (node.network,)
        self.bird = Bird(node.state_dir)
        self.mac = ""
        self.own: Lease | None = None
        self._lock = threading.Lock()
        self._skips = SkipWarnings("bgp: no CrossSubnet path to a node", "peer")
        self.last_peers: peers.PeerPlan | None = None
        self._local: list[IPv4Net] = []

    @property
    def mtu(self) -> int:
        return self.node.underlay_mtu - (OVERHEAD if self.vxlan_on else 0)

    @property
    def vxlan_on(self) -> bool:
        return self.config.cross_subnet and self.config.tor is None

    # -- contract --------------------------------------------------------------------

    def prepare(self) -> BackendInfo:
        with self._lock:
            os.makedirs(self.node.state_dir, exist_ok=True)
            if self.vxlan_on:
                self._ensure_vtep()
            self._configure(self._bird_config([], self._blocks()))
            data: dict[str, Any] = {"ASNumber": self.config.asn}
            if self.vxlan_on:
                data.update({"VtepMAC": self.mac, "VNI": self.config.vni})
            return BackendInfo(backend_data=data, mtu=self.mtu)

    def start(self, own: Lease) -> None:
        with self._lock:
            self.own = own

    def sync(self, remotes: list[Lease]) -> None:
        with self._lock:
            if self.own is None:
                raise TulleError("bgp backend: sync() before start()")
            remotes = [l for l in remotes if l.node != self.node.name and l.public_ip != self.node.public_ip]
            blocks = self._blocks()
            self._local = local_prefixes(blocks, self.node.name)
            self._configure(self._bird_config(remotes, blocks))
            if self.vxlan_on:
                self._ensure_vtep()
                wanted = crosssubnet.plan(self.node.name, remotes, blocks, self._connected(), self.config.vni)
                self._skips.report(wanted.skipped)
                crosssubnet.apply(wanted)
            else:
                crosssubnet.clear()

    def update(self, remotes: list[Lease]) -> None:
        """BIRD gets a whole config (reloaded only when it changed): the same as sync()."""
        self.sync(remotes)

    def local_subnets(self) -> list[IPv4Net]:
        """Where this node's pods are (its blocks, borrowed /32s) as of the last sync: the
        lease carries none in bgp mode, so masquerade asks here."""
        with self._lock:
            return list(self._local)

    def stop(self) -> None:
        with self._lock:
            self.bird.graceful_stop()

    def teardown(self) -> None:
        from tulle.kernel import links, routes

        with self._lock:
            self.bird.stop()
            crosssubnet.clear()
            for r in routes.list_routes(4):
                if r.proto == BIRD_PROTO:
                    routes.delete(r)
            if links.delete(crosssubnet.DEVICE):
                log.info("vxlan device removed", dev=crosssubnet.DEVICE)

    # -- status (for `tulle lab bgp`) --------------------------------------------------

    def status(self) -> dict[str, Any]:
        return {"pid": self.bird.pid(),
                "mode": self.last_peers.mode if self.last_peers else None,
                "protocols": [p.__dict__ for p in self.bird.protocols()],
                "routes": [r.__dict__ for r in self.bird.routes()]}

    # -- pieces ----------------------------------------------------------------------

    def _blocks(self) -> list[Block]:
        store = self.node.store
        if store is None:
            raise TulleError("bgp backend: no store to read the IPAM blocks from (NodeInfo.store)")
        blocks, bad = read_blocks(store, self.node.prefix)
        for key, why in bad.items():
            log.warning("bgp: malformed block ignored", key=key, error=why)
        return blocks

    def _connected(self) -> list[IPv4Net]:
        from tulle.kernel import addrs

        return [a.network for a in addrs.list_on(self.node.underlay_dev, socket.AF_INET)]

    def _bird_config(self, remotes: list[Lease], blocks: list[Block]) -> BirdConfig:
        connected = self._connected()
        me = peers.NodeRef(self.node.name, self.node.public_ip)
        others = [peers.NodeRef(l.node or str(l.public_ip), l.public_ip) for l in remotes
                  if l.backend_type == TYPE]
        plan = peers.plan(me, others, asn=self.config.asn, reflectors=self.config.reflectors,
                          cluster_id=self.config.cluster_id, connected=connected, tor=self.config.tor)
        if self.last_peers is None or plan.mode != self.last_peers.mode:
            log.info("bgp topology", mode=plan.mode, peers=len(plan.peers))
        self.last_peers = plan
        own_blocks = tuple(sorted(b.cidr for b in blocks if b.affinity == self.node.name))
        return BirdConfig(router_id=self.node.public_ip, asn=self.config.asn, pools=tuple(self.pools),
                          blocks=own_blocks, underlay=tuple(connected), underlay_dev=self.node.underlay_dev,
                          peers=plan.peers, rr_cluster_id=plan.rr_cluster_id,
                          skip_krt_source=crosssubnet.PROTO)

    def _configure(self, cfg: BirdConfig) -> None:
        how = self.bird.apply(render(cfg))
        if how != "unchanged":
            log.info("bird config applied", how=how, blocks=len(cfg.blocks), peers=len(cfg.peers))

    def _ensure_vtep(self) -> None:
        from tulle.agent.backends import vxlan
        from tulle.kernel import links

        self.mac = vxlan.ensure_vtep(crosssubnet.DEVICE, self.config.vni, self.config.port, self.node.public_ip,
                                     self.node.underlay_dev, self.node.underlay_mtu - OVERHEAD, self.mac)
        if not links.require(crosssubnet.DEVICE).up:
            links.set_up(crosssubnet.DEVICE)


def factory(node: NodeInfo, backend_config: dict[str, Any]) -> BgpBackend:
    return BgpBackend(node, load_config(backend_config or {}, node.network))
