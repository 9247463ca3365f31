"""What nft lists back for a rule, and the rules it would list differently.

The kernel holds bytecode; `nft list` turns it back into expressions and on
the way (a) drops matches that another one implies — the `meta l4proto tcp`
nft itself puts before `tcp dport`, indistinguishable from one written by
hand — and (b) prints some values in its own way (counters with their
numbers, ct states in bit order, protocol numbers by name, the default
reject spelled out).

(a) changes what a rule says, so `check` refuses such rules when they enter a
Transaction: written, listed and faked rules then agree, and drift checks
that compare a listing with the wanted expressions keep working. (b) is
representation only: `listed` applies it, and FakeNft stores rules that way,
so its `list_table` gives what the kernel's gives.
"""

from __future__ import annotations

import copy
from typing import Any, Iterator

from tulle.kernel.nft import datatypes
from tulle.kernel.nft.objects import Expr, InvalidObject
from tulle.kernel.nft.text import DEFAULT_REJECT, FLAG_BITS, canonical, is_expression, sort_elements, type_of

TRANSPORTS = ("tcp", "udp", "sctp", "udplite", "dccp")
NETWORKS = {"ip": "ipv4", "ip6": "ipv6"}


def _payload_protocols(e: Any) -> Iterator[str]:
    """Protocols of the headers an expression reads (through concatenations and masks)."""
    if not isinstance(e, dict) or len(e) != 1:
        return
    kind, body = next(iter(e.items()))
    if kind == "payload":
        yield body["protocol"]
    elif kind == "concat":
        for part in body:
            yield from _payload_protocols(part)
    elif kind in ("&", "|", "^"):
        yield from _payload_protocols(body[0])


def _single(m: dict, left: Expr) -> Any:
    """The one value an == match on `left` requires, or None."""
    if m["op"] != "==" or m["left"] != left or isinstance(m["right"], (dict, list)):
        return None
    return m["right"]


def _check_value(v: Any, t: Any) -> None:
    """A match's right side must be a valid JSON value of the left side's type (caught here, not
    as "Could not resolve hostname" from nft); prefixes and ranges as prefix()/range_of() give them."""
    if not isinstance(t, (datatypes.DataType, tuple)) or is_expression(v) or (isinstance(v, str) and v[:1] == "@"):
        return
    if isinstance(v, dict) and "set" in v:
        for item in v["set"]:
            _check_value(item[0] if isinstance(item, list) and len(item) == 2 else item, t)
        return
    if isinstance(v, dict) and "concat" in v and isinstance(t, tuple):
        for part, pt in zip(v["concat"], t):
            _check_value(part, pt)
        return
    for item in v if isinstance(v, list) else [v]:
        if isinstance(item, str) and t.span is not None and ("/" in item or "-" in item):
            raise InvalidObject(f"{item!r}: write prefixes and ranges with prefix() and range_of() in rules")
        canonical(item, t)


def check(expr: list[Expr], family: str) -> None:
    """Refuse what nft would list differently from how it is written (see the module text),
    and values that do not fit what they are matched against."""
    l4proto: dict[str, int] = {}     # protocol → index of a `meta l4proto P` (or ip protocol P) match
    nfproto: dict[str, int] = {}     # ipv4/ipv6 → index of a `meta nfproto` match
    seen_tcp = False
    for i, s in enumerate(expr):
        kind, body = next(iter(s.items()))
        if kind == "match":
            _check_value(body["right"], type_of(body["left"]))
            protos = list(_payload_protocols(body["left"]))
            for p in protos:
                if p in l4proto:
                    raise InvalidObject(f"the match on protocol {p} (statement {l4proto[p]}) is implied by the {p} "
                                        f"match after it: nft lists the rule without it — leave it out")
                if p == "th" and l4proto:
                    only = next(iter(l4proto))
                    raise InvalidObject(f"a match on protocol {only} before th: nft lists th as {only} and drops "
                                        f"the protocol match — write {only} instead of th")
                if NETWORKS.get(p) in nfproto and family in ("inet", "bridge", "netdev"):
                    raise InvalidObject(f"meta nfproto {NETWORKS[p]} is implied by the {p} match after it: nft lists "
                                        f"the rule without it — leave it out")
            seen_tcp = seen_tcp or "tcp" in protos
            proto = _single(body, {"meta": {"key": "l4proto"}})
            if proto is None and family in ("ip", "ip6"):
                proto = _single(body, {"payload": {"protocol": "ip" if family == "ip" else "ip6",
                                                   "field": "protocol" if family == "ip" else "nexthdr"}})
            if proto is not None:
                name = canonical(proto, datatypes.TYPES["inet_proto"])
                l4proto[str(name)] = i
                seen_tcp = seen_tcp or name == "tcp"
            net = _single(body, {"meta": {"key": "nfproto"}})
            if net is not None:
                nfproto[str(net)] = i
            continue
        if kind == "reject" and body:
            if body.get("type") == "tcp reset":
                if any("th" in _payload_protocols(e["match"]["left"]) for e in expr[:i] if "match" in e):
                    raise InvalidObject("a rule that rejects with tcp reset is about tcp: nft lists th as tcp "
                                        "in it — write tcp")
                if family in ("ip", "ip6") and "tcp" in l4proto:
                    raise InvalidObject("reject with tcp reset implies meta l4proto tcp in ip/ip6 tables: nft lists "
                                        "the rule without it — leave it out")
                if family not in ("ip", "ip6") and not seen_tcp:
                    raise InvalidObject("reject with tcp reset needs a meta l4proto tcp (or tcp) match before it: "
                                        "nft adds one and lists it — write it")
            elif body.get("type") in ("icmp", "icmpv6") and family in ("inet", "bridge", "netdev"):
                implied = "ipv4" if body["type"] == "icmp" else "ipv6"
                if implied in nfproto:
                    raise InvalidObject(f"reject with {body['type']} implies meta nfproto {implied}: nft lists the "
                                        f"rule without it — leave it out")
        l4proto.clear()      # any other statement ends what nft folds together
        nfproto.clear()


# --- the listing's representation ---------------------------------------------------------

def _canonical_json(v: Any, t: Any) -> Any:
    """A value of type t as the kernel lists it."""
    if isinstance(v, str) and v.startswith("@") or is_expression(v) or t is None or isinstance(t, str):
        return v
    if isinstance(v, dict) and "set" in v:
        return {"set": [_element_json(i, t) for i in sort_elements(v["set"], t)]}
    if isinstance(v, list):
        bits = FLAG_BITS.get(t.name, {}) if isinstance(t, datatypes.DataType) else {}
        names = sorted((canonical(i, t) for i in v), key=lambda n: bits.get(n, 0))
        return names[0] if len(names) == 1 else names
    c = canonical(v, t)
    if isinstance(t, tuple):
        return {"concat": [pt.json(p) for p, pt in zip(c, t)]}
    return t.json(c)


def _element_json(i: Any, t: Any) -> Any:
    if isinstance(i, list) and len(i) == 2:
        return [_element_json(i[0], t), i[1]]
    if isinstance(i, dict) and "elem" in i:
        return {"elem": {**i["elem"], "val": _canonical_json(i["elem"]["val"], t)}}
    return _canonical_json(i, t)


def listed(expr: list[Expr], family: str) -> list[Expr]:
    """The rule's statements as `nft -j list` prints them."""
    out = []
    network = None          # ip or ip6 once a match fixed it: a plain reject then answers in its icmp
    for s in copy.deepcopy(expr):
        kind, body = next(iter(s.items()))
        if kind == "match":
            body["right"] = _canonical_json(body["right"], type_of(body["left"]))
            nf = _single(body, {"meta": {"key": "nfproto"}})
            network = {"ipv4": "ip", "ipv6": "ip6"}.get(str(nf), network)
            network = next((p for p in _payload_protocols(body["left"]) if p in NETWORKS), network)
        elif kind == "counter" and not body:
            s = {"counter": {"packets": 0, "bytes": 0}}
        elif kind == "vmap" and isinstance(body["data"], dict):
            body["data"] = _canonical_json(body["data"], type_of(body["key"]))
        elif kind in ("dnat", "snat", "masquerade") and body:
            if isinstance(body.get("flags"), list) and len(body["flags"]) == 1:
                body["flags"] = body["flags"][0]
            if family in ("ip", "ip6"):
                body.pop("family", None)
        elif kind == "reject" and not body:
            kind = DEFAULT_REJECT[network or family]
            s = {"reject": {"type": kind, "expr": "port-unreachable"}}
        elif kind == "log" and body:
            if body.get("level") == "warn":
                del body["level"]
            s = {"log": body or None}
        elif kind == "limit":
            if "rate_unit" in body:
                body.setdefault("burst", 0)
                body.setdefault("burst_unit", "bytes")
            else:
                body.setdefault("burst", 5)
        out.append(s)
    return out
