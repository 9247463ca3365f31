"""FakeNft: nftables in memory, for tests that compare exact rulesets without root.

It keeps tables, chains, rules, sets, maps and elements with the kernel's
transaction semantics — a transaction applies completely or not at all; add
is idempotent for tables, chains, sets, maps and elements while create fails
on what exists; delete and flush fail on what is missing; a chain still
named by a jump, a goto or a verdict map element, or a set a rule looks up,
cannot be deleted; handles grow per table (sets, chains, rules and anonymous
sets share the count) and are never reused, a failed batch keeping those the
kernel gave before and after the refused operation unless nft refused the
batch from its own copy of the ruleset and sent nothing — and lists and
prints what the kernel would: `list_table` gives `nft -j list table`'s JSON,
`dump` the text of `nft list ruleset` / `nft list table`.

It models the kernel with libnftables 1.0.6 (Debian 12) as tulle drives it,
JSON in: that library drops the comments of tables, chains and sets, and
marks a set dynamic when a rule of the same batch updates it — such a set
cannot be added again, as JSON cannot repeat the flag; a rule that updates a
set gives it the kernel's default size 65535. Element timeouts do
not tick, so `expires` is never printed — leave them out of golden tests.
The golden netns test (tests/netns/kernel/test_nft_fake_vs_kernel.py) holds
the fake to the kernel.
"""

from __future__ import annotations

import copy
import dataclasses
import errno
import os
from dataclasses import dataclass, field
from typing import Any, Iterator

from tulle.errors import KernelError
from tulle.kernel.nft import datatypes, listed, text
from tulle.kernel.nft.objects import Chain, Element, Map, Rule, Set, Table
from tulle.kernel.nft.transaction import Object, Transaction, element_json, filled_sets, object_json

METAINFO = {"metainfo": {"version": "1.0.6", "release_name": "Lester Gooch #5", "json_schema_version": 1}}
DYNAMIC_SIZE = 65535     # what the kernel gives a set without a size when a rule starts updating it


class _Refused(Exception):
    """The kernel refused an operation (it goes on with the batch's others, which take their handles)."""

    def __init__(self, code: int, what: str) -> None:
        super().__init__(f"Could not process rule: {os.strerror(code)} ({what})")
        self.code = code


class _Unsent(_Refused):
    """nft refused the batch from its own copy of the ruleset: nothing reached the kernel."""


@dataclass
class _Elem:
    key: Any
    value: Any = None
    timeout: int | None = None
    comment: str | None = None


@dataclass
class _Collection:
    decl: Set | Map
    handle: int
    size: int | None
    elements: dict[Any, _Elem] = field(default_factory=dict)   # in insertion order


@dataclass
class _Chain:
    decl: Chain
    handle: int
    rules: list[Rule] = field(default_factory=list)


@dataclass
class _Table:
    decl: Table
    handle: int
    sets: dict[str, _Collection] = field(default_factory=dict)
    chains: dict[str, _Chain] = field(default_factory=dict)


def _walk(e: Any) -> Iterator[Any]:
    yield e
    if isinstance(e, dict):
        for v in e.values():
            yield from _walk(v)
    elif isinstance(e, list):
        for v in e:
            yield from _walk(v)


def _targets(e: Any) -> Iterator[str]:
    """Chains a rule or a verdict jumps or goes to."""
    for node in _walk(e):
        if isinstance(node, dict):
            for verb in ("jump", "goto"):
                if isinstance(node.get(verb), dict):
                    yield node[verb]["target"]


def _set_refs(e: Any) -> Iterator[str]:
    for node in _walk(e):
        if isinstance(node, str) and node.startswith("@"):
            yield node[1:]


def _anonymous_sets(e: Any) -> int:
    return sum(1 for node in _walk(e) if isinstance(node, dict) and isinstance(node.get("set"), list))


class FakeNft:
    """An in-memory Runner (see the module text)."""

    def __init__(self) -> None:
        self._tables: dict[tuple[str, str], _Table] = {}
        self._last_table_handle = 0
        self._last_handle: dict[int, int] = {}   # by table handle: the last one given in it

    # --- Runner ---------------------------------------------------------------------

    def run(self, tx: Transaction) -> None:
        if tx.empty():
            return
        tx.render()                       # the checks the kernel path makes before sending
        state = copy.deepcopy(self._tables)
        handles = (self._last_table_handle, dict(self._last_handle))
        refused: list[_Refused] = []
        for verb, obj in tx.ops:          # like nft and the kernel, go on after an error to find them all
            try:
                self._apply(state, tx.family, tx.table, verb, obj)
            except _Refused as exc:
                refused.append(exc)
        if refused:
            unsent = [e for e in refused if isinstance(e, _Unsent)]
            if unsent:                    # nft never sent the batch: no handle was taken
                self._last_table_handle, self._last_handle = handles
            first = (unsent or refused)[0]
            raise KernelError(f"nftables transaction on {tx.family} {tx.table} failed: {first}", errno=first.code)
        self._tables = state

    def list_tables(self) -> list[tuple[str, str]]:
        return list(self._tables)

    def list_table(self, family: str, table: str) -> list[dict] | None:
        t = self._tables.get((family, table))
        if t is None:
            return None
        out: list[dict] = [METAINFO, {"table": {"family": family, "name": table, "handle": t.handle}}]
        for s in t.sets.values():
            (kind, body), = object_json(family, table, "add", s.decl).items()
            body.update(handle=s.handle, **({"size": s.size} if s.size else {}))
            elements = self._elements_json(s)
            if elements:
                body["elem"] = elements
            out.append({kind: body})
        for c in t.chains.values():
            (kind, body), = object_json(family, table, "add", c.decl).items()
            out.append({kind: {**body, "handle": c.handle}})
        for c in t.chains.values():
            out += [object_json(family, table, "add", r) for r in c.rules]
        return copy.deepcopy(out)          # callers may change what they get

    def dump(self, family: str | None = None, table: str | None = None) -> str:
        if table is not None:
            if (family, table) not in self._tables:
                raise KernelError(f"nft list table {family} {table} failed: No such file or directory",
                                  errno=errno.ENOENT)
            tables = [self._tables[(str(family), table)]]
        else:
            tables = [t for (f, _), t in self._tables.items() if family in (None, f)]
        return "".join(self._table_text(t) for t in tables)

    # --- listing ------------------------------------------------------------------------

    @staticmethod
    def _ordered(s: _Collection) -> list[_Elem]:
        """Elements in nft's listing order (see datatypes): by value; a concatenation by its
        little-endian registers; an interval concatenation as inserted."""
        types = s.decl.key_types
        items = list(s.elements.values())
        if len(types) == 1:
            return sorted(items, key=lambda e: types[0].bounds(e.key)[0])
        if s.decl.interval:
            return items
        return sorted(items, key=lambda e: datatypes.concat_order(types, e.key))

    def _elements_json(self, s: _Collection) -> list[Any]:
        """The elements as listed: a timeout only when it is not the set's own (never `expires`)."""
        return [element_json(s.decl, e.key, e.value, e.timeout if e.timeout != s.decl.timeout else None,
                             e.comment, "add") for e in self._ordered(s)]

    def _table_text(self, t: _Table) -> str:
        family = t.decl.family
        blocks = [text.set_block(s.decl, s.size, self._elements_json(s)) for s in t.sets.values()]
        blocks += [text.chain_block(c.decl, family, c.rules) for c in t.chains.values()]
        return text.table_text(t.decl, blocks)

    # --- transaction semantics ------------------------------------------------------------------

    def _handle(self, t: _Table) -> int:
        self._last_handle[t.handle] = self._last_handle.get(t.handle, 0) + 1
        return self._last_handle[t.handle]

    def _apply(self, state: dict[tuple[str, str], _Table], family: str, table: str, verb: str, obj: Object) -> None:
        key = (family, table)
        if isinstance(obj, Table):
            if verb == "delete":
                if key not in state:
                    raise _Refused(errno.ENOENT, f"table {family} {table}")
                del state[key]
            elif key in state:
                if verb == "create":
                    raise _Refused(errno.EEXIST, f"table {family} {table}")
            else:
                self._last_table_handle += 1
                state[key] = _Table(dataclasses.replace(obj, comment=None), self._last_table_handle)
            return
        t = state.get(key)
        if t is None:
            raise _Unsent(errno.ENOENT, f"table {family} {table}")
        if isinstance(obj, Chain):
            self._chain(t, verb, obj)
        elif isinstance(obj, Rule):
            self._rule(t, verb, obj)
        elif isinstance(obj, (Set, Map)):
            self._collection(t, verb, obj)
        else:
            self._element(t, verb, obj)

    def _chain(self, t: _Table, verb: str, chain: Chain) -> None:
        have = t.chains.get(chain.name)
        what = f"chain {chain.name}"
        if verb in ("add", "create"):
            if have is None:
                policy = (chain.policy or "accept") if chain.base else None       # the kernel's default
                decl = dataclasses.replace(chain, comment=None, policy=policy)
                t.chains[chain.name] = _Chain(decl, self._handle(t))
                return
            if verb == "create" or (chain.base and not have.decl.base):
                raise _Refused(errno.EEXIST, what)
            if chain.base:
                old = have.decl
                if chain.type != old.type:
                    raise _Refused(errno.EEXIST, what)
                if chain.hook != old.hook or chain.priority_value(t.decl.family) != old.priority_value(t.decl.family):
                    raise _Refused(errno.EOPNOTSUPP, f"{what}: hook and priority cannot change")
                if chain.policy and chain.policy != old.policy:
                    have.decl = dataclasses.replace(old, policy=chain.policy)
            return
        if have is None:
            raise _Refused(errno.ENOENT, what)
        if verb == "flush":
            have.rules.clear()
            return
        users = [r for c in t.chains.values() if c is not have for r in c.rules if chain.name in _targets(r.expr)]
        users += [e for s in t.sets.values() for e in s.elements.values() if chain.name in _targets(e.value)]
        if users:
            raise _Refused(errno.EBUSY, f"{what} is still jumped to")
        del t.chains[chain.name]

    def _find_rule(self, chain: _Chain, handle: int) -> int:
        for i, r in enumerate(chain.rules):
            if r.handle == handle:
                return i
        raise _Refused(errno.ENOENT, f"rule handle {handle} in chain {chain.decl.name}")

    def _rule(self, t: _Table, verb: str, rule: Rule) -> None:
        """In the kernel's order: anonymous sets, the rule's handle, its position, its jumps."""
        chain = t.chains.get(rule.chain)
        if chain is None:
            raise _Refused(errno.ENOENT, f"chain {rule.chain}")
        if verb == "delete":
            del chain.rules[self._find_rule(chain, rule.handle or 0)]
            return
        for name in _set_refs(rule.expr):
            if name not in t.sets:
                raise _Unsent(errno.ENOENT, f"set {name}")
        for _ in range(_anonymous_sets(rule.expr)):
            self._handle(t)
        handle = rule.handle if verb == "replace" else self._handle(t)
        at = None if rule.handle is None else self._find_rule(chain, rule.handle)
        for target in _targets(rule.expr):
            if target not in t.chains:
                raise _Refused(errno.ENOENT, f"chain {target} (jumped to)")
            if t.chains[target].decl.base:
                raise _Refused(errno.EOPNOTSUPP, f"jump to base chain {target}")
        for name in filled_sets(rule.expr):
            t.sets[name].size = t.sets[name].size or DYNAMIC_SIZE
        new = Rule(rule.chain, listed.listed(rule.expr, t.decl.family), rule.comment, handle)
        if verb == "replace":
            chain.rules[at or 0] = new
        else:
            chain.rules.insert((at or 0) if verb == "insert" else len(chain.rules), new)

    def _collection(self, t: _Table, verb: str, decl: Set | Map) -> None:
        have = t.sets.get(decl.name)
        what = f"{decl.kind} {decl.name}"
        if verb in ("add", "create"):
            if have is None:
                stored = dataclasses.replace(decl, comment=None, elements=())
                have = t.sets[decl.name] = _Collection(stored, self._handle(t), decl.size)
            elif verb == "create" or not _same(have.decl, decl) or "dynamic" in decl.flags:
                raise _Refused(errno.EEXIST, what)      # a dynamic set: JSON cannot repeat its flag
            if isinstance(decl, Map):
                for k, v in decl.elements:
                    self._element(t, "add", Element(decl, k, v))
            else:
                for k in decl.elements:
                    self._element(t, "add", Element(decl, k))
            return
        if have is None:             # nft looks up a set it must flush (element by element) itself
            raise (_Unsent if verb == "flush" else _Refused)(errno.ENOENT, what)
        if verb == "flush":
            have.elements.clear()
            return
        if any(decl.name in _set_refs(r.expr) for c in t.chains.values() for r in c.rules):
            raise _Refused(errno.EBUSY, f"{what} is used by a rule")
        del t.sets[decl.name]

    def _element(self, t: _Table, verb: str, e: Element) -> None:
        s = t.sets.get(e.set.name)
        what = f"element {e.key!r} of {e.set.kind} {e.set.name}"
        if s is None:
            raise _Unsent(errno.ENOENT, f"{e.set.kind} {e.set.name}")
        if type(s.decl) is not type(e.set) or s.decl.type != e.set.type or (
                isinstance(s.decl, Map) and s.decl.value != e.set.value):
            raise _Refused(errno.EINVAL, f"{what}: the set holds {' . '.join(s.decl.type)}")
        bound = any(e.set.name in _set_refs(r.expr) for c in t.chains.values() for r in c.rules)
        if "constant" in s.decl.flags and bound:
            raise _Refused(errno.EBUSY, f"{what}: the set is constant")
        have = s.elements.get(e.key)
        if verb == "delete":
            if have is None:        # nft itself looks up the intervals it must split into start and end
                raise (_Unsent if s.decl.interval else _Refused)(errno.ENOENT, what)
            del s.elements[e.key]
            return
        if have is not None:
            if verb == "create" or have.value != e.value:
                raise _Refused(errno.EEXIST, what)
            return
        types = s.decl.key_types
        if s.decl.interval and len(types) == 1:
            lo, hi = types[0].bounds(e.key)
            for other in s.elements.values():
                olo, ohi = types[0].bounds(other.key)
                if lo <= ohi and olo <= hi:
                    raise _Unsent(errno.EEXIST, f"{what}: interval overlaps with an existing one")
        for target in _targets(e.value):
            if target not in t.chains:
                raise _Refused(errno.ENOENT, f"chain {target} (jumped to)")
        s.elements[e.key] = _Elem(e.key, e.value, e.timeout, e.comment)


def _same(old: Set | Map, new: Set | Map) -> bool:
    """Whether re-adding `new` over `old` keeps the kernel's set (type, value and flags must match)."""
    return (type(old) is type(new) and old.type == new.type and old.flags == new.flags
            and getattr(old, "value", None) == getattr(new, "value", None))
