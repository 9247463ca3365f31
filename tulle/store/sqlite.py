"""The embedded store: one SQLite file shared safely by several agent processes.

Why it is shaped like this:
- Every change is one `BEGIN IMMEDIATE` transaction, so writers queue on the
  database lock (busy timeout) and a create-if-absent can never be won twice,
  not even by two processes.
- A global revision counter, a key table and an event log reproduce etcd's
  model; the log keeps the last `history` revisions, and a watcher asking for
  older ones gets `Compacted`.
- There is no daemon: lease expiry is done lazily by whichever process touches
  the store next (inside its write transaction, or in a short one of its own
  before a read), so expired keys are never visible and their delete events
  reach every watcher.
- Watch polls the event log (WAL mode: readers never block the writer).
- `sqlite://:memory:` gives the same semantics in memory: a fake with the real
  behaviour for pure-logic tests (one process only).
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from contextlib import contextmanager
from typing import Callable, Iterator

from tulle.store.base import (
    KV,
    Compacted,
    Event,
    LeaseExpired,
    StoreError,
    StoreUnavailable,
    Value,
    to_bytes,
)

DEFAULT_HISTORY = 1000
BUSY_TIMEOUT = 10.0
POLL_INTERVAL = 0.05

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS kv (
    key TEXT PRIMARY KEY, value BLOB NOT NULL, create_rev INTEGER NOT NULL,
    mod_rev INTEGER NOT NULL, version INTEGER NOT NULL, lease INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS kv_lease ON kv (lease) WHERE lease != 0;
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT, revision INTEGER NOT NULL, type TEXT NOT NULL,
    key TEXT NOT NULL, value BLOB NOT NULL, create_rev INTEGER NOT NULL,
    version INTEGER NOT NULL, lease INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS events_revision ON events (revision);
CREATE TABLE IF NOT EXISTS leases (
    id INTEGER PRIMARY KEY AUTOINCREMENT, ttl INTEGER NOT NULL, expires REAL NOT NULL);
INSERT OR IGNORE INTO meta VALUES ('revision', 1), ('compacted', 0);
"""

_KV_COLS = "key, value, create_rev, mod_rev, version, lease"


def _kv(row: tuple) -> KV:
    key, value, create_rev, mod_rev, version, lease = row
    return KV(key, bytes(value), create_rev, mod_rev, version, lease)


class SqliteStore:
    """Store on one SQLite file (see the module docstring for the design)."""

    def __init__(self, path: str, history: int = DEFAULT_HISTORY,
                 clock: Callable[[], float] = time.time, poll_interval: float = POLL_INTERVAL) -> None:
        self.path = path
        self.history = max(1, history)
        self._clock = clock
        self._poll = poll_interval
        self._lock = threading.RLock()
        memory = path == ":memory:"
        if not memory:
            parent = os.path.dirname(os.path.abspath(path))
            if not os.path.isdir(parent):
                raise StoreUnavailable(f"cannot open store sqlite://{path}: directory {parent} does not exist")
        try:
            self._db = sqlite3.connect(path, timeout=BUSY_TIMEOUT, isolation_level=None,
                                       check_same_thread=False)
            if not memory:
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=NORMAL")
            with self._write():
                for stmt in _SCHEMA.split(";"):
                    if stmt.strip():
                        self._db.execute(stmt)
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"cannot open store sqlite://{path}: {exc}") from None

    # -- transactions -------------------------------------------------------

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One BEGIN IMMEDIATE transaction: the writer lock is held from the start."""
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise StoreUnavailable(f"store sqlite://{self.path}: {exc}") from None
            try:
                yield self._db
            except BaseException as exc:
                self._db.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise StoreError(f"store sqlite://{self.path}: {exc}") from None
                raise
            else:
                self._db.execute("COMMIT")

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """A consistent snapshot; first removes whatever leases have expired."""
        with self._lock:
            try:
                self._expire_if_due()
                self._db.execute("BEGIN")
            except sqlite3.Error as exc:
                raise StoreUnavailable(f"store sqlite://{self.path}: {exc}") from None
            try:
                yield self._db
            except sqlite3.Error as exc:
                raise StoreError(f"store sqlite://{self.path}: {exc}") from None
            finally:
                self._db.execute("COMMIT")

    def _meta(self, db: sqlite3.Connection, name: str) -> int:
        return db.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()[0]

    def _set_meta(self, db: sqlite3.Connection, name: str, value: int) -> None:
        db.execute("UPDATE meta SET value = ? WHERE name = ?", (value, name))

    def _bump(self, db: sqlite3.Connection) -> int:
        """Start a new revision (inside a write); trims the log to `history` revisions."""
        rev = self._meta(db, "revision") + 1
        self._set_meta(db, "revision", rev)
        keep_from = rev - self.history + 1
        if keep_from > self._meta(db, "compacted"):
            self._set_meta(db, "compacted", keep_from)
            db.execute("DELETE FROM events WHERE revision < ?", (keep_from,))
        return rev

    def _log(self, db: sqlite3.Connection, rev: int, type_: str, kv: KV) -> None:
        db.execute("INSERT INTO events (revision, type, key, value, create_rev, version, lease)"
                   " VALUES (?, ?, ?, ?, ?, ?, ?)",
                   (rev, type_, kv.key, kv.value, kv.create_revision, kv.version, kv.lease))

    # -- leases and expiry --------------------------------------------------

    def _expire(self, db: sqlite3.Connection) -> None:
        """Revoke every lease past its expiry (inside a write transaction)."""
        now = self._clock()
        for (lease,) in db.execute("SELECT id FROM leases WHERE expires <= ?", (now,)).fetchall():
            self._revoke(db, lease)

    def _expire_if_due(self) -> None:
        due = self._db.execute("SELECT 1 FROM leases WHERE expires <= ? LIMIT 1", (self._clock(),)).fetchone()
        if due:
            with self._write() as db:
                self._expire(db)

    def _revoke(self, db: sqlite3.Connection, lease: int) -> None:
        keys = [k for (k,) in db.execute("SELECT key FROM kv WHERE lease = ? ORDER BY key", (lease,))]
        if keys:
            rev = self._bump(db)
            for key in keys:
                db.execute("DELETE FROM kv WHERE key = ?", (key,))
                self._log(db, rev, "delete", KV(key, b"", 0, rev, 0, 0))
        db.execute("DELETE FROM leases WHERE id = ?", (lease,))

    def _check_lease(self, db: sqlite3.Connection, lease: int) -> None:
        if lease and not db.execute("SELECT 1 FROM leases WHERE id = ?", (lease,)).fetchone():
            raise LeaseExpired(f"lease {lease:x} not found (expired or revoked)")

    def grant(self, ttl: int) -> int:
        if ttl <= 0:
            raise StoreError(f"lease TTL must be positive, got {ttl}")
        with self._write() as db:
            self._expire(db)
            cur = db.execute("INSERT INTO leases (ttl, expires) VALUES (?, ?)", (ttl, self._clock() + ttl))
            return int(cur.lastrowid)

    def keep_alive(self, lease: int) -> int:
        with self._write() as db:
            self._expire(db)
            row = db.execute("SELECT ttl FROM leases WHERE id = ?", (lease,)).fetchone()
            if row is None:
                raise LeaseExpired(f"lease {lease:x} not found (expired or revoked)")
            db.execute("UPDATE leases SET expires = ? WHERE id = ?", (self._clock() + row[0], lease))
            return int(row[0])

    def revoke(self, lease: int) -> None:
        with self._write() as db:
            self._expire(db)
            self._revoke(db, lease)

    # -- keys ---------------------------------------------------------------

    def get(self, key: str) -> KV | None:
        with self._read() as db:
            row = db.execute(f"SELECT {_KV_COLS} FROM kv WHERE key = ?", (key,)).fetchone()
            return _kv(row) if row else None

    def list(self, prefix: str) -> tuple[list[KV], int]:
        with self._read() as db:
            rows = db.execute(f"SELECT {_KV_COLS} FROM kv WHERE substr(key, 1, ?) = ? ORDER BY key",
                              (len(prefix), prefix)).fetchall()
            return [_kv(r) for r in rows], self._meta(db, "revision")

    def _write_key(self, db: sqlite3.Connection, old: KV | None, key: str, value: Value, lease: int) -> KV:
        self._check_lease(db, lease)
        rev = self._bump(db)
        kv = KV(key, to_bytes(value), old.create_revision if old else rev, rev,
                (old.version if old else 0) + 1, lease)
        db.execute(f"INSERT OR REPLACE INTO kv ({_KV_COLS}) VALUES (?, ?, ?, ?, ?, ?)",
                   (kv.key, kv.value, kv.create_revision, kv.mod_revision, kv.version, kv.lease))
        self._log(db, rev, "put", kv)
        return kv

    def _current(self, db: sqlite3.Connection, key: str) -> KV | None:
        row = db.execute(f"SELECT {_KV_COLS} FROM kv WHERE key = ?", (key,)).fetchone()
        return _kv(row) if row else None

    def put(self, key: str, value: Value, lease: int = 0) -> KV:
        with self._write() as db:
            self._expire(db)
            return self._write_key(db, self._current(db, key), key, value, lease)

    def create(self, key: str, value: Value, lease: int = 0) -> KV | None:
        with self._write() as db:
            self._expire(db)
            if self._current(db, key) is not None:
                return None
            return self._write_key(db, None, key, value, lease)

    def compare_and_swap(self, key: str, value: Value, mod_revision: int, lease: int = 0) -> KV | None:
        with self._write() as db:
            self._expire(db)
            old = self._current(db, key)
            if (old.mod_revision if old else 0) != mod_revision:
                return None
            return self._write_key(db, old, key, value, lease)

    def delete(self, key: str, mod_revision: int | None = None) -> bool:
        with self._write() as db:
            self._expire(db)
            old = self._current(db, key)
            if old is None or (mod_revision is not None and old.mod_revision != mod_revision):
                return False
            rev = self._bump(db)
            db.execute("DELETE FROM kv WHERE key = ?", (key,))
            self._log(db, rev, "delete", KV(key, b"", 0, rev, 0, 0))
            return True

    # -- history ------------------------------------------------------------

    def compact(self, revision: int) -> None:
        with self._write() as db:
            current = self._meta(db, "revision")
            if revision > current:
                raise StoreError(f"cannot compact at revision {revision}: the store is at {current}")
            if revision > self._meta(db, "compacted"):
                self._set_meta(db, "compacted", revision)
                db.execute("DELETE FROM events WHERE revision < ?", (revision,))

    def _events_since(self, prefix: str, start_revision: int) -> list[Event]:
        with self._read() as db:
            compacted = self._meta(db, "compacted")
            if start_revision < compacted:
                raise Compacted(f"revision {start_revision} is compacted (history starts at {compacted})",
                                compacted)
            rows = db.execute(
                "SELECT revision, type, key, value, create_rev, version, lease FROM events"
                " WHERE revision >= ? AND substr(key, 1, ?) = ? ORDER BY id",
                (start_revision, len(prefix), prefix)).fetchall()
        return [Event(t, KV(k, bytes(v), c, r, ver, lease), r) for r, t, k, v, c, ver, lease in rows]

    def watch(self, prefix: str, start_revision: int, timeout: float) -> list[Event]:
        deadline = time.monotonic() + max(0.0, timeout)
        while True:
            events = self._events_since(prefix, start_revision)
            left = deadline - time.monotonic()
            if events or left <= 0:
                return events
            time.sleep(min(self._poll, left))

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __repr__(self) -> str:
        return f"SqliteStore({self.path!r})"
