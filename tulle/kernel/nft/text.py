"""nft JSON → the text `nft list` prints (nft 1.0.6).

Rules are printed from their expression dicts: every expression the helpers
in `expr` build has a printer here, typed by what it matches (a mark prints as
0x00004000, a protocol by name, ct states in bit order, anonymous sets sorted).
Tables, chains, sets and maps are printed with nft's layout: tabs, a blank
line between objects, `type nat hook prerouting priority dstnat; policy
accept;`, set elements wrapped as nft wraps them. FakeNft.dump is built on it
(printing rules in their listed form, see `listed`); the golden netns test
compares its output with the kernel's listing.
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

from tulle.kernel.nft import datatypes
from tulle.kernel.nft.datatypes import DataType, time_text
from tulle.kernel.nft.objects import (BRIDGE_PRIORITIES, IP_PRIORITIES, PRIORITIES, VERDICTS, Chain, Expr,
                                      InvalidObject, Map, Rule, Set, Table)

T = datatypes.TYPES
PAYLOAD_TYPES: dict[tuple[str, str], DataType] = {
    ("ip", "saddr"): T["ipv4_addr"], ("ip", "daddr"): T["ipv4_addr"], ("ip", "protocol"): T["inet_proto"],
    ("ip6", "saddr"): T["ipv6_addr"], ("ip6", "daddr"): T["ipv6_addr"], ("ip6", "nexthdr"): T["inet_proto"],
    ("ether", "saddr"): T["ether_addr"], ("ether", "daddr"): T["ether_addr"],
    **{(p, f): T["inet_service"] for p in ("tcp", "udp", "sctp", "udplite", "dccp", "th") for f in ("sport", "dport")},
}
META_TYPES = {"l4proto": T["inet_proto"], "nfproto": T["nf_proto"], "mark": T["mark"],
              "iifname": T["ifname"], "oifname": T["ifname"]}
UNQUALIFIED_META = ("iif", "oif", "iifname", "oifname", "iifgroup", "oifgroup")   # printed without "meta"
CT_TYPES = {"state": T["ct_state"], "status": T["ct_status"], "mark": T["mark"]}
FLAG_BITS = {"ct_state": datatypes.CT_STATES, "ct_status": datatypes.CT_STATUSES}
BINOPS = ("&", "|", "^")
DEFAULT_REJECT = {"ip": "icmp", "ip6": "icmpv6", "inet": "icmpx", "bridge": "icmpx", "netdev": "icmpx"}
FIB_OIF = "fib_oif"   # fib ... oif: printed as exists / missing

Type = DataType | tuple[DataType, ...] | str | None
ELEMENTS_INDENT = "\t\t\t     "   # nft's continuation of a set's element list


def _kind(e: dict) -> tuple[str, Any]:
    (kind, body), = e.items()
    return kind, body


def _unsupported(what: Any) -> InvalidObject:
    return InvalidObject(f"tulle cannot print nft expression {what!r}")


# --- types of expressions -------------------------------------------------------------

def type_of(e: Any) -> Type:
    """The data type of what an expression yields (None: not a typed value)."""
    if not isinstance(e, dict) or len(e) != 1:
        return None
    kind, body = _kind(e)
    if kind == "payload":
        return PAYLOAD_TYPES.get((body["protocol"], body["field"]))
    if kind == "meta":
        return META_TYPES.get(body["key"])
    if kind == "ct":
        return CT_TYPES.get(body["key"])
    if kind == "fib":
        return T["fib_addrtype"] if body["result"] == "type" else FIB_OIF
    if kind == "numgen":
        return T["integer"]
    if kind == "concat":
        parts = tuple(type_of(p) for p in body)
        return parts if all(isinstance(p, DataType) for p in parts) else None  # type: ignore[return-value]
    if kind in BINOPS:
        return type_of(body[0])
    return None


def is_expression(v: Any) -> bool:
    """An expression read from the packet (a concatenation of values is a value)."""
    if not isinstance(v, dict) or len(v) != 1:
        return False
    kind, body = _kind(v)
    if kind == "concat":
        return all(is_expression(p) for p in body)
    return kind in ("payload", "meta", "ct", "fib", "numgen", *BINOPS)


def expr_text(e: Expr) -> str:
    kind, body = _kind(e)
    if kind == "payload":
        return f"{body['protocol']} {body['field']}"
    if kind == "meta":
        return body["key"] if body["key"] in UNQUALIFIED_META else f"meta {body['key']}"
    if kind == "ct":
        return f"ct {body['key']}"
    if kind == "fib":
        return f"fib {' . '.join(body['flags'])} {body['result']}"
    if kind == "numgen":
        offset = f" offset {body['offset']}" if body.get("offset") else ""
        return f"numgen {body['mode']} mod {body['mod']}{offset}"
    if kind == "concat":
        return " . ".join(expr_text(p) for p in body)
    if kind in BINOPS:
        left, right = body
        return f"{expr_text(left)} {kind} {value_text(right, type_of(left))}"
    raise _unsupported(e)


# --- values ----------------------------------------------------------------------------

def canonical(v: Any, t: Type) -> Any:
    """A value of type t in canonical form (tuples for concatenations)."""
    if isinstance(t, tuple):
        parts = v["concat"] if isinstance(v, dict) else v
        return tuple(canonical(p, pt) for p, pt in zip(parts, t))
    if isinstance(t, DataType):
        try:
            value = t.check(v, True)
        except ValueError as exc:
            raise InvalidObject(str(exc)) from None
        if t.span is not None:           # nft lists an aligned range as a prefix, a /32 as an address
            value = datatypes.canonical_interval(t.name, *t.bounds(value))
        return value
    return v


def order_key(v: Any, t: Type) -> int:
    """Where a value of type t sorts in a listing (see datatypes)."""
    c = canonical(v, t)
    if isinstance(t, tuple):
        return datatypes.concat_order(t, c)
    return t.bounds(c)[0] if isinstance(t, DataType) else 0


def plain_text(c: Any, t: Type) -> str:
    if isinstance(t, tuple):
        return " . ".join(plain_text(p, pt) for p, pt in zip(c, t))
    if isinstance(t, DataType):
        return t.text(c)
    return str(c)


def value_text(v: Any, t: Type) -> str:
    """The right side of a match (or a set element) printed as a value of type t."""
    if isinstance(v, str) and v.startswith("@"):
        return v
    if is_expression(v):
        return expr_text(v)
    if isinstance(v, dict) and "set" in v:
        return "{ " + ", ".join(element_text(i, t) for i in sort_elements(v["set"], t)) + " }"
    if isinstance(v, list):                                   # flags: ct state established,related
        bits = FLAG_BITS.get(t.name, {}) if isinstance(t, DataType) else {}
        return ",".join(sorted((str(canonical(i, t)) for i in v), key=lambda n: bits.get(n, 0)))
    if t == FIB_OIF:
        return "exists" if v else "missing"
    return plain_text(canonical(v, t), t)


def sort_elements(items: Iterable[Any], t: Type) -> list[Any]:
    """Elements of an anonymous set (or map: [key, value] pairs) in nft's listing order."""
    def key(i: Any) -> int:
        k = i[0] if isinstance(i, list) and len(i) == 2 else i
        if isinstance(k, dict) and "elem" in k:
            k = k["elem"]["val"]
        return order_key(k, t)
    return sorted(items, key=key)


def element_text(i: Any, t: Type, value_type: Type = None) -> str:
    if isinstance(i, list) and len(i) == 2:                    # a map's key : value
        return f"{element_text(i[0], t)} : {data_text(i[1], value_type)}"
    if isinstance(i, dict) and "elem" in i:
        body = i["elem"]
        out = value_text(body["val"], t)
        if body.get("timeout"):
            out += f" timeout {time_text(body['timeout'])}"
        if body.get("comment"):
            out += f' comment "{body["comment"]}"'
        return out
    return value_text(i, t)


def data_text(v: Any, t: Type) -> str:
    """A map's value: a verdict, or data of type t."""
    if isinstance(v, dict) and len(v) == 1 and next(iter(v)) in VERDICTS:
        return verdict_text(v)
    return value_text(v, t)


def verdict_text(v: Expr) -> str:
    kind, body = _kind(v)
    return f"{kind} {body['target']}" if kind in ("jump", "goto") else kind


# --- statements --------------------------------------------------------------------------


def _must_print_eq(left: Any, right: Any, t: Type) -> bool:
    """nft prints `==` only after a binary operation or before a single bitmask value."""
    if isinstance(left, dict) and next(iter(left)) in BINOPS:
        return True
    return isinstance(t, DataType) and t.name in FLAG_BITS and not isinstance(right, (dict, list))


def _match_text(body: dict) -> str:
    left, right, op = body["left"], body["right"], body["op"]
    t = type_of(left)
    if op == "in" or (op == "==" and not _must_print_eq(left, right, t)):
        sep = " "
    else:
        sep = f" {op} "
    return f"{expr_text(left)}{sep}{value_text(right, t)}"


def _nat_text(kind: str, body: dict | None, family: str) -> str:
    body = body or {}
    out = kind
    addr, port = body.get("addr"), body.get("port")
    if addr is not None or port is not None:
        if family in ("inet", "bridge", "netdev") and body.get("family"):
            out += f" {body['family']}"
        out += " to "
        if addr is not None:
            a = expr_text(addr) if is_expression(addr) else str(addr)
            out += f"[{a}]" if port is not None and ":" in a else a
        if port is not None:
            out += f":{port}"
    flags = body.get("flags")
    if flags:
        out += " " + ",".join([flags] if isinstance(flags, str) else flags)
    return out


def _reject_text(body: dict | None, family: str) -> str:
    if not body:
        return "reject"
    kind, code = body.get("type"), body.get("expr")
    if kind == "tcp reset":
        return "reject with tcp reset"
    if code == "port-unreachable" and kind == DEFAULT_REJECT.get(family):
        return "reject"
    return f"reject with {kind} {code}"


def _log_text(body: dict | None) -> str:
    body = body or {}
    out = "log"
    if "prefix" in body:
        out += f' prefix "{body["prefix"]}"'
    if "group" in body:
        out += f" group {body['group']}"
    if body.get("level", "warn") != "warn":
        out += f" level {body['level']}"
    return out


def _bytes_text(value: int, unit: str) -> str:
    """rate/burst in bytes units as nft prints them (the largest unit that divides evenly)."""
    size = value * {"bytes": 1, "kbytes": 1024, "mbytes": 1024 * 1024}[unit]
    for name, scale in (("mbytes", 1024 * 1024), ("kbytes", 1024)):
        if size % scale == 0:
            return f"{size // scale} {name}"
    return f"{size} bytes"


def _limit_text(body: dict) -> str:
    over = "over " if body.get("inv") else ""
    if "rate_unit" in body and body["rate_unit"] != "packets":
        out = f"limit rate {over}{_bytes_text(body['rate'], body['rate_unit'])}/{body['per']}"
        if body.get("burst"):
            out += f" burst {_bytes_text(body['burst'], body.get('burst_unit', 'bytes'))}"
        return out
    out = f"limit rate {over}{body['rate']}/{body['per']}"
    if body.get("burst") not in (None, 0, 5):
        out += f" burst {body['burst']} packets"
    return out


def _set_statement_text(body: dict) -> str:
    elem = body["elem"]
    timeout = ""
    if isinstance(elem, dict) and "elem" in elem:
        if elem["elem"].get("timeout"):
            timeout = f" timeout {time_text(elem['elem']['timeout'])}"
        elem = elem["elem"]["val"]
    return f"{body['op']} {body['set']} {{ {expr_text(elem)}{timeout} }}"


def statement_text(s: Expr, family: str) -> str:
    kind, body = _kind(s)
    if kind == "match":
        return _match_text(body)
    if kind == "counter":
        body = body or {}
        return f"counter packets {body.get('packets', 0)} bytes {body.get('bytes', 0)}"
    if kind in VERDICTS:
        return verdict_text(s)
    if kind == "vmap":
        key_type = type_of(body["key"])
        data = body["data"]
        if isinstance(data, dict):
            items = sort_elements(data["set"], key_type)
            data = "{ " + ", ".join(element_text(i, key_type) for i in items) + " }"
        return f"{expr_text(body['key'])} vmap {data}"
    if kind == "mangle":
        return f"{expr_text(body['key'])} set {value_text(body['value'], type_of(body['key']))}"
    if kind in ("dnat", "snat"):
        return _nat_text(kind, body, family)
    if kind == "masquerade":
        return _nat_text(kind, body, family)
    if kind == "reject":
        return _reject_text(body, family)
    if kind == "log":
        return _log_text(body)
    if kind == "limit":
        return _limit_text(body)
    if kind == "set":
        return _set_statement_text(body)
    raise _unsupported(s)


def rule_text(rule: Rule, family: str) -> str:
    out = " ".join(statement_text(s, family) for s in rule.expr)
    if rule.comment:
        out += f' comment "{rule.comment}"'
    return out


# --- objects -----------------------------------------------------------------------------------

def priority_text(family: str, hook: str, prio: int) -> str:
    """nft's prio2str: the standard name within 10 of prio, if valid on the hook, ± offset."""
    known = BRIDGE_PRIORITIES if family == "bridge" else PRIORITIES.get(family, IP_PRIORITIES)
    for name, (value, hooks) in sorted(known.items(), key=lambda kv: kv[1][0]):
        if abs(prio - value) <= 10:
            if hook not in hooks:
                break
            offset = prio - value
            return name + (f" + {offset}" if offset > 0 else f" - {-offset}" if offset < 0 else "")
    return str(prio)


def chain_block(chain: Chain, family: str, rules: Sequence[Rule]) -> list[str]:
    lines = [f"\tchain {chain.name} {{"]
    if chain.comment:
        lines.append(f'\t\tcomment "{chain.comment}"')
    if chain.base:
        prio = priority_text(family, str(chain.hook), chain.priority_value(family))
        lines.append(f"\t\ttype {chain.type} hook {chain.hook} priority {prio}; policy {chain.policy or 'accept'};")
    lines += [f"\t\t{rule_text(r, family)}" for r in rules]
    return lines + ["\t}"]


def _elements_text(items: list[str], per_line: int) -> str:
    """nft's calculate_delim: `per_line` elements to a line, then a newline and indent."""
    out, count = "", 0
    for n, item in enumerate(items):
        if n:
            if per_line and count < per_line:
                out += ", "
            else:
                out += ",\n" + ELEMENTS_INDENT
                count = 0
        out += item
        count += 1
    return out


def set_block(s: Set | Map, size: int | None, elements: list[Any]) -> list[str]:
    """A set or map declaration; `elements` as JSON items already in listing order."""
    key_types = s.key_types
    key_type: Type = key_types[0] if len(key_types) == 1 else key_types
    if isinstance(s, Map):
        value_type: Type = None if s.verdict else (
            datatypes.lookup(s.value[0]) if len(s.value) == 1 else tuple(datatypes.lookup(v) for v in s.value))
        type_line = f"type {' . '.join(s.type)} : {' . '.join(s.value)}"
    else:
        value_type, type_line = None, f"type {' . '.join(s.type)}"
    lines = [f"\t{s.kind} {s.name} {{", f"\t\t{type_line}"]
    if size:
        lines.append(f"\t\tsize {size}")
    flags = [f for f in s.flags if not (f == "timeout" and s.timeout and "dynamic" not in s.flags)]
    if flags:
        lines.append(f"\t\tflags {','.join(flags)}")
    if s.timeout:
        lines.append(f"\t\ttimeout {time_text(s.timeout)}")
    if s.comment:
        lines.append(f'\t\tcomment "{s.comment}"')
    if elements:
        per_line = key_type.per_line if isinstance(key_type, DataType) else 0
        texts = [element_text(i, key_type, value_type) for i in elements]
        lines.append(f"\t\telements = {{ {_elements_text(texts, per_line)} }}")
    return lines + ["\t}"]


def table_text(table: Table, blocks: list[list[str]]) -> str:
    lines = [f"table {table.family} {table.name} {{"]
    if table.comment:
        lines.append(f'\tcomment "{table.comment}"')
    for n, block in enumerate(blocks):
        if n:
            lines.append("")
        lines += block
    return "\n".join(lines + ["}"]) + "\n"
