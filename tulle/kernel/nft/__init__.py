"""nftables: typed objects, one atomic transaction, the libnftables runner, an in-memory fake.

    from tulle.kernel import nft

    tx = nft.Transaction("inet", "tulle-agent")
    tx.add(nft.Table("inet", "tulle-agent"))
    tx.add(nft.Chain("postrouting", type="nat", hook="postrouting", priority="srcnat"))
    tx.add(nft.Rule("postrouting", [nft.match(nft.ip_field(4, "saddr"), nft.prefix(net)),
                                    nft.counter(), nft.masquerade(fully_random=True)], comment="..."))
    nft.run(tx)                                 # all or nothing, in the calling thread's netns

Objects (objects.py) check themselves when created; a Transaction
(transaction.py) checks what depends on the table and renders the one JSON
batch; rule bodies are built with the helpers of expr.py. A Runner
(runner.py) applies it: `Libnft` (the kernel, the module-level `run`,
`list_table`, `list_tables`) or `FakeNft` (fake.py), whose `dump` prints
what `nft list` would (text.py) — the golden netns test holds it to the kernel.
"""

from __future__ import annotations

from typing import Any

from tulle.kernel.nft.expr import (accept, add_to_set, bit_and, bit_or, bit_xor, concat, counter, ct, dnat, drop,
                                   fib, goto, ip_field, jump, limit, log, mangle, masquerade, match, meta, numgen,
                                   payload, prefix, range_of, ref, reject, ret, set_mark, set_of, snat, update_set,
                                   vmap)
from tulle.kernel.nft.objects import Chain, Element, Expr, InvalidObject, Map, Rule, Set, Table
from tulle.kernel.nft.runner import Libnft, Runner
from tulle.kernel.nft.transaction import Transaction

KERNEL = Libnft()


def __getattr__(name: str) -> Any:
    """FakeNft is loaded on first use: the CNI executables import this package and never need it."""
    if name == "FakeNft":
        from tulle.kernel.nft.fake import FakeNft
        return FakeNft
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def run(tx: Transaction) -> None:
    """Apply the transaction atomically in the calling thread's namespace."""
    KERNEL.run(tx)


def list_table(family: str, table: str) -> list[dict] | None:
    """The table's objects as nft's JSON list, or None when the table does not exist."""
    return KERNEL.list_table(family, table)


def list_tables() -> list[tuple[str, str]]:
    return KERNEL.list_tables()


def _listed_rule(r: dict[str, Any]) -> Rule:
    """A Rule as the kernel holds it, taken as it is (another tool's names need not follow tulle's rules)."""
    rule = object.__new__(Rule)
    for name, value in (("chain", r["chain"]), ("expr", r["expr"]), ("comment", r.get("comment")),
                        ("handle", r["handle"])):
        object.__setattr__(rule, name, value)
    return rule


def rules(objects: list[dict] | None, chain: str | None = None) -> list[Rule]:
    """The rules of a listed table (optionally of one chain), with their handles."""
    return [_listed_rule(o["rule"]) for o in objects or []
            if "rule" in o and (chain is None or o["rule"]["chain"] == chain)]


def chains(objects: list[dict] | None) -> list[str]:
    return [o["chain"]["name"] for o in objects or [] if "chain" in o]


__all__ = [
    "Chain", "Element", "Expr", "FakeNft", "InvalidObject", "KERNEL", "Libnft", "Map", "Rule", "Runner", "Set",
    "Table", "Transaction", "chains", "list_table", "list_tables", "rules", "run",
    "accept", "add_to_set", "bit_and", "bit_or", "bit_xor", "concat", "counter", "ct", "dnat", "drop", "fib",
    "goto", "ip_field", "jump", "limit", "log", "mangle", "masquerade", "match", "meta", "numgen", "payload",
    "prefix", "range_of", "ref", "reject", "ret", "set_mark", "set_of", "snat", "update_set", "vmap",
]
