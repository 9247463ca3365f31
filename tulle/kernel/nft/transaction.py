"""A Transaction: typed operations on one table, rendered once to the nft JSON
batch libnftables takes and applied all-or-nothing by a Runner.

    tx = Transaction("inet", "tulle-portmap")
    tx.add(Table("inet", "tulle-portmap"))
    tx.add(Chain("prerouting", type="nat", hook="prerouting", priority="dstnat", policy="accept"))
    tx.flush(Chain("prerouting"))
    tx.add(Rule("prerouting", [match(fib("type", ["daddr"]), "local"), jump("hostports")]))
    tx.delete(rule_from_a_listing)            # by its handle

Verbs are nft's: add (idempotent for tables, chains, sets, maps and
elements; a rule goes to the end), create (fails when it exists), insert (a
rule at the top, or before `handle`), replace (the rule with `handle`), flush (a chain's rules, a
set's or map's elements) and delete. Each object is checked as it comes in
(family-dependent parts, rules in their listed form); `render` is the only
place that knows the JSON schema.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Union

from tulle.kernel.nft import datatypes, listed
from tulle.kernel.nft.objects import Chain, Element, InvalidObject, Map, Rule, Set, Table

Object = Union[Table, Chain, Rule, Set, Map, Element]
VERBS: dict[str, tuple[type, ...]] = {
    "add": (Table, Chain, Rule, Set, Map, Element),
    "create": (Table, Chain, Set, Map, Element),
    "insert": (Rule,),
    "replace": (Rule,),
    "flush": (Chain, Set, Map),
    "delete": (Table, Chain, Rule, Set, Map, Element),
}
SCHEMA = {"metainfo": {"json_schema_version": 1}}


def filled_sets(expr: Any) -> set[str]:
    """Names of the sets a rule fills from the packet path (update/add @name)."""
    found: set[str] = set()
    if isinstance(expr, dict):
        body = expr.get("set")
        if isinstance(body, dict) and body.get("op") in ("add", "update") and isinstance(body.get("set"), str):
            found.add(body["set"].lstrip("@"))
        for v in expr.values():
            found |= filled_sets(v)
    elif isinstance(expr, list):
        for v in expr:
            found |= filled_sets(v)
    return found


@dataclass
class Transaction:
    """A batch of operations on one table (family, table), applied atomically by a Runner."""

    family: str
    table: str
    ops: list[tuple[str, Object]] = field(default_factory=list)

    def __post_init__(self) -> None:
        Table(self.family, self.table)          # checks family and name

    # --- verbs -----------------------------------------------------------------

    def add(self, obj: Object) -> "Transaction":
        return self._push("add", obj)

    def create(self, obj: Object) -> "Transaction":
        return self._push("create", obj)

    def insert(self, rule: Rule) -> "Transaction":
        return self._push("insert", rule)

    def replace(self, rule: Rule) -> "Transaction":
        return self._push("replace", rule)

    def flush(self, obj: Chain | Set | Map) -> "Transaction":
        return self._push("flush", obj)

    def delete(self, obj: Object) -> "Transaction":
        return self._push("delete", obj)

    def _push(self, verb: str, obj: Object) -> "Transaction":
        if not isinstance(obj, VERBS[verb]):
            names = ", ".join(t.__name__ for t in VERBS[verb])
            raise InvalidObject(f"nft {verb} takes {names}, not {type(obj).__name__}")
        if isinstance(obj, Table) and (obj.family, obj.name) != (self.family, self.table):
            raise InvalidObject(f"table {obj.family} {obj.name} in a transaction for {self.family} {self.table}")
        if isinstance(obj, Element) and isinstance(obj.set, Map) and verb != "delete" and obj.value is None:
            raise InvalidObject(f"{verb} element of map {obj.set.name}: needs a value")
        if isinstance(obj, Chain) and verb in ("add", "create"):
            obj.check_family(self.family)
        if isinstance(obj, Rule):
            if verb in ("replace", "delete") and obj.handle is None:
                raise InvalidObject(f"{verb} rule in {obj.chain}: needs the rule's handle")
            if verb == "add" and obj.handle is not None:
                raise InvalidObject(f"add rule in {obj.chain} at handle {obj.handle}: libnftables 1.0.6 would "
                                    f"append it anyway; insert it before a rule instead")
            if verb != "delete":
                if not obj.expr:
                    raise InvalidObject(f"{verb} rule in {obj.chain}: a rule needs at least one statement")
                listed.check(obj.expr, self.family)
        self.ops.append((verb, obj))
        return self

    # --- rendering ----------------------------------------------------------------

    def empty(self) -> bool:
        return not self.ops

    @property
    def commands(self) -> list[dict]:
        return self.render()

    def to_json(self) -> dict:
        return {"nftables": [SCHEMA, *self.render()]}

    def render(self) -> list[dict]:
        """The nft JSON commands, in order; runs of element operations on one set share a command."""
        self._check_dynamic()
        out: list[dict] = []
        last: tuple[str, str] | None = None
        for verb, obj in self.ops:
            if isinstance(obj, Element):
                item = element_json(obj.set, obj.key, obj.value, obj.timeout, obj.comment, verb)
                if last == (verb, obj.set.name):
                    out[-1][verb]["element"]["elem"].append(item)
                    continue
                last = (verb, obj.set.name)
                out.append({verb: {"element": {"family": self.family, "table": self.table, "name": obj.set.name,
                                               "elem": [item]}}})
                continue
            last = None
            out.append({verb: object_json(self.family, self.table, verb, obj)})
        return out

    def _check_dynamic(self) -> None:
        """libnftables 1.0.6 cannot carry the `dynamic` flag in JSON; nft sets it itself on a set
        added in the same batch as a rule that updates it from the packet path. Ask for exactly that."""
        filled: set[str] = set()
        for verb, obj in self.ops:
            if isinstance(obj, Rule) and verb != "delete":
                filled |= filled_sets(obj.expr)
        for verb, obj in self.ops:
            if isinstance(obj, (Set, Map)) and verb in ("add", "create"):
                dynamic = "dynamic" in obj.flags
                if dynamic and obj.name not in filled:
                    raise InvalidObject(f"{obj.kind} {obj.name} is dynamic: add it in the same transaction as a "
                                        f"rule that updates it (libnftables 1.0.6 JSON cannot state the flag; nft "
                                        f"sets it from that rule)")
                if not dynamic and obj.name in filled:
                    raise InvalidObject(f"{obj.kind} {obj.name} is updated by a rule of this transaction, which makes "
                                        f"nft mark it dynamic: declare it with flags dynamic")

# --- the JSON schema (FakeNft lists its state with the same functions) -----------------------

def object_json(family: str, table: str, verb: str, obj: Table | Chain | Rule | Set | Map) -> dict:
    """{kind: body} of one object for `verb`: what is needed to name it, and for add/create all of it."""
    declare = verb in ("add", "create", "insert", "replace")
    if isinstance(obj, Table):
        body: dict[str, Any] = {"family": obj.family, "name": obj.name}
        if obj.comment and declare:
            body["comment"] = obj.comment
        return {"table": body}
    at: dict[str, Any] = {"family": family, "table": table}
    if isinstance(obj, Rule):
        body = {**at, "chain": obj.chain}
        if declare:
            body["expr"] = obj.expr
        if obj.handle is not None:
            body["handle"] = obj.handle
        if obj.comment and declare:
            body["comment"] = obj.comment
        return {"rule": body}
    body = {**at, "name": obj.name}
    if declare and obj.comment:
        body["comment"] = obj.comment
    if isinstance(obj, Chain):
        if declare and obj.base:
            body.update(type=obj.type, hook=obj.hook, prio=obj.priority_value(family))
            if obj.policy:
                body["policy"] = obj.policy
        return {"chain": body}
    if declare:
        body["type"] = obj.type[0] if len(obj.type) == 1 else list(obj.type)
        if isinstance(obj, Map):
            body["map"] = obj.value[0] if len(obj.value) == 1 else list(obj.value)
        flags = [f for f in obj.flags if f != "dynamic"]      # see Transaction._check_dynamic
        if flags:
            body["flags"] = flags
        if obj.timeout is not None:
            body["timeout"] = obj.timeout
        if obj.size is not None:
            body["size"] = obj.size
        pairs = obj.elements if isinstance(obj, Map) else ((k, None) for k in obj.elements)
        elements = [element_json(obj, k, v, None, None, verb) for k, v in pairs]
        if elements:
            body["elem"] = elements
    return {obj.kind: body}


def element_json(s: Set | Map, key: Any, value: Any, timeout: int | None, comment: str | None, verb: str) -> Any:
    """One item of an "elem" list: the key (with its timeout and comment), and a map's value."""
    item: Any = key_json(s, key)
    if verb != "delete" and (timeout is not None or comment):
        attrs: dict[str, Any] = {"val": item}
        if timeout is not None:
            attrs["timeout"] = timeout
        if comment:
            attrs["comment"] = comment
        item = {"elem": attrs}
    if isinstance(s, Map) and verb != "delete":
        return [item, value_json(s, value)]
    return item


def key_json(s: Set | Map, key: Any) -> Any:
    types = s.key_types
    if len(types) > 1:
        return {"concat": [t.json(k) for t, k in zip(types, key)]}
    return types[0].json(key)


def value_json(m: Map, value: Any) -> Any:
    if m.verdict:
        return value
    types = [datatypes.lookup(t) for t in m.value]
    if len(types) > 1:
        return {"concat": [t.json(v) for t, v in zip(types, value)]}
    return types[0].json(value)
