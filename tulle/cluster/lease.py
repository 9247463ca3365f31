"""A node's subnet lease, in Flannel's etcd layout so tulle can take over an
existing Flannel network (and Flannel's tools can read tulle's):

  <prefix>/config                    {"Network", "SubnetLen", "SubnetMin", "SubnetMax",
                                      "Backend": {"Type", "VNI", "Port", "DirectRouting"}}
  <prefix>/subnets/<a.b.c.d>-<len>   {"PublicIP", "BackendType", "BackendData": {...}}

A key bound to a store lease (TTL) is a lease; a key without one is a reservation.
Pure data and codecs only; acquiring and renewing live in tulle.agent.subnet.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass, field
from typing import Any

from tulle.errors import ConfigError

DEFAULT_PREFIX = "/coreos.com/network"


@dataclass(frozen=True)
class Lease:
    subnet: ipaddress.IPv4Network
    public_ip: ipaddress.IPv4Address
    backend_type: str
    backend_data: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    node: str = ""            # tulle extension ("Node" in the JSON); Flannel ignores it
    reservation: bool = False  # no TTL: kept forever
    mod_revision: int = 0      # store revision of the last write (for CAS)

    def same_content(self, other: "Lease") -> bool:
        """Equal as far as the data plane is concerned (revision and TTL aside)."""
        return (self.subnet, self.public_ip, self.backend_type, self.backend_data) == \
            (other.subnet, other.public_ip, other.backend_type, other.backend_data)


def subnet_key(prefix: str, subnet: ipaddress.IPv4Network) -> str:
    """`<prefix>/subnets/10.244.1.0-24` (Flannel's spelling)."""
    return f"{prefix.rstrip('/')}/subnets/{subnet.network_address}-{subnet.prefixlen}"


def config_key(prefix: str) -> str:
    return f"{prefix.rstrip('/')}/config"


def subnets_prefix(prefix: str) -> str:
    return f"{prefix.rstrip('/')}/subnets/"


def subnet_from_key(key: str) -> ipaddress.IPv4Network | None:
    """The subnet a lease key names, or None for anything else under the prefix."""
    tail = key.rsplit("/", 1)[-1]
    addr, sep, plen = tail.partition("-")
    if not sep:
        return None
    try:
        return ipaddress.IPv4Network(f"{addr}/{plen}")
    except ValueError:
        return None


def encode(lease: Lease) -> bytes:
    body: dict[str, Any] = {
        "PublicIP": str(lease.public_ip),
        "BackendType": lease.backend_type,
        "BackendData": lease.backend_data or None,
    }
    if lease.node:
        body["Node"] = lease.node
    return json.dumps(body, sort_keys=True).encode()


def decode(key: str, value: bytes, mod_revision: int = 0, has_ttl: bool = True) -> Lease:
    subnet = subnet_from_key(key)
    if subnet is None:
        raise ConfigError(f"not a subnet lease key: {key!r}")
    try:
        body = json.loads(value)
        return Lease(
            subnet=subnet,
            public_ip=ipaddress.IPv4Address(body["PublicIP"]),
            backend_type=str(body.get("BackendType") or ""),
            backend_data=dict(body.get("BackendData") or {}),
            node=str(body.get("Node") or ""),
            reservation=not has_ttl,
            mod_revision=mod_revision,
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"malformed lease {key}: {exc}") from None
