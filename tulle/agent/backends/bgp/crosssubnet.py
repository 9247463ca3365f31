"""CrossSubnet: pods of nodes on another underlay segment are reached through VXLAN.

BIRD installs only the routes whose next hop is on a connected segment (see
birdconf's `tulle_kernel` filter); a block whose node sits behind a router would
need the router to know pod routes, which it does not (no BIRD there, unless a
ToR). For those the agent programs, from the store, Calico's "vxlanMode:
CrossSubnet" path, with Flannel's exact (no learning) VXLAN entries:

  device      tulle-vxlan, VNI 4096, port 4789 (Calico's), MAC published as VtepMAC
  per node N on another segment:
    neighbour  N.PublicIP → N.VtepMAC   on tulle-vxlan (per-device table: no clash
                                         with the same address on the underlay)
    FDB        N.VtepMAC  → N.PublicIP
    route      <each block with Affinity N>    via N.PublicIP dev tulle-vxlan onlink
               <each address N borrowed>/32    via N.PublicIP dev tulle-vxlan onlink

Block → node comes from the store's blocks (Affinity; an allocation's Node for a
borrowed address) and node → (PublicIP, VtepMAC) from the nodes' leases
(Lease.node, BackendData.VtepMAC). Routes carry protocol PROTO so BIRD's kernel
protocol does not learn them and sync() removes exactly its own. The device and
its entries are written by ../vtep.py, as the vxlan backend's are.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from tulle.agent.backends import routediff, vtep
from tulle.cluster.backendconf import BGP_VNI, BgpConfig
from tulle.cluster.blocks import Block
from tulle.cluster.lease import Lease
from tulle.kernel.routes import Route

IPv4Addr = ipaddress.IPv4Address
IPv4Net = ipaddress.IPv4Network

DEVICE = "tulle-vxlan"
PROTO = 252        # rtm_protocol of the CrossSubnet routes (host-gw 250, vxlan 251)


@dataclass
class Plan(vtep.Entries):
    skipped: dict[str, str] = field(default_factory=dict)        # node → why it gets no VXLAN path
    remote_segment: set[str] = field(default_factory=set)        # nodes reached through VXLAN


def node_leases(remotes: list[Lease]) -> dict[str, Lease]:
    """Node name → its lease (the newest revision wins when a node holds two)."""
    out: dict[str, Lease] = {}
    for lease in sorted(remotes, key=lambda l: l.mod_revision):
        if lease.node:
            out[lease.node] = lease
    return out


def owners(blocks: list[Block], me: str) -> dict[IPv4Net, str]:
    """Destination → node for every remote block and every address borrowed outside its
    block's node (the borrower announces and serves that /32). Our own don't appear."""
    out: dict[IPv4Net, str] = {}
    for block in blocks:
        if block.affinity and block.affinity != me:
            out[block.cidr] = block.affinity
        for ip, alloc in block.allocations.items():
            who = alloc.get("Node")
            if who and who != block.affinity and who != me:
                out[IPv4Net(f"{ip}/32")] = who
    return out


def plan(me: str, remotes: list[Lease], blocks: list[Block], connected: list[IPv4Net],
         vni: int = BGP_VNI, device: str = DEVICE) -> Plan:
    """The VXLAN entries for every destination whose node is on another segment."""
    out = Plan()
    by_node = node_leases(remotes)
    for dst, who in sorted(owners(blocks, me).items(), key=lambda kv: (int(kv[0].network_address),
                                                                        kv[0].prefixlen)):
        lease = by_node.get(who)
        if lease is None:
            out.skipped[who] = "no lease (node down or not registered)"
            continue
        if any(lease.public_ip in net for net in connected):
            continue  # same segment: BIRD routes it natively
        try:
            mac = vtep.lease_mac(lease, vni)
        except ValueError as exc:
            out.skipped[who] = str(exc)
            continue
        if out.fdb.get(mac, lease.public_ip) != lease.public_ip:
            out.skipped[who] = f"VtepMAC {mac} is already used by {out.fdb[mac]}"
            continue
        out.remote_segment.add(who)
        out.neighbours[lease.public_ip] = mac
        out.fdb[mac] = lease.public_ip
        out.routes[dst] = Route(dst=dst, gw=lease.public_ip, dev=device, onlink=True, proto=PROTO)
    return out


def apply(wanted: Plan, device: str = DEVICE) -> None:
    """Converge the kernel (this thread's netns) to `wanted`."""
    vtep.converge(device, wanted, PROTO, BgpConfig.TYPE)


def clear() -> None:
    """Remove every CrossSubnet route (the device's entries die with the device)."""
    routediff.write(routediff.diff([], routediff.owned(PROTO)), BgpConfig.TYPE)
