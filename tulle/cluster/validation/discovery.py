"""EndpointSlice validation (discovery.k8s.io/v1): the address type, up to 1000
endpoints of 1–100 addresses of that type, up to 100 ports."""

from __future__ import annotations

from typing import Any, Callable

from tulle.cluster import names
from tulle.cluster.errors import FieldError, duplicate, invalid, not_supported, required, too_many
from tulle.cluster.fieldpath import child, index
from tulle.cluster.validation.common import (immutable, ipv4_errors, ipv6_errors, name_field,
                                             non_special_ip, port_number, protocol)
from tulle.cluster.validation.meta import labels

ADDRESS_TYPES = ["FQDN", "IPv4", "IPv6"]
MAX_ENDPOINTS, MAX_ADDRESSES, MAX_PORTS, MAX_TOPOLOGY_LABELS = 1000, 100, 100, 16


def _fqdn(path: str, value: str) -> list[FieldError]:
    """IsFullyQualifiedDomainName: a subdomain of at least two labels, a trailing dot allowed."""
    name = value.removesuffix(".")
    if not name:
        return [required(path)]
    problems = names.dns1123_subdomain_errors(name)
    if problems:
        return [invalid(path, name, ",".join(problems))]
    if "." not in name:
        return [invalid(path, name, "should be a domain with at least two segments separated by dots")]
    return []


_ADDRESS: dict[str, Callable[[str, str], list[FieldError]]] = {
    "IPv4": lambda p, v: ipv4_errors(p, v) + non_special_ip(p, v),
    "IPv6": lambda p, v: ipv6_errors(p, v) + non_special_ip(p, v),
    "FQDN": _fqdn,
}


def _endpoints(endpoints: list[dict[str, Any]], address_type: str) -> list[FieldError]:
    if len(endpoints) > MAX_ENDPOINTS:
        return [too_many("endpoints", len(endpoints), MAX_ENDPOINTS)]
    check = _ADDRESS.get(address_type)
    out: list[FieldError] = []
    for i, ep in enumerate(endpoints):
        at = index("endpoints", i)
        addresses = ep.get("addresses") or []
        if not addresses:
            out.append(required(child(at, "addresses"), "must contain at least 1 address"))
        elif len(addresses) > MAX_ADDRESSES:
            out.append(too_many(child(at, "addresses"), len(addresses), MAX_ADDRESSES))
        for j, address in enumerate(addresses if check else []):
            out += check(index(child(at, "addresses"), j), address)
        if ep.get("nodeName"):
            out += name_field(child(at, "nodeName"), ep["nodeName"], names.dns1123_subdomain_errors)
        topology = ep.get("deprecatedTopology") or {}
        if len(topology) > MAX_TOPOLOGY_LABELS:
            out.append(too_many(child(at, "deprecatedTopology"), len(topology), MAX_TOPOLOGY_LABELS))
        out += labels(child(at, "deprecatedTopology"), topology)
        if ep.get("hostname") is not None:
            out += name_field(child(at, "hostname"), ep["hostname"], names.dns1123_label_errors)
    return out


def _ports(ports: list[dict[str, Any]]) -> list[FieldError]:
    if len(ports) > MAX_PORTS:
        return [too_many("ports", len(ports), MAX_PORTS)]
    out: list[FieldError] = []
    seen: set[str] = set()
    for i, port in enumerate(ports):
        at, name = index("ports", i), port.get("name", "")
        if name:
            out += name_field(child(at, "name"), name, names.dns1123_label_errors)
        if name in seen:
            out.append(duplicate(child(at, "name"), name))
        seen.add(name)
        out += protocol(child(at, "protocol"), port.get("protocol"))
        if port.get("port") is not None:
            out += port_number(child(at, "port"), port["port"])
        if port.get("appProtocol") is not None:
            out += name_field(child(at, "appProtocol"), port["appProtocol"], names.qualified_name_errors)
    return out


def validate(obj: dict[str, Any], old: dict[str, Any] | None) -> list[FieldError]:
    address_type = obj.get("addressType", "")
    out: list[FieldError] = []
    if not address_type:
        out.append(required("addressType"))
    elif address_type not in ADDRESS_TYPES:
        out.append(not_supported("addressType", address_type, ADDRESS_TYPES))
    out += _endpoints(obj.get("endpoints") or [], address_type)
    out += _ports(obj.get("ports") or [])
    if old is not None:
        out += immutable("addressType", address_type, old.get("addressType", ""))
    return out
