"""The Store seam: what the node agent needs from a key-value store.

The model is etcd v3's, cut to what Flannel-style subnet leases use: one global
revision that every change bumps, keys with create/mod revisions and a version,
TTL leases that take their keys with them, and a watch that replays history from
a revision. Two implementations share it: `sqlite.SqliteStore` (embedded, the
default) and `etcd.EtcdStore` (a real etcd cluster over its JSON gateway).

Keys are `str` paths; values are `bytes` (a `str` given to a write is UTF-8
encoded; reads always return bytes, see `KV.text`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

from tulle.errors import TulleError

Value = bytes | str


class StoreError(TulleError):
    """The store refused or failed an operation."""


class StoreUnavailable(StoreError):
    """The store cannot be reached or opened (the message names the URL/path)."""


class Compacted(StoreError):
    """The requested revision is older than the history the store keeps.

    A watcher that gets this re-lists (which returns a fresh revision) and
    watches again from there.
    """

    def __init__(self, msg: str, compact_revision: int) -> None:
        super().__init__(msg)
        self.compact_revision = compact_revision


class LeaseExpired(StoreError):
    """The lease is unknown: it expired, was revoked, or never existed."""


@dataclass(frozen=True)
class KV:
    key: str
    value: bytes
    create_revision: int
    mod_revision: int
    version: int
    lease: int = 0

    @property
    def text(self) -> str:
        return self.value.decode()


EventType = Literal["put", "delete"]


@dataclass(frozen=True)
class Event:
    """One change. For a delete, `kv` carries only the key and `mod_revision`."""

    type: EventType
    kv: KV
    revision: int


@runtime_checkable
class Store(Protocol):
    """One interface, two backends; `tests/store/test_contract.py` holds both to it."""

    def get(self, key: str) -> KV | None: ...

    def list(self, prefix: str) -> tuple[list[KV], int]:
        """Every key under `prefix` (sorted) and the store revision of that read.

        Watch from `revision + 1` to see every change after the read.
        """
        ...

    def create(self, key: str, value: Value, lease: int = 0) -> KV | None:
        """Write `key` only when it does not exist; None when it does."""
        ...

    def compare_and_swap(self, key: str, value: Value, mod_revision: int, lease: int = 0) -> KV | None:
        """Write `key` only when its mod_revision is still `mod_revision` (0: absent)."""
        ...

    def put(self, key: str, value: Value, lease: int = 0) -> KV:
        """Unconditional write (configuration, reservations)."""
        ...

    def delete(self, key: str, mod_revision: int | None = None) -> bool:
        """Delete `key` (only at `mod_revision` when given); True when something was deleted."""
        ...

    def grant(self, ttl: int) -> int:
        """A new lease of `ttl` seconds; returns its id (never 0)."""
        ...

    def keep_alive(self, lease: int) -> int:
        """Refresh the lease to its full TTL; returns that TTL. LeaseExpired when gone."""
        ...

    def revoke(self, lease: int) -> None:
        """End the lease now and delete its keys; an unknown lease is not an error."""
        ...

    def watch(self, prefix: str, start_revision: int, timeout: float) -> list[Event]:
        """Changes under `prefix` with revision >= `start_revision`, in order.

        Returns as soon as there is at least one event, or [] after `timeout`
        seconds. Events of one revision always come together, so the caller
        continues from `events[-1].revision + 1`. Raises Compacted when that
        history is gone.
        """
        ...

    def compact(self, revision: int) -> None:
        """Forget history older than `revision` (watchers from before get Compacted)."""
        ...

    def close(self) -> None: ...


def to_bytes(value: Value) -> bytes:
    return value.encode() if isinstance(value, str) else bytes(value)


def prefix_end(prefix: bytes) -> bytes:
    """The first key after every key starting with `prefix` (b"\\0" = to the end)."""
    end = bytearray(prefix)
    while end:
        if end[-1] < 0xFF:
            end[-1] += 1
            return bytes(end)
        end.pop()
    return b"\0"
