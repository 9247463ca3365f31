"""The bgp backend: Calico-style routed mode — BIRD 2 tells peers the node's blocks.

Its config (ASNumber, BlockSize, Pools, RouteReflectors, RRClusterID, CrossSubnet,
VNI/Port, ToR) is BgpConfig, read from the "Backend" object by
tulle.cluster.backendconf (which documents every field).

The node's lease is its registration (PublicIP, TTL liveness, BackendData
{"VtepMAC", "VNI", "ASNumber"}); its subnet carries no pods — pod addresses come
from the store's blocks (tulle.cluster.blocks, plugin tulle-blocks) and pods are
wired by tulle-routed.

  prepare()   the CrossSubnet VTEP (its MAC goes into the lease); a BIRD config is
              rendered and checked with `bird -p` (bad input fails the start), but
              BIRD is not touched: the agent does not know the peers yet, and a
              config without them would end every session (a restart would cost
              the node its routes until they came back)
  start(own)  remembers the lease
  sync(...)   peers from the remote leases (peers.plan), own blocks from the store →
              BIRD config; when it changed: `bird -p`, then `birdc configure`; the
              CrossSubnet VXLAN entries for blocks whose node is on another segment.
              The first sync (the agent's first full pass, after one listing of
              the store) starts BIRD — in graceful restart recovery when the
              kernel holds routes of a BIRD that stopped or died — or finds the one
              a killed agent left running, whose config it reproduces unchanged.
              The agent also calls it when `<prefix>/blocks/` changes
              (`watch_prefixes`), as a new block must be announced at once.
  stop()      `birdc graceful restart`: peers keep our routes as stale, the kernel
              keeps its routes (persist) until the agent is back
  teardown()  BIRD stopped (peers withdraw), its and our routes and the VTEP removed
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import socket
import threading
from typing import Any

from tulle.agent import log
from tulle.agent.backends import routediff, vtep
from tulle.agent.backends.base import BackendInfo, NodeInfo, SkipWarnings
from tulle.agent.backends.bgp import crosssubnet, peers
from tulle.agent.backends.bgp.bird import Bird, check_config
from tulle.agent.backends.bgp.birdconf import BirdConfig, render
from tulle.cluster.backendconf import BgpConfig
from tulle.cluster.blocks import Block, blocks_prefix, decode_all
from tulle.cluster.lease import Lease
from tulle.errors import TulleError

TYPE = BgpConfig.TYPE
OVERHEAD = 50          # the CrossSubnet VXLAN's encapsulation
BIRD_PROTO = 12        # rtm_protocol of the routes BIRD installs (RTPROT_BIRD)

IPv4Net = ipaddress.IPv4Network


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
            connected = self._connected()
            self._check(self._bird_config(self._peer_plan([], connected), [], connected))
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
            connected = self._connected()
            plan = self._peer_plan(remotes, connected)
            if self.last_peers is None or plan.mode != self.last_peers.mode:
                log.info("bgp topology", mode=plan.mode, peers=len(plan.peers))
            self.last_peers = plan
            self._configure(self._bird_config(plan, blocks, connected))
            if self.vxlan_on:
                self._ensure_vtep()
                wanted = crosssubnet.plan(self.node.name, remotes, blocks, connected, self.config.vni)
                self._skips.report(wanted.skipped)
                crosssubnet.apply(wanted)
            else:
                crosssubnet.clear()

    def update(self, remotes: list[Lease]) -> None:
        """BIRD gets a whole config (reloaded only when it changed): the same as sync()."""
        self.sync(remotes)

    def daemons_down(self) -> list[str]:
        """BIRD died after a sync had it running (sync starts it again, in recovery: the
        kernel keeps its routes and the peers theirs as stale until the sessions are back)."""
        return ["bird"] if self.last_peers is not None and not self.bird.running() else []

    def stop(self) -> None:
        with self._lock:
            self.bird.graceful_stop()

    def teardown(self) -> None:
        from tulle.kernel import links

        with self._lock:
            self.bird.stop()
            crosssubnet.clear()
            routediff.write(routediff.diff([], routediff.owned(BIRD_PROTO)), TYPE)   # `persist`: they outlive BIRD
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
        if self.node.watched is None:
            raise TulleError("bgp backend: no view of the store to read the IPAM blocks from (NodeInfo.watched)")
        blocks, bad = decode_all(self.node.watched(blocks_prefix(self.node.prefix)))
        for key, why in bad.items():
            log.warning("bgp: malformed block ignored", key=key, error=why)
        return blocks

    def _connected(self) -> list[IPv4Net]:
        from tulle.kernel import addrs

        return [a.network for a in addrs.list_on(self.node.underlay_dev, socket.AF_INET)]

    def _peer_plan(self, remotes: list[Lease], connected: list[IPv4Net]) -> peers.PeerPlan:
        me = peers.NodeRef(self.node.name, self.node.public_ip)
        others = [peers.NodeRef(l.node or str(l.public_ip), l.public_ip) for l in remotes
                  if l.backend_type == TYPE]
        return peers.plan(me, others, asn=self.config.asn, reflectors=self.config.reflectors,
                          cluster_id=self.config.cluster_id, connected=connected, tor=self.config.tor)

    def _bird_config(self, plan: peers.PeerPlan, blocks: list[Block], connected: list[IPv4Net]) -> BirdConfig:
        own_blocks = tuple(sorted(b.cidr for b in blocks if b.affinity == self.node.name))
        return BirdConfig(router_id=self.node.public_ip, asn=self.config.asn, pools=tuple(self.pools),
                          blocks=own_blocks, underlay=tuple(connected), underlay_dev=self.node.underlay_dev,
                          peers=plan.peers, rr_cluster_id=plan.rr_cluster_id,
                          skip_krt_source=crosssubnet.PROTO)

    def _check(self, cfg: BirdConfig) -> None:
        """`bird -p` on a config without peers or blocks (no store read: the agent may start
        from its last known state): bad input or no BIRD fails the agent's start rather
        than its first sync, and a running BIRD is not touched."""
        path = f"{self.bird.conf}.check"
        try:
            check_config(render(cfg), path)
        finally:
            with contextlib.suppress(OSError):
                os.unlink(path)

    def _configure(self, cfg: BirdConfig) -> None:
        # A BIRD that is not running but left routes in the kernel died (with its agent,
        # or alone): start it in recovery so they stay until the peers resend theirs.
        recover = not self.bird.running() and bool(routediff.owned(BIRD_PROTO))
        how = self.bird.apply(render(cfg), recover=recover)
        if how != "unchanged":
            log.info("bird config applied", how=how, blocks=len(cfg.blocks), peers=len(cfg.peers))

    def _ensure_vtep(self) -> None:
        from tulle.kernel import links

        self.mac = vtep.ensure_vtep(crosssubnet.DEVICE, self.config.vni, self.config.port, self.node.public_ip,
                                    self.node.underlay_dev, self.node.underlay_mtu - OVERHEAD, self.mac)
        if not links.require(crosssubnet.DEVICE).up:
            links.set_up(crosssubnet.DEVICE)


def factory(node: NodeInfo, config: BgpConfig) -> BgpBackend:
    return BgpBackend(node, config)
