"""nft's data types: how a value of each is checked, ordered and printed.

A set's key, a map's value and the right side of a match all have a type
(`ipv4_addr`, `inet_service`, `mark`, ...). Values are kept in one canonical
Python form per type — the form nft prints, so they are readable and
hashable: "10.0.0.0/8", "10.0.0.1-10.0.0.9", 8080, "1024-65535", "tcp",
0x4000 — and turned into nft JSON only when a transaction is rendered.

Ordering follows nft 1.0.6's listing: elements of a set of one type sort by
their value; elements of a concatenation sort by the whole key read as one
little-endian number (nft compares the raw register bytes that way), so the
last component weighs most. `pack` gives the bytes both orders are made from.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any, Callable

Value = str | int

# nft prints protocol numbers by their /etc/protocols name (netbase); the ones tulle uses.
PROTOCOLS = {"icmp": 1, "igmp": 2, "tcp": 6, "dccp": 33, "udp": 17, "gre": 47, "esp": 50, "ah": 51,
             "ipv6-icmp": 58, "sctp": 132, "udplite": 136}
PROTOCOL_ALIASES = {"icmpv6": "ipv6-icmp"}
NFPROTOS = {"ipv4": 2, "ipv6": 10}
CT_STATES = {"invalid": 1, "established": 2, "related": 4, "new": 8, "untracked": 64}
CT_STATUSES = {"expected": 1, "seen-reply": 2, "assured": 4, "confirmed": 8, "snat": 16, "dnat": 32,
               "dying": 512}
FIB_ADDRTYPES = ("unspec", "unicast", "local", "broadcast", "anycast", "multicast", "blackhole",
                 "unreachable", "prohibit")
IFNAMSIZ = 16


@dataclass(frozen=True)
class DataType:
    """One nft data type. `check` turns a user value into the canonical form (or raises
    ValueError), `pack` gives its register bytes, `json`/`text` print the canonical form."""

    name: str
    size: int                 # bytes of a value in a register (before padding to 4)
    host_order: bool          # kept in host byte order (numbers like marks, strings)
    per_line: int             # elements per line in a named set's listing; 0: one per line
    interval: bool            # may hold prefixes and ranges
    check: Callable[[Any, bool], Value]
    pack: Callable[[Value], bytes]
    text: Callable[[Value], str] = str
    json: Callable[[Value], Any] = lambda v: v
    span: Callable[[Value], tuple[int, int]] | None = None   # interval types: [lo, hi]

    def order(self, value: Value) -> int:
        """Sort key of a single-type element: the numeric value (an interval: its start)."""
        raw = self.pack(value)
        return int.from_bytes(raw, "little" if self.host_order else "big")

    def bounds(self, value: Value) -> tuple[int, int]:
        """[lo, hi] of a value as numbers (a plain value: both the same)."""
        if self.span is not None:
            return self.span(value)
        return self.order(value), self.order(value)


def _fail(kind: str, value: Any) -> ValueError:
    return ValueError(f"{value!r} is not a valid {kind}")


# --- addresses ---------------------------------------------------------------

def _address_type(name: str, version: int, per_line: int) -> DataType:
    """ipv4_addr / ipv6_addr: addresses, and in interval sets prefixes and ranges."""
    addr_cls = ipaddress.IPv4Address if version == 4 else ipaddress.IPv6Address
    net_cls = ipaddress.IPv4Network if version == 4 else ipaddress.IPv6Network
    kind = f"IPv{version} address"

    def parse_addr(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
        try:
            return addr_cls(text)
        except ValueError:
            raise _fail(kind, text) from None

    def check(value: Any, interval: bool) -> str:
        if isinstance(value, dict) and "prefix" in value:
            value = f"{value['prefix']['addr']}/{value['prefix']['len']}"
        elif isinstance(value, dict) and "range" in value:
            value = f"{value['range'][0]}-{value['range'][1]}"
        if isinstance(value, (ipaddress.IPv4Network, ipaddress.IPv6Network)):
            value = str(value)
        if isinstance(value, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
            value = str(value)
        if not isinstance(value, str):
            raise _fail(kind, value)
        if "/" in value:
            try:
                net = net_cls(value, strict=True)
            except ValueError:
                raise _fail(f"IPv{version} prefix (host bits must be zero)", value) from None
            if net.prefixlen == net.max_prefixlen:
                return str(net.network_address)
            if not interval:
                raise ValueError(f"{value}: a prefix needs a set with the interval flag")
            return str(net)
        if "-" in value:
            lo, hi = (parse_addr(p.strip()) for p in value.split("-", 1))
            if not interval:
                raise ValueError(f"{value}: a range needs a set with the interval flag")
            if lo > hi:
                raise ValueError(f"{value}: the range is empty")
            return canonical_interval(name, int(lo), int(hi))     # an aligned range is a prefix
        return str(parse_addr(value))

    def bounds(value: str) -> tuple[int, int]:
        if "/" in value:
            net = net_cls(value)
            return int(net.network_address), int(net.broadcast_address)
        if "-" in value:
            lo, hi = value.split("-", 1)
            return int(addr_cls(lo)), int(addr_cls(hi))
        return int(addr_cls(value)), int(addr_cls(value))

    def pack(value: str) -> bytes:
        return addr_cls(bounds(value)[0]).packed

    def as_json(value: str) -> Any:
        if "/" in value:
            addr, length = value.split("/")
            return {"prefix": {"addr": addr, "len": int(length)}}
        if "-" in value:
            return {"range": value.split("-", 1)}
        return value

    return DataType(name, 16 if version == 6 else 4, False, per_line, True, check, pack, str, as_json, bounds)


def canonical_interval(dtype_name: str, lo: int, hi: int) -> Value:
    """An interval as nft lists it: a plain value, a prefix when aligned, else a range."""
    if dtype_name == "inet_service":
        return lo if lo == hi else f"{lo}-{hi}"
    version = 4 if dtype_name == "ipv4_addr" else 6
    addr_cls = ipaddress.IPv4Address if version == 4 else ipaddress.IPv6Address
    if lo == hi:
        return str(addr_cls(lo))
    size = hi - lo + 1
    bits = size.bit_length() - 1
    if size == 1 << bits and lo % size == 0:
        width = 32 if version == 4 else 128
        return f"{addr_cls(lo)}/{width - bits}"
    return f"{addr_cls(lo)}-{addr_cls(hi)}"


# --- numbers and names ----------------------------------------------------------

def _check_port(value: Any, interval: bool) -> Value:
    if isinstance(value, dict) and "range" in value:
        value = f"{value['range'][0]}-{value['range'][1]}"
    if isinstance(value, str) and "-" in value:
        if not interval:
            raise ValueError(f"{value}: a port range needs a set with the interval flag")
        try:
            lo, hi = (int(p) for p in value.split("-", 1))
        except ValueError:
            raise _fail("port range", value) from None
        for p in (lo, hi):
            _check_port(p, False)
        if lo > hi:
            raise ValueError(f"{value}: the range is empty")
        return lo if lo == hi else f"{lo}-{hi}"
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 65535:
        raise _fail("port (0-65535)", value)
    return value


def _port_bounds(value: Value) -> tuple[int, int]:
    if isinstance(value, str):
        lo, hi = value.split("-", 1)
        return int(lo), int(hi)
    return value, value


def _port_json(value: Value) -> Any:
    return {"range": list(_port_bounds(value))} if isinstance(value, str) else value


def _check_proto(value: Any, interval: bool) -> Value:
    if isinstance(value, str):
        name = PROTOCOL_ALIASES.get(value, value)
        if name in PROTOCOLS:
            return name
    if isinstance(value, int) and not isinstance(value, bool):
        for name, number in PROTOCOLS.items():
            if number == value:
                return name
    raise _fail(f"protocol (one of {', '.join(PROTOCOLS)})", value)


def _check_u32(kind: str) -> Callable[[Any, bool], Value]:
    def check(value: Any, interval: bool) -> Value:
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 0xFFFFFFFF:
            raise _fail(kind, value)
        return value
    return check


def _check_ifname(value: Any, interval: bool) -> Value:
    if not isinstance(value, str) or not value or len(value.encode()) >= IFNAMSIZ or '"' in value:
        raise _fail(f"interface name (1-{IFNAMSIZ - 1} bytes)", value)
    return value


def _check_mac(value: Any, interval: bool) -> Value:
    parts = value.split(":") if isinstance(value, str) else []
    if len(parts) != 6 or not all(len(p) == 2 and all(c in "0123456789abcdefABCDEF" for c in p) for p in parts):
        raise _fail("MAC address", value)
    return value.lower()


def _check_name(kind: str, names: dict[str, int] | tuple[str, ...]) -> Callable[[Any, bool], Value]:
    def check(value: Any, interval: bool) -> Value:
        if value not in names:
            raise _fail(f"{kind} (one of {', '.join(names)})", value)
        return value
    return check


def _quoted(value: Value) -> str:
    return f'"{value}"'


def _bytes_of(table: dict[str, int], size: int, host: bool) -> Callable[[Value], bytes]:
    return lambda v: table[str(v)].to_bytes(size, "little" if host else "big")


# per_line: nft's calculate_delim — addresses two to a line, small numbers five, the rest one.
TYPES: dict[str, DataType] = {t.name: t for t in (
    _address_type("ipv4_addr", 4, 2),
    _address_type("ipv6_addr", 6, 0),
    DataType("ether_addr", 6, False, 0, False, _check_mac, lambda v: bytes.fromhex(str(v).replace(":", ""))),
    DataType("inet_proto", 1, False, 5, False, _check_proto, _bytes_of(PROTOCOLS, 1, False)),
    DataType("inet_service", 2, False, 5, True, _check_port, lambda v: _port_bounds(v)[0].to_bytes(2, "big"),
             str, _port_json, _port_bounds),
    DataType("mark", 4, True, 5, False, _check_u32("mark (0-0xffffffff)"), lambda v: int(v).to_bytes(4, "little"),
             lambda v: f"0x{int(v):08x}"),
    DataType("ifname", IFNAMSIZ, True, 0, False, _check_ifname, lambda v: str(v).encode().ljust(IFNAMSIZ, b"\0"),
             _quoted),
    DataType("nf_proto", 1, True, 5, False, _check_name("nfproto", NFPROTOS), _bytes_of(NFPROTOS, 1, True)),
    DataType("ct_state", 4, True, 2, False, _check_name("ct state", CT_STATES), _bytes_of(CT_STATES, 4, True)),
    DataType("ct_status", 4, True, 2, False, _check_name("ct status", CT_STATUSES), _bytes_of(CT_STATUSES, 4, True)),
    DataType("fib_addrtype", 4, True, 0, False, _check_name("address type", FIB_ADDRTYPES),
             lambda v: FIB_ADDRTYPES.index(str(v)).to_bytes(4, "little")),
    DataType("integer", 4, True, 5, False, _check_u32("integer"), lambda v: int(v).to_bytes(4, "little")),
)}

# Types a named set's key (or a map's value) may have; "verdict" only as a map's value.
SET_TYPES = ("ipv4_addr", "ipv6_addr", "ether_addr", "inet_proto", "inet_service", "mark", "ifname", "nf_proto")
VERDICT = "verdict"
FLAG_TYPES = ("ct_state", "ct_status")   # bitmasks: a match may list several names


def lookup(name: str) -> DataType:
    try:
        return TYPES[name]
    except KeyError:
        raise ValueError(f"unknown nft data type {name!r}") from None


def concat_order(types: tuple[DataType, ...], values: tuple[Value, ...]) -> int:
    """Sort key of a concatenated element: its registers (each padded to 4 bytes), read
    as one little-endian number — the order nft 1.0.6 lists such elements in."""
    blob = b"".join(t.pack(v).ljust(-(-t.size // 4) * 4, b"\0") for t, v in zip(types, values))
    return int.from_bytes(blob, "little")


def time_text(seconds: int) -> str:
    """A duration as nft prints it: 3h, 1h30m, 10m, 45s, 1d2h."""
    out = ""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            out += f"{seconds // size}{unit}"
            seconds %= size
    return out or "0s"
