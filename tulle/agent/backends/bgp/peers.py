"""Which BGP sessions a node has, as a pure function of the cluster's nodes.

Topologies (all nodes share one AS, so every session among nodes is iBGP):
  mesh        (no RouteReflectors) every node peers with every other node.
  reflectors  nodes named in RouteReflectors peer with each other (plain iBGP) and
              with every other node as `rr client`, all under one `rr cluster id`;
              the other nodes peer with the reflectors only. When none of the named
              reflectors is up (no lease), the nodes fall back to the mesh rather
              than lose every route.
  ToR         the mesh/reflector rule applies among the nodes of this node's own
              segment only (the peers whose address is on a connected underlay
              subnet), plus one eBGP session to the segment's top-of-rack router,
              which carries the routes of the other segments with itself as next hop.
              A cross-segment iBGP session would win over the ToR's route (shorter AS
              path) and leave an uninstallable next hop, hence the restriction.

Protocol names come from the peer's address (Mesh_/RR_/Client_ + a_b_c_d, "ToR"),
so a peer keeps its name — and BIRD keeps its session — across reconfigurations.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from tulle.agent.backends.bgp.birdconf import Peer, protocol_name
from tulle.cluster.backendconf import DEFAULT_CLUSTER_ID, Tor
from tulle.errors import ConfigError

IPv4Addr = ipaddress.IPv4Address
IPv4Net = ipaddress.IPv4Network


@dataclass(frozen=True)
class NodeRef:
    name: str
    address: IPv4Addr


@dataclass(frozen=True)
class PeerPlan:
    peers: tuple[Peer, ...]
    rr_cluster_id: IPv4Addr | None = None   # set when this node reflects
    mode: str = "mesh"                       # mesh | reflector | client (for status and logs)


def same_segment(address: IPv4Addr, connected: list[IPv4Net]) -> bool:
    return any(address in net for net in connected)


def plan(me: NodeRef, others: list[NodeRef], *, asn: int, reflectors: frozenset[str] = frozenset(),
         cluster_id: IPv4Addr = DEFAULT_CLUSTER_ID, connected: list[IPv4Net] | None = None,
         tor: Tor | None = None) -> PeerPlan:
    """The sessions of `me` given the other live nodes (order-independent, deterministic)."""
    connected = connected or []
    seen: dict[IPv4Addr, NodeRef] = {}
    for node in sorted(others, key=lambda n: (int(n.address), n.name)):
        if node.address != me.address and node.address not in seen:
            seen[node.address] = node
    candidates = list(seen.values())
    if tor is not None:
        candidates = [n for n in candidates if same_segment(n.address, connected)]
    live_rrs = {n.name for n in candidates if n.name in reflectors}
    if me.name in reflectors:
        live_rrs.add(me.name)
    peers: list[Peer] = []
    mode = "mesh"
    cluster: IPv4Addr | None = None
    if not live_rrs:
        peers = [Peer(protocol_name("Mesh", n.address), n.address, asn) for n in candidates]
    elif me.name in live_rrs:
        mode, cluster = "reflector", cluster_id
        for n in candidates:
            if n.name in live_rrs:
                peers.append(Peer(protocol_name("RR", n.address), n.address, asn))
            else:
                peers.append(Peer(protocol_name("Client", n.address), n.address, asn, rr_client=True))
    else:
        mode = "client"
        peers = [Peer(protocol_name("RR", n.address), n.address, asn) for n in candidates if n.name in live_rrs]
    if tor is not None:
        if tor.asn == asn:
            raise ConfigError(f"ToR.ASNumber {tor.asn} must differ from the cluster's ASNumber (eBGP to the ToR)")
        peers.append(Peer("ToR", tor.address_for(connected), tor.asn, tor=True))
    return PeerPlan(tuple(peers), cluster, mode)
