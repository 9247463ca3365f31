"""The vxlan backend: the VTEP `tulle.<VNI>` and the entries plan.py asks for.

sync() is the full converge (it reads the kernel back and repairs drift: the
reconcile tick); update() writes only the difference between the plan it last
made true and the new one, with no kernel dumps: the store-change path, so a join
costs every node three netlink writes instead of three dumps.

The VTEP's MAC is published in the lease (BackendData {"VNI", "VtepMAC"}), so it
must stay stable: prepare() keeps an existing compatible device with its MAC,
and a new device gets a MAC derived from (PublicIP, VNI), so even a rebuilt VTEP
keeps the address other nodes have programmed. Neighbour and FDB entries are
owned by the VTEP itself: every permanent entry on it is ours.
"""

from __future__ import annotations

import ipaddress
import socket
import threading

from tulle.agent import log
from tulle.agent.backends import routediff, vtep
from tulle.agent.backends.base import BackendInfo, NodeInfo, SkipWarnings
from tulle.agent.backends.vxlan.plan import PROTO, TYPE, Plan, device_name, plan
from tulle.cluster.backendconf import VxlanConfig
from tulle.cluster.lease import Lease
from tulle.errors import TulleError
from tulle.kernel import addrs, links

OVERHEAD = 50               # outer IPv4 20 + UDP 8 + VXLAN 8 + inner Ethernet 14


class VxlanBackend:
    """Runs in the netns of the calling thread (the node's); holds no threads."""

    type_name = TYPE
    watch_prefixes: tuple[str, ...] = ()

    def __init__(self, node: NodeInfo, config: VxlanConfig) -> None:
        self.node = node
        self.config = config
        self.mac = ""
        self.own: Lease | None = None
        self._lock = threading.Lock()   # the agent may sync from its watch and reconcile threads
        self._skips = SkipWarnings("vxlan: lease skipped", "subnet")
        self._applied: vtep.Held | None = None   # what the kernel held after the last sync/update
        self._connected: list[ipaddress.IPv4Network] = []   # the underlay subnets seen by the last sync

    @property
    def device(self) -> str:
        return device_name(self.config.vni)

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
            todo = vtep.changes(self._applied, wanted)
            self._applied = None   # until every write went through
            try:
                vtep.apply(self.device, todo, TYPE)
            except TulleError as exc:
                log.warning("vxlan: incremental update failed, converging fully", error=exc.msg)
                self._sync(remotes)
                return
            self._applied = wanted.held()

    def _sync(self, remotes: list[Lease]) -> None:
        if self.own is None:
            raise TulleError("vxlan backend: sync() before start()")
        self._applied = None
        self._ensure_device()
        self._ensure_address()
        connected = [a.network for a in addrs.list_on(self.node.underlay_dev, socket.AF_INET)]
        wanted = self._plan(remotes, connected)
        vtep.converge(self.device, wanted, PROTO, TYPE)
        self._applied, self._connected = wanted.held(), connected

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

    def daemons_down(self) -> list[str]:
        return []

    def teardown(self) -> None:
        with self._lock:
            self._applied = None
            # direct routes live on the underlay, not the VTEP: they do not go with the device
            routediff.write(routediff.diff([], routediff.owned(PROTO)), TYPE)
            if links.delete(self.device):
                log.info("vxlan device removed", dev=self.device)

    # device ----------------------------------------------------------------------

    def _ensure_device(self) -> None:
        self.mac = vtep.ensure_vtep(self.device, self.config.vni, self.config.port, self.node.public_ip,
                                    self.node.underlay_dev, self.mtu, self.mac)

    def _ensure_address(self) -> None:
        """Exactly <own subnet>.0/32 on the VTEP, and the VTEP up."""
        if self.own is None:
            return
        want = ipaddress.IPv4Interface(f"{self.own.subnet.network_address}/32")
        for addr in addrs.list_on(self.device, socket.AF_INET):
            if addr != want:
                addrs.delete(self.device, addr)
        addrs.ensure(self.device, want)
        if not links.require(self.device).up:
            links.set_up(self.device)


def factory(node: NodeInfo, config: VxlanConfig) -> VxlanBackend:
    return VxlanBackend(node, config)
