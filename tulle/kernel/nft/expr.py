"""Rule bodies as data: helpers that build nft JSON expressions and statements.

A rule is a list of statements; callers join them with these helpers, never
by formatting text. Each helper returns exactly the dict libnftables takes,
and `tulle.kernel.nft.text` prints every one of them as `nft list` does.

Write a rule in the form nft lists it back: no match a later one implies
(`meta l4proto tcp` before `tcp dport`, `meta nfproto ipv4` before `ip
saddr`) — nft drops those when it lists, and the Transaction refuses them so
that what is written, what the kernel lists and what the fake holds agree.
"""

from __future__ import annotations

import ipaddress
from typing import Any, Iterable, Mapping

from tulle.kernel.nft.objects import Expr, InvalidObject, check_name

PAYLOADS = {
    "ip": ("saddr", "daddr", "protocol"), "ip6": ("saddr", "daddr", "nexthdr"),
    "tcp": ("sport", "dport"), "udp": ("sport", "dport"), "sctp": ("sport", "dport"),
    "udplite": ("sport", "dport"), "dccp": ("sport", "dport"),
    "th": ("sport", "dport"),   # the transport header of whichever protocol
    "ether": ("saddr", "daddr"),
}
META_KEYS = ("l4proto", "nfproto", "mark", "iifname", "oifname")
CT_KEYS = ("state", "status", "mark")
FIB_FLAGS = ("saddr", "daddr", "mark", "iif", "oif")   # nft's print order
FIB_RESULTS = ("type", "oif")
NAT_FLAGS = ("random", "fully-random", "persistent")
REJECT_TYPES = {"tcp reset": (), "icmpx": ("port-unreachable", "admin-prohibited", "no-route", "host-unreachable"),
                "icmp": ("port-unreachable", "admin-prohibited", "host-unreachable", "net-unreachable",
                         "prot-unreachable", "net-prohibited", "host-prohibited"),
                "icmpv6": ("port-unreachable", "admin-prohibited", "no-route", "addr-unreachable")}
LOG_LEVELS = ("emerg", "alert", "crit", "err", "warn", "notice", "info", "debug")
RATE_UNITS = ("second", "minute", "hour", "day", "week")
BYTE_UNITS = ("bytes", "kbytes", "mbytes")


# --- what a match looks at ----------------------------------------------------------

def payload(protocol: str, field_name: str) -> Expr:
    if field_name not in PAYLOADS.get(protocol, ()):
        raise InvalidObject(f"payload {protocol} {field_name}: not one tulle renders "
                            f"({', '.join(f'{p} {f}' for p, fs in PAYLOADS.items() for f in fs)})")
    return {"payload": {"protocol": protocol, "field": field_name}}


def ip_field(version: int, name: str) -> Expr:
    """saddr/daddr of IPv4 or IPv6, chosen by the address family."""
    return payload("ip" if version == 4 else "ip6", name)


def meta(key: str) -> Expr:
    if key not in META_KEYS:
        raise InvalidObject(f"meta {key}: one of {', '.join(META_KEYS)}")
    return {"meta": {"key": key}}


def ct(key: str) -> Expr:
    if key not in CT_KEYS:
        raise InvalidObject(f"ct {key}: one of {', '.join(CT_KEYS)}")
    return {"ct": {"key": key}}


def fib(result: str, flags: list[str]) -> Expr:
    """fib daddr type (local, ...) / fib saddr . iif oif (exists, missing)."""
    if result not in FIB_RESULTS or not flags or any(f not in FIB_FLAGS for f in flags):
        raise InvalidObject(f"fib {flags} {result}: flags from {', '.join(FIB_FLAGS)}, "
                            f"result one of {', '.join(FIB_RESULTS)}")
    return {"fib": {"result": result, "flags": [f for f in FIB_FLAGS if f in flags]}}


def numgen(mod: int, offset: int = 0, mode: str = "random") -> Expr:
    """A number in [offset, offset + mod): random, or incrementing per packet."""
    if mode not in ("random", "inc") or mod < 1 or offset < 0:
        raise InvalidObject(f"numgen {mode} mod {mod} offset {offset}: mode random or inc, mod ≥ 1")
    return {"numgen": {"mode": mode, "mod": mod, "offset": offset}}


def concat(*parts: Expr) -> Expr:
    """a . b . c — matched against a set or map whose type is the same concatenation."""
    if len(parts) < 2:
        raise InvalidObject("a concatenation needs at least two parts")
    return {"concat": list(parts)}


def bit_and(left: Expr, mask: int) -> Expr:
    return {"&": [left, mask]}


def bit_or(left: Expr, bits: int) -> Expr:
    return {"|": [left, bits]}


def bit_xor(left: Expr, bits: int) -> Expr:
    return {"^": [left, bits]}


# --- values on the right --------------------------------------------------------------

def prefix(net: ipaddress.IPv4Network | ipaddress.IPv6Network | str) -> Any:
    """A network as nft wants it: a plain address for /32 and /128, else a prefix."""
    net = ipaddress.ip_network(net, strict=False)
    if net.prefixlen == net.max_prefixlen:
        return str(net.network_address)
    return {"prefix": {"addr": str(net.network_address), "len": net.prefixlen}}


def range_of(lo: Any, hi: Any) -> Expr:
    """lo-hi: an address or port range."""
    return {"range": [str(lo) if not isinstance(lo, int) else lo, str(hi) if not isinstance(hi, int) else hi]}


def set_of(items: Iterable[Any]) -> Expr:
    """An anonymous set { a, b } (nft lists it sorted)."""
    return {"set": list(items)}


def ref(name: str) -> str:
    """@name: a named set or map."""
    return "@" + check_name("set", name)


def match(left: Any, right: Any, op: str = "==") -> Expr:
    """left op right. op "in" with a list of flags matches any of them (ct state a,b)."""
    if op not in ("==", "!=", "<", ">", "<=", ">=", "in"):
        raise InvalidObject(f"match operator {op!r}")
    return {"match": {"op": op, "left": left, "right": right}}


# --- statements -------------------------------------------------------------------------

def counter() -> Expr:
    return {"counter": None}


def accept() -> Expr:
    return {"accept": None}


def drop() -> Expr:
    return {"drop": None}


def ret() -> Expr:
    return {"return": None}


def jump(chain: str) -> Expr:
    return {"jump": {"target": check_name("chain", chain)}}


def goto(chain: str) -> Expr:
    return {"goto": {"target": check_name("chain", chain)}}


def vmap(key: Expr, data: str | Mapping[Any, Expr] | Iterable[tuple[Any, Expr]]) -> Expr:
    """key vmap @name, or key vmap { k : verdict, ... } (e.g. numgen for load balancing)."""
    if not isinstance(data, str):
        pairs = data.items() if isinstance(data, Mapping) else data
        data = {"set": [[k, v] for k, v in pairs]}
    return {"vmap": {"key": key, "data": data}}


def masquerade(fully_random: bool = False) -> Expr:
    return {"masquerade": {"flags": ["fully-random"]}} if fully_random else {"masquerade": None}


def _nat(kind: str, addr: str | None, port: int | None, family: str | None, flags: Iterable[str]) -> Expr:
    body: dict[str, Any] = {}
    if addr is not None:
        body["addr"] = addr
    if port is not None:
        body["port"] = port
    if family:
        if family not in ("ip", "ip6"):
            raise InvalidObject(f"{kind} family must be ip or ip6, got {family!r}")
        body["family"] = family
    flags = list(flags)
    if any(f not in NAT_FLAGS for f in flags):
        raise InvalidObject(f"{kind} flags from {', '.join(NAT_FLAGS)}, got {flags}")
    if flags:
        body["flags"] = flags
    if not body.keys() & {"addr", "port"}:
        raise InvalidObject(f"{kind} needs an address or a port")
    return {kind: body}


def dnat(addr: str | None, port: int | None = None, family: str | None = None) -> Expr:
    """dnat [ip|ip6] to addr[:port]; family is needed in inet tables (and only there shown)."""
    return _nat("dnat", addr, port, family, ())


def snat(addr: str, port: int | None = None, family: str | None = None, fully_random: bool = False) -> Expr:
    return _nat("snat", addr, port, family, ["fully-random"] if fully_random else [])


def mangle(key: Expr, value: Any) -> Expr:
    """key set value: meta mark set ..., ct mark set ..."""
    if key not in ({"meta": {"key": "mark"}}, {"ct": {"key": "mark"}}):
        raise InvalidObject(f"only meta mark and ct mark can be set, got {key!r}")
    return {"mangle": {"key": key, "value": value}}


def set_mark(value: int, mask: int | None = None) -> Expr:
    """meta mark set meta mark | value (or plain value when no mask)."""
    return mangle(meta("mark"), value if mask is None else bit_or(meta("mark"), value))


def reject(type: str | None = None, code: str | None = None) -> Expr:
    """reject (the family's default: port unreachable), reject("tcp reset") — which in an
    inet table must follow a `meta l4proto tcp` or tcp match, as nft lists it — or
    reject("icmpx" / "icmp" / "icmpv6", "admin-prohibited")."""
    if type is None:
        return {"reject": None}
    if type not in REJECT_TYPES or (code is None) != (type == "tcp reset") or (
            code is not None and code not in REJECT_TYPES[type]):
        raise InvalidObject(f"reject with {type} {code or ''}: tcp reset, or icmpx/icmp/icmpv6 and a code")
    return {"reject": {"type": type} if code is None else {"type": type, "expr": code}}


def log(prefix: str | None = None, group: int | None = None, level: str | None = None) -> Expr:
    """log [prefix "..."] [group N] [level L]: group sends to nflog, else to the kernel log."""
    body: dict[str, Any] = {}
    if prefix is not None:
        if '"' in prefix or len(prefix.encode()) > 127:
            raise InvalidObject(f"log prefix {prefix!r}: at most 127 bytes, no quotes")
        body["prefix"] = prefix
    if group is not None:
        if not 0 <= group <= 65535:
            raise InvalidObject(f"log group {group}: 0-65535")
        body["group"] = group
    if level is not None:
        if level not in LOG_LEVELS:
            raise InvalidObject(f"log level {level!r}: one of {', '.join(LOG_LEVELS)}")
        if group is not None:
            raise InvalidObject("log: level and group exclude each other")
        body["level"] = level
    return {"log": body or None}


def limit(rate: int, per: str = "second", burst: int | None = None, over: bool = False,
          unit: str | None = None) -> Expr:
    """limit rate [over] N/per [burst B packets]; unit "bytes"/"kbytes"/"mbytes" limits bytes."""
    if rate < 1 or per not in RATE_UNITS or (unit is not None and unit not in BYTE_UNITS) or (
            burst is not None and burst < 1):
        raise InvalidObject(f"limit rate {rate}/{per} burst {burst} unit {unit}: rate ≥ 1, per one of "
                            f"{', '.join(RATE_UNITS)}, unit one of {', '.join(BYTE_UNITS)}")
    body: dict[str, Any] = {"rate": rate, "per": per}
    if unit is not None:
        body["rate_unit"] = unit
    if burst is not None:
        body["burst"] = burst
        if unit is not None:
            body["burst_unit"] = unit
    if over:
        body["inv"] = True
    return {"limit": body}


def _set_statement(op: str, name: str, key: Expr, timeout: int | None) -> Expr:
    elem: Any = key
    if timeout is not None:
        if timeout <= 0:
            raise InvalidObject(f"timeout {timeout}: a positive number of seconds")
        elem = {"elem": {"val": key, "timeout": timeout}}
    return {"set": {"op": op, "elem": elem, "set": ref(name)}}


def update_set(name: str, key: Expr, timeout: int | None = None) -> Expr:
    """update @name { key [timeout T] }: add the packet's key, or refresh its timeout."""
    return _set_statement("update", name, key, timeout)


def add_to_set(name: str, key: Expr, timeout: int | None = None) -> Expr:
    """add @name { key [timeout T] }: add the packet's key unless it is there."""
    return _set_statement("add", name, key, timeout)
