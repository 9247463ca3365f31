"""Address ranges for host-local: parsing, validation, and the round-robin order
in which a range set offers its addresses.

A range is `{subnet, rangeStart, rangeEnd, gateway}`; a range set is a list of
ranges of one family and yields one address per ADD. Defaults are the
reference's: the gateway is the subnet's first address + 1, the range runs
from there to the last usable address (broadcast - 1 for IPv4, the last
address for IPv6), and the gateway is never handed out.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Iterator

from tulle.cni.conf import Fields
from tulle.cni.types import IPAddress, IPNetwork
from tulle.errors import ConfigError


@dataclass(frozen=True)
class Range:
    subnet: IPNetwork
    start: IPAddress
    end: IPAddress
    gateway: IPAddress

    def contains(self, ip: IPAddress) -> bool:
        """True when `ip` lies within [start, end] (the part we allocate from)."""
        return ip.version == self.subnet.version and self.start <= ip <= self.end

    def overlaps(self, other: "Range") -> bool:
        return (self.subnet.version == other.subnet.version
                and self.start <= other.end and other.start <= self.end)

    def __str__(self) -> str:
        return f"{self.start}-{self.end}"


RangeSet = list[Range]


def describe(rs: RangeSet) -> str:
    return ",".join(str(r) for r in rs)


def range_for(rs: RangeSet, ip: IPAddress) -> Range | None:
    for r in rs:
        if r.contains(ip):
            return r
    return None


def _default_end(subnet: IPNetwork) -> IPAddress:
    last = subnet.broadcast_address
    return last - 1 if subnet.version == 4 else last


def parse_range(f: Fields) -> Range:
    """One range object, with defaults filled in and every address checked."""
    subnet = f.net("subnet", required=True)  # "" is an error here, never None
    if subnet.version == 6 and subnet.network_address.ipv4_mapped is not None:
        raise ConfigError(f"{f.where}.subnet: {subnet} is IPv4-mapped; write the IPv4 subnet instead")
    if subnet.prefixlen > subnet.max_prefixlen - 2:
        raise ConfigError(f"{f.where}.subnet: network {subnet} is too small to allocate from")
    first = subnet.network_address + 1

    def inside(key: str, default: IPAddress) -> IPAddress:
        ip = f.ip(key)
        if ip is None:
            return default
        if ip.version != subnet.version or ip not in subnet:
            raise ConfigError(f"{f.where}.{key}: {ip} is not in subnet {subnet}")
        return ip

    start = inside("rangeStart", first)
    end = inside("rangeEnd", _default_end(subnet))
    gateway = inside("gateway", first)
    if start > end:
        raise ConfigError(f"{f.where}: rangeStart {start} is after rangeEnd {end}")
    return Range(subnet, start, end, gateway)


def parse_range_set(raw: object, where: str) -> RangeSet:
    if not isinstance(raw, list):
        raise ConfigError(f"{where}: a range set must be a list of ranges, got {raw!r}")
    if not raw:
        raise ConfigError(f"{where}: empty range set")
    rs = [parse_range(Fields(item, f"{where}[{i}]")) for i, item in enumerate(raw)]
    family = rs[0].subnet.version
    for i, r in enumerate(rs):
        if r.subnet.version != family:
            raise ConfigError(f"{where}: mixed address families (range {i} is IPv{r.subnet.version})")
    for i, a in enumerate(rs):
        for j in range(i + 1, len(rs)):
            if a.overlaps(rs[j]):
                raise ConfigError(f"{where}: ranges {i} ({a}) and {j} ({rs[j]}) overlap")
    return rs


def parse_range_sets(ipam: Fields, runtime_ranges: list) -> list[RangeSet]:
    """All range sets in the reference's order: runtimeConfig.ipRanges, the
    legacy single range (ipam.subnet ...), then ipam.ranges."""
    sets: list[RangeSet] = []
    for i, raw in enumerate(runtime_ranges):
        sets.append(parse_range_set(raw, f"runtimeConfig.ipRanges[{i}]"))
    if ipam.raw("subnet") is not None:  # present means used: "subnet": "" is an error, not skipped
        sets.append([parse_range(ipam)])
    for i, raw in enumerate(ipam.list("ranges")):
        sets.append(parse_range_set(raw, f"ipam.ranges[{i}]"))
    if not sets:
        raise ConfigError("ipam: no IP ranges specified (set ipam.ranges or ipam.subnet)")
    for i, a in enumerate(sets):
        for j in range(i + 1, len(sets)):
            if any(x.overlaps(y) for x in a for y in sets[j]):
                raise ConfigError(f"ipam.ranges: range set {i} ({describe(a)}) overlaps "
                                  f"range set {j} ({describe(sets[j])})")
    return sets


def candidates(rs: RangeSet, last: IPAddress | None) -> Iterator[tuple[Range, IPAddress]]:
    """Every allocatable address of the set once, in round-robin order: starting
    right after `last` (when it is in the set) and wrapping around, gateways skipped."""
    n = len(rs)
    idx, first = 0, rs[0].start
    if last is not None:
        for i, r in enumerate(rs):
            if r.contains(last):
                if last == r.end:
                    idx, first = (i + 1) % n, rs[(i + 1) % n].start
                else:
                    idx, first = i, last + 1
                break
    head = rs[idx]
    yield from _span(head, first, head.end)
    for k in range(1, n):
        r = rs[(idx + k) % n]
        yield from _span(r, r.start, r.end)
    if first > head.start:
        yield from _span(head, head.start, first - 1)


def _span(r: Range, lo: IPAddress, hi: IPAddress) -> Iterator[tuple[Range, IPAddress]]:
    cls = type(lo)
    for value in range(int(lo), int(hi) + 1):
        ip = cls(value)
        if ip != r.gateway:
            yield r, ip


def parse_requested(value: object, where: str) -> IPAddress:
    """A requested address: a plain IP or an IP/prefix (the prefix is ignored)."""
    if not isinstance(value, str):
        raise ConfigError(f"{where}: invalid IP address {value!r}")
    try:
        return ipaddress.ip_interface(value.strip()).ip
    except ValueError:
        raise ConfigError(f"{where}: invalid IP address {value!r}") from None

