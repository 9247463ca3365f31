"""A Store that connects when it can: an agent must start, and keep its data plane,
while its store is out of reach.

`LazyStore(url)` opens the real store on first use and, while that fails, answers every
call with StoreUnavailable at once (re-trying the connection at most every
`retry_after` seconds, so a loop that polls does not hammer a dead server). Once open,
calls go straight to the real store, which rides out later outages itself (etcd fails
over between endpoints per call; SQLite is a local file).
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable

from tulle.store.base import KV, Event, Store, StoreUnavailable, Value


class LazyStore:
    def __init__(self, url: str, opener: Callable[[str], Store], retry_after: float = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.url = url
        self._opener, self._retry_after, self._clock = opener, retry_after, clock
        self._store: Store | None = None
        self._next_try = 0.0
        self._last_error = ""
        self._lock = threading.Lock()

    @property
    def connected(self) -> bool:
        return self._store is not None

    def connect(self) -> Store:
        """The real store; StoreUnavailable (the last reason) while it cannot be opened."""
        with self._lock:
            if self._store is not None:
                return self._store
            if self._clock() < self._next_try:
                raise StoreUnavailable(self._last_error or f"store {self.url} is not reachable yet")
            try:
                self._store = self._opener(self.url)
            except StoreUnavailable as exc:
                self._last_error = exc.msg
                self._next_try = self._clock() + self._retry_after
                raise
            return self._store

    def _call(self, name: str, *args: Any) -> Any:
        return getattr(self.connect(), name)(*args)

    def get(self, key: str) -> KV | None:
        return self._call("get", key)

    def list(self, prefix: str) -> tuple[list[KV], int]:
        return self._call("list", prefix)

    def create(self, key: str, value: Value, lease: int = 0) -> KV | None:
        return self._call("create", key, value, lease)

    def compare_and_swap(self, key: str, value: Value, mod_revision: int, lease: int = 0) -> KV | None:
        return self._call("compare_and_swap", key, value, mod_revision, lease)

    def put(self, key: str, value: Value, lease: int = 0) -> KV:
        return self._call("put", key, value, lease)

    def delete(self, key: str, mod_revision: int | None = None) -> bool:
        return self._call("delete", key, mod_revision)

    def grant(self, ttl: int) -> int:
        return self._call("grant", ttl)

    def keep_alive(self, lease: int) -> int:
        return self._call("keep_alive", lease)

    def revoke(self, lease: int) -> None:
        return self._call("revoke", lease)

    def watch(self, prefix: str, start_revision: int, timeout: float) -> list[Event]:
        return self._call("watch", prefix, start_revision, timeout)

    def compact(self, revision: int) -> None:
        return self._call("compact", revision)

    def close(self) -> None:
        with self._lock:
            if self._store is not None:
                self._store.close()
                self._store = None

    def __repr__(self) -> str:
        return f"LazyStore({self.url!r}, connected={self.connected})"
