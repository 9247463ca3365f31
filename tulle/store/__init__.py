"""The store the node agents share: subnet leases, configuration, watches.

`open_store(url)` picks the implementation from the URL:

    sqlite:///var/lib/tulle/store.db   embedded SQLite file (the default kind)
    sqlite://:memory:                  in-memory SQLite (tests, one process)
    /path/to/file.db                   same as sqlite:///path/to/file.db
    etcd://host:port[,host:port]       etcd v3 over its JSON gateway (http)

An etcd URL may name a network namespace to connect from:
`etcd://198.51.100.1:2379?netns=tulle-lab-fabric` (or the `netns` argument).
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from tulle.errors import ConfigError
from tulle.store.base import (
    KV,
    Compacted,
    Event,
    LeaseExpired,
    Store,
    StoreError,
    StoreUnavailable,
)

__all__ = ["KV", "Compacted", "Event", "LeaseExpired", "Store", "StoreError", "StoreUnavailable",
           "open_store"]


def open_store(url: str, *, netns: str | None = None, history: int | None = None,
               timeout: float | None = None) -> Store:
    """Open the store at `url`; StoreUnavailable (naming the URL) when it cannot be reached.
    `timeout` bounds each etcd connect and request (a reader that must answer fast: status)."""
    scheme, _, rest = url.partition("://")
    if not _:
        scheme, rest = "sqlite", url
    if scheme == "sqlite":
        from tulle.store.sqlite import DEFAULT_HISTORY, SqliteStore

        path = rest
        if not path:
            raise ConfigError(f"store URL {url!r} names no file")
        return SqliteStore(path, history=history or DEFAULT_HISTORY)
    if scheme in ("etcd", "etcd+http"):
        from tulle.kernel.netns import path_of
        from tulle.store.etcd import EtcdStore, parse_endpoints

        parts = urlsplit(f"etcd://{rest}")
        query = parse_qs(parts.query)
        ns = netns or (query.get("netns") or [None])[0]
        times = {"connect_timeout": timeout, "request_timeout": timeout} if timeout else {}
        return EtcdStore(parse_endpoints(parts.netloc), netns=path_of(ns) if ns else None, **times)
    raise ConfigError(f"unknown store URL {url!r}: expected sqlite:///PATH or etcd://HOST:PORT[,HOST:PORT]")
