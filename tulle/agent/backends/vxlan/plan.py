"""The vxlan backend's plan: exactly the entries a set of remote leases needs (pure).

One VTEP per node, `tulle.<VNI>`, and no learning — every peer is programmed from
its lease, as Flannel does it:

  per remote lease    neighbour  <remote subnet>.0 → remote VtepMAC   (permanent, on the VTEP)
                      FDB        remote VtepMAC    → remote PublicIP  (the VTEP's underlay peer)
                      route      <remote subnet> via <remote subnet>.0 dev tulle.<VNI> onlink

With DirectRouting, a peer whose PublicIP sits on a directly connected underlay
subnet gets a plain route `<subnet> via <PublicIP>` instead (no encapsulation),
the others keep the VXLAN path — so a cluster spanning routed segments works.
Routes carry protocol number 251 (host-gw's are 250), so the backend finds and
removes exactly its own.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from tulle.agent.backends.vtep import Entries, lease_mac
from tulle.cluster.backendconf import VxlanConfig
from tulle.cluster.lease import Lease
from tulle.kernel.routes import Route

TYPE = VxlanConfig.TYPE
PROTO = 251                 # rtm_protocol of every route this backend installs


def device_name(vni: int) -> str:
    """The VTEP's name (at most 15 characters for any VNI)."""
    return f"tulle.{vni}"


@dataclass
class Plan(Entries):
    skipped: list[tuple[Lease, str]] = field(default_factory=list)   # (lease, why it gets nothing)


def plan(remotes: list[Lease], *, config: VxlanConfig, underlay_dev: str,
         connected: list[ipaddress.IPv4Network],
         own_subnet: ipaddress.IPv4Network | None = None) -> Plan:
    """Exactly the neighbours, FDB entries and routes `remotes` need. Unusable
    leases (another backend type, bad BackendData, a clash with an earlier lease)
    are listed in `skipped` with the reason instead."""
    out = Plan()
    vtep = device_name(config.vni)
    for lease in sorted(remotes, key=lambda l: (l.subnet, l.public_ip)):
        if lease.backend_type != TYPE:
            out.skipped.append((lease, f"backend type {lease.backend_type!r} is not {TYPE!r}"))
            continue
        if lease.subnet in out.routes or (own_subnet is not None and lease.subnet.overlaps(own_subnet)):
            out.skipped.append((lease, "subnet overlaps another lease"))
            continue
        if config.direct_routing and any(lease.public_ip in net for net in connected):
            out.routes[lease.subnet] = Route(dst=lease.subnet, gw=lease.public_ip, dev=underlay_dev, proto=PROTO)
            continue
        try:
            mac = lease_mac(lease, config.vni)
        except ValueError as exc:
            out.skipped.append((lease, str(exc)))
            continue
        if out.fdb.get(mac, lease.public_ip) != lease.public_ip:
            out.skipped.append((lease, f"VtepMAC {mac} is already used by {out.fdb[mac]}"))
            continue
        gw = lease.subnet.network_address
        out.neighbours[gw] = mac
        out.fdb[mac] = lease.public_ip
        out.routes[lease.subnet] = Route(dst=lease.subnet, gw=gw, dev=vtep, onlink=True, proto=PROTO)
    return out
