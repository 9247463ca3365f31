"""nftables through atomic JSON transactions, run by libnftables in-process.

Callers collect typed commands in a `Transaction` and `run` it once: either the
whole batch applies or none of it does, so a failed plugin step never leaves a
half-written ruleset. Rule bodies are lists of expressions built with the small
helpers at the bottom of this module, never by formatting strings.

The JSON goes to libnftables (the library the `nft` command is a thin wrapper
of, loaded with ctypes) rather than to an `nft -j -f -` child: the same
transactions and the same kernel commit, without ~10 ms of process start and
JSON set-up per call — an agent-mode CNI ADD makes two of these calls. Each
call uses a fresh context made on the calling thread, so its netlink socket
belongs to that thread's network namespace (see netns.run_in); one lock
serialises calls, as libnftables keeps some global state.
"""

from __future__ import annotations

import ctypes
import ipaddress
import json
import threading
from dataclasses import dataclass, field
from typing import Any

from tulle.errors import KernelError

Expr = dict[str, Any]


LIBRARY = "libnftables.so.1"
OUTPUT_HANDLE = 1 << 3   # enum nft_output_flags (nftables/libnftables.h)
OUTPUT_JSON = 1 << 4     # JSON output; also makes the library read JSON input


class _Lib:
    """The few libnftables calls tulle needs, bound once per process."""

    def __init__(self) -> None:
        try:
            lib = ctypes.CDLL(LIBRARY)
        except OSError as exc:
            raise KernelError(f"cannot load {LIBRARY} (Debian package libnftables1, installed with "
                              f"nftables): {exc}") from None
        vp = ctypes.c_void_p
        for name, res, args in (("nft_ctx_new", vp, [ctypes.c_uint32]), ("nft_ctx_free", None, [vp]),
                                ("nft_ctx_output_set_flags", None, [vp, ctypes.c_uint]),
                                ("nft_ctx_buffer_output", ctypes.c_int, [vp]),
                                ("nft_ctx_buffer_error", ctypes.c_int, [vp]),
                                ("nft_ctx_get_output_buffer", ctypes.c_char_p, [vp]),
                                ("nft_ctx_get_error_buffer", ctypes.c_char_p, [vp]),
                                ("nft_run_cmd_from_buffer", ctypes.c_int, [vp, ctypes.c_char_p])):
            fn = getattr(lib, name)
            fn.restype, fn.argtypes = res, args
        self.lib = lib

    def run(self, command: str) -> tuple[int, str, str]:
        """(rc, output, error text) of one command or JSON batch in the calling thread's netns."""
        lib = self.lib
        ctx = lib.nft_ctx_new(0)
        if not ctx:
            raise KernelError("libnftables: cannot create a context")
        try:
            lib.nft_ctx_output_set_flags(ctx, OUTPUT_JSON | OUTPUT_HANDLE)
            lib.nft_ctx_buffer_output(ctx)
            lib.nft_ctx_buffer_error(ctx)
            rc = lib.nft_run_cmd_from_buffer(ctx, command.encode())
            out = (lib.nft_ctx_get_output_buffer(ctx) or b"").decode()
            err = (lib.nft_ctx_get_error_buffer(ctx) or b"").decode()
            return rc, out, err
        finally:
            lib.nft_ctx_free(ctx)


_lib: _Lib | None = None
_lock = threading.Lock()


def _run(command: str) -> tuple[int, str, str]:
    global _lib
    with _lock:
        if _lib is None:
            _lib = _Lib()
        return _lib.run(command)


@dataclass
class Transaction:
    """A batch of nftables commands for one table, applied atomically by `run`."""

    family: str
    table: str
    commands: list[dict] = field(default_factory=list)

    def _obj(self, **attrs: Any) -> dict:
        return {"family": self.family, "table": self.table, **attrs}

    def add_table(self) -> "Transaction":
        self.commands.append({"add": {"table": {"family": self.family, "name": self.table}}})
        return self

    def delete_table(self) -> "Transaction":
        self.commands.append({"delete": {"table": {"family": self.family, "name": self.table}}})
        return self

    def add_chain(self, name: str, type: str | None = None, hook: str | None = None,
                  priority: int | None = None, policy: str | None = None) -> "Transaction":
        chain = self._obj(name=name)
        if type:
            chain.update(type=type, hook=hook, prio=priority if priority is not None else 0,
                         policy=policy or "accept")
        self.commands.append({"add": {"chain": chain}})
        return self

    def flush_chain(self, name: str) -> "Transaction":
        self.commands.append({"flush": {"chain": self._obj(name=name)}})
        return self

    def delete_chain(self, name: str) -> "Transaction":
        self.commands.append({"delete": {"chain": self._obj(name=name)}})
        return self

    def add_rule(self, chain: str, expr: list[Expr], comment: str | None = None) -> "Transaction":
        rule = self._obj(chain=chain, expr=expr)
        if comment:
            if len(comment.encode()) > 127:
                raise ValueError(f"nft comment too long: {comment!r}")
            rule["comment"] = comment
        self.commands.append({"add": {"rule": rule}})
        return self

    def delete_rule(self, chain: str, handle: int) -> "Transaction":
        self.commands.append({"delete": {"rule": self._obj(chain=chain, handle=handle)}})
        return self

    def add_set(self, name: str, type: str | list[str], flags: list[str] | None = None) -> "Transaction":
        s = self._obj(name=name, type=type)
        if flags:
            s["flags"] = flags
        self.commands.append({"add": {"set": s}})
        return self

    def add_map(self, name: str, type: str | list[str], map: str, flags: list[str] | None = None) -> "Transaction":
        m = self._obj(name=name, type=type, map=map)
        if flags:
            m["flags"] = flags
        self.commands.append({"add": {"map": m}})
        return self

    def add_element(self, set_name: str, elements: list[Any]) -> "Transaction":
        self.commands.append({"add": {"element": self._obj(name=set_name, elem=elements)}})
        return self

    def delete_element(self, set_name: str, elements: list[Any]) -> "Transaction":
        self.commands.append({"delete": {"element": self._obj(name=set_name, elem=elements)}})
        return self

    def to_json(self) -> dict:
        return {"nftables": [{"metainfo": {"json_schema_version": 1}}, *self.commands]}

    def empty(self) -> bool:
        return not self.commands


def run(tx: Transaction) -> None:
    """Apply the transaction atomically in the calling thread's namespace."""
    if tx.empty():
        return
    payload = json.dumps(tx.to_json())
    rc, out, err = _run(payload)
    if rc != 0:
        raise KernelError(f"nftables transaction on {tx.family} {tx.table} failed: "
                          f"{err.strip() or out.strip()}", details=payload)


def list_table(family: str, table: str) -> list[dict] | None:
    """The table's objects as nft's JSON list, or None when the table does not exist."""
    rc, out, err = _run(f"list table {family} {table}")
    if rc != 0:
        if "No such file or directory" in err:
            return None
        raise KernelError(f"cannot list nft table {family} {table}: {err.strip()}")
    return json.loads(out)["nftables"]


def list_tables() -> list[tuple[str, str]]:
    rc, out, err = _run("list tables")
    if rc != 0:
        raise KernelError(f"cannot list nft tables: {err.strip()}")
    return [(o["table"]["family"], o["table"]["name"])
            for o in json.loads(out)["nftables"] if "table" in o]


@dataclass(frozen=True)
class Rule:
    chain: str
    handle: int
    comment: str
    expr: list[Expr]


def rules(objects: list[dict] | None, chain: str | None = None) -> list[Rule]:
    """The rules of a listed table (optionally of one chain)."""
    out = []
    for obj in objects or []:
        r = obj.get("rule")
        if r is None or (chain is not None and r["chain"] != chain):
            continue
        out.append(Rule(chain=r["chain"], handle=r["handle"], comment=r.get("comment", ""), expr=r["expr"]))
    return out


def chains(objects: list[dict] | None) -> list[str]:
    return [o["chain"]["name"] for o in objects or [] if "chain" in o]


# --- expressions -----------------------------------------------------------

def payload(protocol: str, field_name: str) -> Expr:
    return {"payload": {"protocol": protocol, "field": field_name}}


def meta(key: str) -> Expr:
    return {"meta": {"key": key}}


def ct(key: str) -> Expr:
    return {"ct": {"key": key}}


def fib(result: str, flags: list[str]) -> Expr:
    return {"fib": {"result": result, "flags": flags}}


def prefix(net: ipaddress.IPv4Network | ipaddress.IPv6Network | str) -> Any:
    """A network as nft wants it: a plain address for /32 and /128, else a prefix."""
    net = ipaddress.ip_network(net, strict=False)
    if net.prefixlen == net.max_prefixlen:
        return str(net.network_address)
    return {"prefix": {"addr": str(net.network_address), "len": net.prefixlen}}


def set_of(items: list[Any]) -> Expr:
    return {"set": items}


def match(left: Any, right: Any, op: str = "==") -> Expr:
    return {"match": {"op": op, "left": left, "right": right}}


def ip_field(version: int, name: str) -> Expr:
    """saddr/daddr of IPv4 or IPv6, chosen by the address family."""
    return payload("ip" if version == 4 else "ip6", name)


def counter() -> Expr:
    return {"counter": None}


def accept() -> Expr:
    return {"accept": None}


def drop() -> Expr:
    return {"drop": None}


def ret() -> Expr:
    return {"return": None}


def jump(chain: str) -> Expr:
    return {"jump": {"target": chain}}


def goto(chain: str) -> Expr:
    return {"goto": {"target": chain}}


def masquerade() -> Expr:
    return {"masquerade": None}


def dnat(addr: str, port: int | None = None, family: str | None = None) -> Expr:
    body: dict[str, Any] = {"addr": addr}
    if port is not None:
        body["port"] = port
    if family:
        body["family"] = family
    return {"dnat": body}


def set_mark(value: int, mask: int | None = None) -> Expr:
    """meta mark set mark | value (or plain value when no mask)."""
    if mask is None:
        val: Any = value
    else:
        val = {"|": [meta("mark"), value]}
    return {"mangle": {"key": meta("mark"), "value": val}}
