"""Typed nftables objects: Table, Chain, Rule, Set, Map, Element.

Each checks itself when it is created, so a bad name, an over-long comment or
an element of the wrong shape fails at the line that made it, with a message
that says what nft would refuse — not later as an opaque error from the
kernel. What depends on the table's family (which hooks exist, what
"dstnat" means) is checked when the object is put into a Transaction.

Objects carry no family or table: a Transaction is for one table and gives
them theirs, as a `nft -f` block does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from tulle.errors import ConfigError
from tulle.kernel.nft import datatypes
from tulle.kernel.nft.datatypes import DataType, Value

Expr = dict[str, Any]


class InvalidObject(ConfigError, ValueError):
    """An nftables object nft would refuse (raised when it is created or added)."""


# nft's scanner: an identifier starts with a letter, '_' or '.', then letters, digits, / - _ .
NAME = re.compile(r"[A-Za-z_.][A-Za-z0-9/\-_.]*\Z")
NAME_MAX = 255            # NFT_NAME_MAXLEN - 1
COMMENT_MAX = 127         # NFTNL_UDATA_COMMENT_MAXLEN - 1

FAMILIES = ("ip", "ip6", "inet", "arp", "bridge", "netdev")
IP_HOOKS = ("prerouting", "input", "forward", "output", "postrouting")
HOOKS = {"ip": IP_HOOKS, "ip6": IP_HOOKS, "inet": IP_HOOKS, "bridge": IP_HOOKS,
         "arp": ("input", "output"), "netdev": ()}   # netdev and inet ingress need a device: not supported
CHAIN_TYPES = {"filter": FAMILIES, "nat": ("ip", "ip6", "inet"), "route": ("ip", "ip6", "inet")}
TYPE_HOOKS = {"filter": IP_HOOKS, "nat": ("prerouting", "input", "output", "postrouting"), "route": ("output",)}
POLICIES = ("accept", "drop")

# Standard priority names (nft(8)) as nft 1.0.6 accepts them: value and the hooks they fit.
_ALL = IP_HOOKS
IP_PRIORITIES = {"raw": (-300, _ALL), "mangle": (-150, _ALL), "dstnat": (-100, ("prerouting",)),
                 "filter": (0, _ALL), "security": (50, _ALL), "srcnat": (100, ("postrouting",))}
BRIDGE_PRIORITIES = {"dstnat": (-300, ("prerouting",)), "filter": (-200, _ALL), "out": (100, ("output",)),
                     "srcnat": (300, ("postrouting",))}
PRIORITIES = {"ip": IP_PRIORITIES, "ip6": IP_PRIORITIES, "inet": IP_PRIORITIES, "bridge": BRIDGE_PRIORITIES,
              "arp": {"filter": (0, _ALL)}, "netdev": {"filter": (0, ("ingress", "egress"))}}
PRIORITY = re.compile(r"\s*([a-z]+)\s*(?:([+-])\s*(\d+))?\s*\Z")

SET_FLAGS = ("constant", "dynamic", "interval", "timeout")   # nft's listing order
VERDICTS = ("accept", "drop", "continue", "return", "jump", "goto")


def check_name(kind: str, name: Any) -> str:
    if not isinstance(name, str) or not NAME.match(name):
        raise InvalidObject(f"nft {kind} name {name!r}: must start with a letter, '_' or '.' and hold only "
                            f"letters, digits and / - _ .")
    if len(name.encode()) > NAME_MAX:
        raise InvalidObject(f"nft {kind} name {name[:40]!r}...: longer than {NAME_MAX} bytes")
    return name


def check_comment(comment: Any) -> str | None:
    if comment is None:
        return None
    if not isinstance(comment, str) or '"' in comment or "\n" in comment:
        raise InvalidObject(f"nft comment {comment!r}: must be a string without quotes or newlines")
    if len(comment.encode()) > COMMENT_MAX:
        raise InvalidObject(f"nft comment too long ({len(comment.encode())} > {COMMENT_MAX} bytes): {comment!r}")
    return comment


def _check_timeout(timeout: Any) -> int | None:
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, int) or timeout <= 0:
        raise InvalidObject(f"nft timeout {timeout!r}: must be a positive number of seconds")
    return timeout


def _set(obj: Any, **values: Any) -> None:
    for name, value in values.items():
        object.__setattr__(obj, name, value)


@dataclass(frozen=True)
class Table:
    """A table. `comment` reaches the kernel only with libnftables ≥ 1.0.7 (1.0.6's JSON drops it)."""

    family: str
    name: str
    comment: str | None = None

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise InvalidObject(f"unknown nft family {self.family!r} (one of {', '.join(FAMILIES)})")
        check_name("table", self.name)
        check_comment(self.comment)


@dataclass(frozen=True)
class Chain:
    """A regular chain, or a base chain when it has a type (then hook and priority too).

    priority: a number, or a standard name with an optional offset ("dstnat", "filter - 10"),
    checked against the table's family and the hook when the chain is added.
    `comment`: see Table.
    """

    name: str
    type: str | None = None
    hook: str | None = None
    priority: int | str | None = None
    policy: str | None = None
    comment: str | None = None

    def __post_init__(self) -> None:
        check_name("chain", self.name)
        check_comment(self.comment)
        where = f"chain {self.name}"
        if self.type is None:
            if self.hook is not None or self.priority is not None or self.policy is not None:
                raise InvalidObject(f"{where}: hook, priority and policy need a type (a base chain)")
            return
        if self.type not in CHAIN_TYPES:
            raise InvalidObject(f"{where}: unknown chain type {self.type!r} (one of {', '.join(CHAIN_TYPES)})")
        if self.hook is None or self.priority is None:
            raise InvalidObject(f"{where}: a base chain needs a hook and a priority")
        if self.hook not in TYPE_HOOKS[self.type]:
            raise InvalidObject(f"{where}: a {self.type} chain cannot hook {self.hook!r} "
                                f"(one of {', '.join(TYPE_HOOKS[self.type])})")
        if self.policy is not None and self.policy not in POLICIES:
            raise InvalidObject(f"{where}: policy must be accept or drop, got {self.policy!r}")
        if isinstance(self.priority, bool) or not isinstance(self.priority, (int, str)):
            raise InvalidObject(f"{where}: priority must be a number or a name, got {self.priority!r}")
        if isinstance(self.priority, str) and not PRIORITY.match(self.priority):
            raise InvalidObject(f"{where}: priority {self.priority!r} is not 'name', 'name + N' or 'name - N'")

    @property
    def base(self) -> bool:
        return self.type is not None

    def check_family(self, family: str) -> None:
        """What only the table's family decides: hook, type and priority name."""
        if not self.base:
            return
        where = f"chain {self.name} in a {family} table"
        if family not in CHAIN_TYPES[str(self.type)]:
            raise InvalidObject(f"{where}: no {self.type} chains in this family")
        if self.hook not in HOOKS[family]:
            hooks = ", ".join(HOOKS[family]) or "none without a device (not supported)"
            raise InvalidObject(f"{where}: hook {self.hook!r} does not exist here (hooks: {hooks})")
        self.priority_value(family)

    def priority_value(self, family: str) -> int:
        """The priority as the number the kernel holds ("dstnat - 10" → -110 in inet)."""
        if isinstance(self.priority, int):
            return self.priority
        m = PRIORITY.match(str(self.priority))
        assert m is not None
        name, sign, offset = m.groups()
        known = PRIORITIES[family]
        if name not in known:
            raise InvalidObject(f"chain {self.name}: priority {name!r} is not a standard name in {family} "
                                f"tables ({', '.join(known)})")
        value, hooks = known[name]
        if self.hook not in hooks:
            raise InvalidObject(f"chain {self.name}: priority {name!r} is not valid on hook {self.hook} "
                                f"(only {', '.join(hooks)}); give a number")
        return value + (int(offset) * (-1 if sign == "-" else 1) if offset else 0)


@dataclass(frozen=True)
class Rule:
    """A rule: a list of statements built with the expression helpers.

    handle: for delete and replace, the rule it names; for insert, the rule to insert it
    before (libnftables 1.0.6 ignores a position on add, so add takes none). Rules read
    back from a listing carry theirs.
    """

    chain: str
    expr: list[Expr] = field(default_factory=list)
    comment: str | None = None
    handle: int | None = None

    def __post_init__(self) -> None:
        if isinstance(self.chain, Chain):
            _set(self, chain=self.chain.name)
        check_name("chain", self.chain)
        check_comment(self.comment)
        if self.handle is not None and (isinstance(self.handle, bool) or not isinstance(self.handle, int)
                                        or self.handle <= 0):
            raise InvalidObject(f"rule handle {self.handle!r}: must be a positive integer")
        if not isinstance(self.expr, list) or not all(
                isinstance(e, dict) and len(e) == 1 and isinstance(next(iter(e)), str) for e in self.expr):
            raise InvalidObject(f"rule in {self.chain}: expr must be a list of statements "
                                f"({{kind: body}} dicts from the helpers), got {self.expr!r}")


def _key_types(type_: str | Iterable[str], what: str, allowed: tuple[str, ...]) -> tuple[str, ...]:
    names = tuple(p.strip() for p in type_.split(".")) if isinstance(type_, str) else tuple(type_)
    if not names:
        raise InvalidObject(f"{what}: needs a type")
    for n in names:
        if n not in allowed:
            raise InvalidObject(f"{what}: unknown type {n!r} (one of {', '.join(allowed)})")
    return names


def _flags(flags: Iterable[str], what: str) -> tuple[str, ...]:
    given = set(flags)
    unknown = given - set(SET_FLAGS)
    if unknown:
        raise InvalidObject(f"{what}: unknown flags {', '.join(sorted(unknown))} (known: {', '.join(SET_FLAGS)})")
    return tuple(f for f in SET_FLAGS if f in given)


class _Collection:
    """What sets and maps share: typed keys, flags, a default timeout, size."""

    name: str
    type: tuple[str, ...]
    flags: tuple[str, ...]
    timeout: int | None
    size: int | None
    comment: str | None

    kind = "set"

    def _check_common(self, type_: Any) -> None:
        what = f"{self.kind} {self.name}"
        check_name(self.kind, self.name)
        check_comment(self.comment)
        flags = _flags(self.flags, what)
        timeout = _check_timeout(self.timeout)
        if timeout is not None and "timeout" not in flags:
            flags = _flags((*flags, "timeout"), what)     # a default timeout implies the flag, as in nft
        if "dynamic" in flags and "constant" in flags:
            raise InvalidObject(f"{what}: a constant set cannot be dynamic")
        if "constant" in flags and "timeout" in flags:
            raise InvalidObject(f"{what}: a constant set cannot have timeouts")
        if self.size is not None and (isinstance(self.size, bool) or not isinstance(self.size, int)
                                      or self.size <= 0):
            raise InvalidObject(f"{what}: size must be a positive integer")
        types = _key_types(type_, what, datatypes.SET_TYPES)
        if "interval" in flags and len(types) == 1 and not datatypes.lookup(types[0]).interval:
            raise InvalidObject(f"{what}: type {types[0]} cannot hold intervals")
        _set(self, type=types, flags=flags, timeout=timeout)

    @property
    def key_types(self) -> tuple[DataType, ...]:
        return tuple(datatypes.lookup(t) for t in self.type)

    @property
    def interval(self) -> bool:
        return "interval" in self.flags

    def check_key(self, key: Any) -> Value | tuple[Value, ...]:
        """A key in canonical form; a tuple for a concatenation (arity checked)."""
        types = self.key_types
        where = f"{self.kind} {self.name} ({' . '.join(self.type)})"
        if len(types) > 1:
            if isinstance(key, dict) and "concat" in key:
                key = tuple(key["concat"])
            if not isinstance(key, (tuple, list)) or len(key) != len(types):
                raise InvalidObject(f"{where}: a key needs {len(types)} parts, got {key!r}")
            try:
                return tuple(t.check(k, self.interval) for t, k in zip(types, key))
            except ValueError as exc:
                raise InvalidObject(f"{where}: {exc}") from None
        if isinstance(key, (tuple, list)):
            raise InvalidObject(f"{where}: a key of one part, got {key!r}")
        try:
            return types[0].check(key, self.interval)
        except ValueError as exc:
            raise InvalidObject(f"{where}: {exc}") from None


@dataclass(frozen=True)
class Set(_Collection):
    """A named set. type: one data type or a concatenation ("ipv4_addr . inet_service" or a
    sequence); flags: interval, timeout, dynamic, constant; timeout: seconds (default for
    elements); elements: keys (tuples for concatenations). `comment`: see Table.

    `dynamic` marks a set that rules fill from the packet path (`update @set { ... }`).
    libnftables 1.0.6 cannot state it in JSON: nft sets the flag itself on a set created in
    the same transaction as such a rule (the Transaction insists on that), and adding the
    set again later fails (EEXIST) — add a dynamic set once, when it is created.
    """

    name: str
    type: Any
    flags: Iterable[str] = ()
    timeout: int | None = None
    elements: Iterable[Any] = ()
    comment: str | None = None
    size: int | None = None

    def __post_init__(self) -> None:
        self._check_common(self.type)
        _set(self, elements=tuple(self.check_key(k) for k in self.elements))


@dataclass(frozen=True)
class Map(_Collection):
    """A named map from keys (as in Set) to values of `value` type ("verdict" or a data type,
    a concatenation allowed). elements: a mapping or (key, value) pairs."""

    name: str
    type: Any
    value: Any
    flags: Iterable[str] = ()
    timeout: int | None = None
    elements: Mapping[Any, Any] | Iterable[tuple[Any, Any]] = ()
    comment: str | None = None
    size: int | None = None

    kind = "map"

    def __post_init__(self) -> None:
        self._check_common(self.type)
        if self.value in (datatypes.VERDICT, (datatypes.VERDICT,)):
            _set(self, value=(datatypes.VERDICT,))
        else:
            _set(self, value=_key_types(self.value, f"map {self.name} value", datatypes.SET_TYPES))
        pairs = self.elements.items() if isinstance(self.elements, Mapping) else self.elements
        _set(self, elements=tuple((self.check_key(k), self.check_value(v)) for k, v in pairs))

    @property
    def verdict(self) -> bool:
        return self.value == (datatypes.VERDICT,)

    def check_value(self, value: Any) -> Any:
        where = f"map {self.name} (: {' . '.join(self.value)})"
        if self.verdict:
            kind = next(iter(value)) if isinstance(value, dict) and len(value) == 1 else None
            if kind not in VERDICTS:
                raise InvalidObject(f"{where}: a value must be a verdict (accept, drop, jump, goto, ...), "
                                    f"got {value!r}")
            if kind in ("jump", "goto"):
                check_name("chain", (value[kind] or {}).get("target"))
            return value
        types = tuple(datatypes.lookup(t) for t in self.value)
        if len(types) > 1:
            if isinstance(value, dict) and "concat" in value:
                value = tuple(value["concat"])
            if not isinstance(value, (tuple, list)) or len(value) != len(types):
                raise InvalidObject(f"{where}: a value needs {len(types)} parts, got {value!r}")
            try:
                return tuple(t.check(v, False) for t, v in zip(types, value))
            except ValueError as exc:
                raise InvalidObject(f"{where}: {exc}") from None
        try:
            return types[0].check(value, False)
        except ValueError as exc:
            raise InvalidObject(f"{where}: {exc}") from None


@dataclass(frozen=True)
class Element:
    """One element of a set or map, checked against it: the key's parts match the set's
    type, a map element's value is of the map's kind (it may be left out to delete the
    element), a timeout needs a timeout set."""

    set: Set | Map
    key: Any
    value: Any = None
    timeout: int | None = None
    comment: str | None = None

    def __post_init__(self) -> None:
        s = self.set
        if not isinstance(s, (Set, Map)):
            raise InvalidObject(f"an element belongs to a Set or Map object, got {s!r}")
        _set(self, key=s.check_key(self.key))
        if isinstance(s, Map):
            if self.value is not None:          # None only to name an element for delete
                _set(self, value=s.check_value(self.value))
        elif self.value is not None:
            raise InvalidObject(f"set {s.name}: an element of a set has no value")
        _check_timeout(self.timeout)
        if self.timeout is not None and "timeout" not in s.flags:
            raise InvalidObject(f"{s.kind} {s.name}: element timeouts need the timeout flag")
        check_comment(self.comment)
