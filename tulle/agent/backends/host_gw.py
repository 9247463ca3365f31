"""host-gw: a route per remote lease, `<subnet> via <PublicIP> dev <underlay>`.

The remote node itself is the gateway, so it must be on a subnet this node is
directly connected to (L2 adjacency): a lease whose PublicIP is elsewhere is
refused with a clear log line and counted (tulle_leases_refused_total), as the
kernel could not use such a gateway anyway. `check_adjacency` is the same rule
for a whole cluster, for the lab to refuse host-gw across segments up front.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Iterable, Mapping

from tulle.agent.backends.base import NodeInfo
from tulle.agent.backends.routes_base import ROUTE_PROTO, Refused, RouteNetwork, connected_networks
from tulle.cluster.backendconf import HostGwConfig
from tulle.cluster.lease import Lease
from tulle.errors import ConfigError
from tulle.kernel import addrs
from tulle.kernel.routes import Route


def directly_connected(ip: ipaddress.IPv4Address | str, networks: Iterable[ipaddress.IPv4Network]) -> bool:
    """Is `ip` inside one of the subnets this node is attached to (pure)?"""
    addr = ipaddress.IPv4Address(str(ip))
    return any(addr in net for net in networks)


def check_adjacency(underlay: Mapping[str, ipaddress.IPv4Interface | str]) -> None:
    """ConfigError unless every node's underlay address is on one L2 subnet.

    `underlay` maps node name → its underlay interface address with prefix
    (e.g. {"n1": "198.51.100.11/24", "n3": "203.0.113.13/24"}).
    """
    items = [(name, ipaddress.IPv4Interface(str(a))) for name, a in underlay.items()]
    for name, iface in items:
        for other, oiface in items:
            if oiface.ip not in iface.network:
                raise ConfigError(
                    f"host-gw needs every node on one L2 segment: {name} ({iface}) cannot reach "
                    f"{other} ({oiface.ip}) directly; use the vxlan or udp backend across segments")


class HostGw(RouteNetwork):
    type_name = HostGwConfig.TYPE

    def __init__(self, node: NodeInfo, config: HostGwConfig) -> None:
        super().__init__(node, config)
        self._connected: list[ipaddress.IPv4Network] = []

    def before_sync(self) -> None:
        self._connected = connected_networks(addrs.list_on(self.node.underlay_dev, family=socket.AF_INET))

    def routes_for(self, lease: Lease) -> list[Route]:
        if not directly_connected(lease.public_ip, self._connected):
            nets = ", ".join(str(n) for n in self._connected) or "none"
            raise Refused(
                f"host-gw: refusing lease {lease.subnet} of {lease.node or 'a node'} at {lease.public_ip}: "
                f"not on a subnet directly connected to {self.node.underlay_dev} ({nets}); host-gw needs "
                f"L2 adjacency, use vxlan across segments")
        return [Route(dst=lease.subnet, gw=lease.public_ip, dev=self.node.underlay_dev, proto=ROUTE_PROTO)]


def factory(node: NodeInfo, config: HostGwConfig) -> HostGw:
    return HostGw(node, config)
