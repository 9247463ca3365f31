"""The cluster network config, Flannel's `<prefix>/config` JSON:

  {"Network": "10.244.0.0/16", "SubnetLen": 24, "SubnetMin": "10.244.1.0",
   "SubnetMax": "10.244.255.0", "Backend": {"Type": "vxlan", "VNI": 1, "Port": 8472,
   "DirectRouting": false}}

Parsing is pure and strict: every mistake a user can make (bad CIDR, a network
too small to split, a SubnetLen the network cannot hold, SubnetMin/Max outside
or misaligned, unknown backend, VNI/Port out of range) is a ConfigError naming
the field, raised before the agent touches the kernel or the store.
The "Backend" object is read by its type's parser in tulle.cluster.backendconf
(bgp: an AS out of range, pools outside Network or overlapping each other, a
block size the pools cannot hold, ...); `NetConfig.backend_config` is the result.
Defaults follow Flannel (SubnetLen 24, or prefix+1 for networks of /24 and
smaller; SubnetMin skips the network's first subnet; SubnetMax is its last),
except the backend: tulle defaults to vxlan (Flannel's default is udp).
"""

from __future__ import annotations

import functools
import ipaddress
import json
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator

from tulle.cluster import backendconf
from tulle.cluster.lease import config_key
from tulle.cluster.allocators import DEFAULT_NODE_PORTS, DEFAULT_SERVICE_NETWORK, parse_port_range
from tulle.errors import ConfigError, NotFoundError, TulleError

MAX_NETWORK_PREFIX = 28   # Flannel: "Minimum useful network prefix is /28"
MAX_SUBNET_LEN = 30       # a /31 or /32 holds no pod next to the gateway


@dataclass(frozen=True)
class NetConfig:
    network: ipaddress.IPv4Network
    subnet_len: int
    subnet_min: ipaddress.IPv4Network
    subnet_max: ipaddress.IPv4Network
    backend: dict[str, Any] = field(default_factory=dict, hash=False)  # "Backend" with defaults filled
    # Services (kube-apiserver's --service-cluster-ip-range and --service-node-port-range)
    service_network: ipaddress.IPv4Network | None = DEFAULT_SERVICE_NETWORK   # None: no ClusterIPs
    node_ports: range = DEFAULT_NODE_PORTS

    @property
    def backend_type(self) -> str:
        return str(self.backend["Type"])

    @functools.cached_property
    def backend_config(self) -> backendconf.BackendConfig:
        """The "Backend" object read by its type's parser (parse() has checked it already)."""
        return backendconf.parse(self.backend, self.network)

    def subnets(self) -> Iterator[ipaddress.IPv4Network]:
        """Every subnet between SubnetMin and SubnetMax, in order."""
        size = 1 << (32 - self.subnet_len)
        start = int(self.subnet_min.network_address)
        end = int(self.subnet_max.network_address)
        for addr in range(start, end + 1, size):
            yield ipaddress.IPv4Network((addr, self.subnet_len))

    def contains(self, subnet: ipaddress.IPv4Network) -> bool:
        """Is `subnet` one this config could hand out (Flannel's isSubnetConfigCompat)?"""
        return (subnet.prefixlen == self.subnet_len and subnet.subnet_of(self.network)
                and self.subnet_min.network_address <= subnet.network_address
                <= self.subnet_max.network_address)

    def to_dict(self) -> dict[str, Any]:
        return {
            "Network": str(self.network),
            "SubnetLen": self.subnet_len,
            "SubnetMin": str(self.subnet_min.network_address),
            "SubnetMax": str(self.subnet_max.network_address),
            "Backend": dict(self.backend),
            **({"ServiceNetwork": str(self.service_network)} if self.service_network else {}),
            "NodePortRange": f"{self.node_ports.start}-{self.node_ports.stop - 1}",
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)


def _subnet_bound(raw: Any, name: str, network: ipaddress.IPv4Network, subnet_len: int) -> ipaddress.IPv4Network:
    """SubnetMin/SubnetMax: an address (or a CIDR) inside Network, on a subnet boundary."""
    try:
        ip = ipaddress.IPv4Interface(str(raw)).ip
    except ValueError:
        raise ConfigError(f"{name} {raw!r} is not an IPv4 address") from None
    if ip not in network:
        raise ConfigError(f"{name} {raw} is outside Network {network}")
    subnet = ipaddress.IPv4Network((ip, subnet_len), strict=False)
    if subnet.network_address != ip:
        raise ConfigError(f"{name} {raw} is not aligned to SubnetLen /{subnet_len} "
                          f"(nearest subnet: {subnet.network_address})")
    return subnet


def parse(data: bytes | str | dict[str, Any]) -> NetConfig:
    """Validate a config (JSON text or an already decoded object)."""
    if isinstance(data, (bytes, str)):
        try:
            data = json.loads(data)
        except ValueError as exc:
            raise ConfigError(f"network config is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError("network config must be a JSON object")
    raw_net = data.get("Network")
    if not raw_net or not isinstance(raw_net, str):
        raise ConfigError("Network: required, an IPv4 CIDR such as 10.244.0.0/16")
    try:
        network = ipaddress.IPv4Network(raw_net)
    except ValueError:
        try:
            fixed = ipaddress.IPv4Network(raw_net, strict=False)
        except ValueError:
            raise ConfigError(f"Network {raw_net!r} is not a valid IPv4 CIDR") from None
        raise ConfigError(f"Network {raw_net} has host bits set (did you mean {fixed}?)") from None
    if "/" not in raw_net:
        raise ConfigError(f"Network {raw_net!r} is not a CIDR (expected e.g. 10.244.0.0/16)")
    if network.prefixlen > MAX_NETWORK_PREFIX:
        raise ConfigError(f"Network {network} is too small: the smallest useful network is a "
                          f"/{MAX_NETWORK_PREFIX}")
    default_len = 24 if network.prefixlen < 24 else network.prefixlen + 1
    subnet_len = backendconf.integer(data, "SubnetLen", default_len, -(1 << 31), 1 << 31, where="")
    if subnet_len <= network.prefixlen:
        raise ConfigError(f"SubnetLen /{subnet_len} is larger than the network allows: Network "
                          f"{network} needs a SubnetLen of at least /{network.prefixlen + 1}")
    if subnet_len > MAX_SUBNET_LEN:
        raise ConfigError(f"SubnetLen /{subnet_len} is too long: at most /{MAX_SUBNET_LEN} "
                          f"(a node subnet needs room for a gateway and pods)")
    size = 1 << (32 - subnet_len)
    default_min = ipaddress.IPv4Network((int(network.network_address) + size, subnet_len))
    default_max = ipaddress.IPv4Network((int(network.broadcast_address) + 1 - size, subnet_len))
    smin = _subnet_bound(data["SubnetMin"], "SubnetMin", network, subnet_len) \
        if data.get("SubnetMin") else default_min
    smax = _subnet_bound(data["SubnetMax"], "SubnetMax", network, subnet_len) \
        if data.get("SubnetMax") else default_max
    if smin.network_address > smax.network_address:
        raise ConfigError(f"SubnetMin {smin.network_address} is above SubnetMax {smax.network_address}")
    backend = backendconf.fill(data.get("Backend"))
    backendconf.parse(backend, network)   # every field checked now, not when the agent starts the backend
    service_network, node_ports = _services(data, network)
    return NetConfig(network, subnet_len, smin, smax, backend, service_network, node_ports)


def _services(data: dict[str, Any], network: ipaddress.IPv4Network) -> tuple[ipaddress.IPv4Network | None, range]:
    """ServiceNetwork (ClusterIPs; must not overlap the pod network) and NodePortRange.
    A Flannel config that names no ServiceNetwork and whose Network covers the default
    (10.0.0.0/8 is common) stays valid: it simply has no ClusterIPs until one is set."""
    raw = data.get("ServiceNetwork")
    if not raw and DEFAULT_SERVICE_NETWORK.overlaps(network):
        service_network = None
    else:
        service_network = _service_network(raw or str(DEFAULT_SERVICE_NETWORK), network)
    raw_ports = data.get("NodePortRange") or "30000-32767"
    try:
        node_ports = parse_port_range(str(raw_ports))
    except TulleError as exc:
        raise ConfigError(f"NodePortRange: {exc.msg}") from None
    return service_network, node_ports


def _service_network(raw: Any, network: ipaddress.IPv4Network) -> ipaddress.IPv4Network:
    try:
        service_network = ipaddress.IPv4Network(str(raw))
    except ValueError:
        raise ConfigError(f"ServiceNetwork {raw!r} is not a valid IPv4 CIDR") from None
    if service_network.prefixlen > 30:
        raise ConfigError(f"ServiceNetwork {service_network} is too small: at least a /30")
    if service_network.overlaps(network):
        raise ConfigError(f"ServiceNetwork {service_network} overlaps the pod Network {network}")
    return service_network


def build(network: str, subnet_len: int | None = None, backend: str = backendconf.DEFAULT_TYPE,
          vni: int | None = None, port: int | None = None, direct_routing: bool = False,
          subnet_min: str | None = None, subnet_max: str | None = None,
          extra: dict[str, Any] | None = None, service_network: str | None = None,
          node_port_range: str | None = None) -> NetConfig:
    """A config from command-line style arguments (validated like any other); `extra`
    adds backend fields (bgp: ASNumber, RouteReflectors, ToR, ...)."""
    be: dict[str, Any] = {"Type": backend, "VNI": vni, "Port": port}
    if direct_routing:
        be["DirectRouting"] = True
    be.update(extra or {})
    return parse({"Network": network, "SubnetLen": subnet_len, "SubnetMin": subnet_min,
                  "SubnetMax": subnet_max, "Backend": be, "ServiceNetwork": service_network,
                  "NodePortRange": node_port_range})


def overlaps(network: ipaddress.IPv4Network | str,
             other_cidrs: Iterable[ipaddress.IPv4Network | ipaddress.IPv4Interface | str]) -> list[str]:
    """The CIDRs among `other_cidrs` that overlap `network` (e.g. the lab's underlay ranges)."""
    net = ipaddress.ip_network(network, strict=False)
    hits = []
    for other in other_cidrs:
        o = ipaddress.ip_network(str(other), strict=False)
        if o.version == net.version and net.overlaps(o):
            hits.append(str(other))
    return hits


def check_no_overlap(network: ipaddress.IPv4Network | str, other_cidrs: Iterable[Any], what: str = "underlay",
                     field: str = "Network") -> None:
    """ConfigError when `network` (the pod Network, or the ServiceNetwork) overlaps any of `other_cidrs`."""
    hits = overlaps(network, other_cidrs)
    if hits:
        raise ConfigError(f"{field} {network} overlaps the {what} range(s) {', '.join(hits)}")


def write_config(store: Any, prefix: str, cfg: NetConfig) -> None:
    """Publish the config at `<prefix>/config` (validated: a NetConfig is always valid)."""
    store.put(config_key(prefix), cfg.to_json())


def read_config(store: Any, prefix: str) -> NetConfig:
    """The validated config from the store; NotFoundError when there is none yet."""
    kv = store.get(config_key(prefix))
    if kv is None:
        raise NotFoundError(f"no network config at {config_key(prefix)} in the store "
                            f"(write one with `tulle agent init-network`)")
    try:
        return parse(kv.value)
    except ConfigError as exc:
        raise ConfigError(f"network config at {config_key(prefix)}: {exc.msg}") from None
