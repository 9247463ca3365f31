"""Field rules several kinds share: names, ports, protocols, IPs and CIDRs,
immutability — each returning FieldErrors in kube-apiserver's words."""

from __future__ import annotations

import ipaddress
import re
from typing import Any, Callable, Iterable

from tulle.cluster import names
from tulle.cluster.errors import FieldError, invalid, not_supported, required

PROTOCOLS = ["SCTP", "TCP", "UDP"]       # sorted, as apimachinery's sets.List prints them
IMMUTABLE = "field is immutable"
NEGATIVE = "must be greater than or equal to 0"


def each(path: str, value: Any, messages: Iterable[str]) -> list[FieldError]:
    """One Invalid per message of a name rule (names.*_errors) about `value`."""
    return [invalid(path, value, m) for m in messages]


def name_field(path: str, value: str, rule: Callable[[str], list[str]]) -> list[FieldError]:
    return each(path, value, rule(value))


def non_negative(path: str, value: Any) -> list[FieldError]:
    return [invalid(path, value, NEGATIVE)] if isinstance(value, int) and value < 0 else []


def immutable(path: str, new: Any, old: Any) -> list[FieldError]:
    return [] if new == old else [invalid(path, new, IMMUTABLE)]


def enum(path: str, value: Any, allowed: list[str], needed: bool = True) -> list[FieldError]:
    """A field with a closed set of values; `needed` when an empty value is Required."""
    if value in (None, ""):
        return [required(path)] if needed else []
    return [] if value in allowed else [not_supported(path, value, allowed)]


def protocol(path: str, value: Any, needed: bool = True) -> list[FieldError]:
    return enum(path, value, PROTOCOLS, needed)


def port_number(path: str, value: int) -> list[FieldError]:
    return each(path, value, names.port_num_errors(value))


def port_number_or_name(path: str, value: int | str) -> list[FieldError]:
    """An intstr port (targetPort, probe ports): a number in range, or an IANA_SVC_NAME."""
    if isinstance(value, int):
        return port_number(path, value)
    return each(path, value, names.port_name_errors(value))


# -- IP addresses and CIDRs (apimachinery's util/validation/ip.go) -----------------------

_DOTTED = re.compile(r"(\d+)\.(\d+)\.(\d+)\.(\d+)")
BAD_IP = "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"
BAD_CIDR = "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)"


def _leading_zeros(dotted: str) -> bool:
    """An IPv4 address Go's sloppy parser takes but whose octets have leading 0s."""
    m = _DOTTED.fullmatch(dotted)
    return bool(m) and all(int(o) <= 255 for o in m.groups()) and any(
        len(o) > 1 and o[0] == "0" for o in m.groups())


def parse_ip(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    if "%" in value:                       # Go's net.ParseIP knows no zones
        return None
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        return None


def ip_errors(path: str, value: str, canonical: bool = True) -> list[FieldError]:
    """IsValidIP (canonical=True) or IsValidIPForLegacyField with strict validation."""
    if _leading_zeros(value):
        return [invalid(path, value, "must not have leading 0s")]
    ip = parse_ip(value)
    if ip is None:
        return [invalid(path, value, BAD_IP)]
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return [invalid(path, value, "must not be an IPv4-mapped IPv6 address")]
    if canonical and value != str(ip):
        return [invalid(path, value, f'must be in canonical form ("{ip}")')]
    return []


def ipv4_errors(path: str, value: str) -> list[FieldError]:
    return [] if isinstance(parse_ip(value), ipaddress.IPv4Address) else \
        [invalid(path, value, "must be a valid IPv4 address")]


def ipv6_errors(path: str, value: str) -> list[FieldError]:
    return [] if isinstance(parse_ip(value), ipaddress.IPv6Address) else \
        [invalid(path, value, "must be a valid IPv6 address")]


def non_special_ip(path: str, value: str) -> list[FieldError]:
    """Endpoints and external IPs may not be unspecified, loopback or link-local."""
    ip = parse_ip(value)
    if ip is None:
        return [invalid(path, value, "must be a valid IP address")]
    out = []
    if ip.is_unspecified:
        out.append(invalid(path, value, f"may not be unspecified ({value})"))
    if ip.is_loopback:
        out.append(invalid(path, value, "may not be in the loopback range (127.0.0.0/8, ::1/128)"))
    if ip.is_link_local:
        out.append(invalid(path, value, "may not be in the link-local range (169.254.0.0/16, fe80::/10)"))
    link_local_multicast = ipaddress.ip_network("224.0.0.0/24" if ip.version == 4 else "ff02::/16")
    if ip in link_local_multicast:
        out.append(invalid(path, value, "may not be in the link-local multicast range (224.0.0.0/24, ff02::/10)"))
    return out


def parse_cidr(value: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    """What Go's ParseCIDRSloppy takes: address/prefix-length, host bits allowed."""
    addr, sep, length = value.partition("/")
    if not sep or not length.isdigit() or parse_ip(addr) is None and not _leading_zeros(addr):
        return None
    if _leading_zeros(addr):
        addr = ".".join(str(int(o)) for o in addr.split("."))
    try:
        return ipaddress.ip_network(f"{addr}/{int(length)}", strict=False)
    except ValueError:
        return None


def cidr_errors(path: str, value: str, canonical: bool = True) -> list[FieldError]:
    """IsValidCIDR (canonical=True) or IsValidCIDRForLegacyField with strict validation."""
    net = parse_cidr(value)
    if net is None:
        return [invalid(path, value, BAD_CIDR)]
    addr, _, length = value.partition("/")
    if _leading_zeros(addr) or (len(length) > 1 and length[0] == "0"):
        return [invalid(path, value, "must not have leading 0s in IP or prefix length")]
    ip = parse_ip(addr)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return [invalid(path, value, "must not have an IPv4-mapped IPv6 address")]
    if ip != net.network_address:
        return [invalid(path, value, "must not have bits set beyond the prefix length")]
    if canonical and value != str(net):
        return [invalid(path, value, f'must be in canonical form ("{net}")')]
    return []
