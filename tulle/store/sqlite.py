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
- Watch reads the event log (WAL mode: readers never block the writer) and,
  when there is nothing new, blocks until a commit instead of polling: every
  write touches the database file after COMMIT and watchers wait on inotify
  for that (tulle/store/inotify.py), so an idle agent does not wake and a
  change reaches watchers in other processes at once. A watcher also wakes
  when the earliest lease is due, to expire it. Without inotify (instance
  limit reached) it polls, backing off from 50 ms to 1 s while nothing
  changes.
- `sqlite://:memory:` gives the same semantics in memory: a fake with the real
  behaviour for pure-logic tests (one process only).
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from contextlib import contextmanager
from typing import Callable, Iterator, Protocol

from tulle.store import inotify
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
POLL_INTERVAL = 0.05   # fallback poll (no inotify): first interval, doubling while idle ...
POLL_MAX = 1.0         # ... up to this
EXPIRY_SLACK = 0.01    # a watcher wakes this long after a lease is due, to expire it

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
        self._poll_min = self._poll = poll_interval
        self._lock = threading.RLock()
        memory = path == ":memory:"
        self._file = None if memory else os.path.abspath(path)   # touched after each commit
        self._commits = 0                                       # in memory: commits so far ...
        self._committed = threading.Condition()                 # ... and their signal
        if not memory:
            parent = os.path.dirname(os.path.abspath(path))
            if not os.path.isdir(parent):
                raise StoreUnavailable(f"cannot open store sqlite://{path}: directory {parent} does not exist")
        try:
            self._db = sqlite3.connect(path, timeout=BUSY_TIMEOUT, isolation_level=None,
                                       check_same_thread=False)
            self._setup(memory)
        except (sqlite3.Error, StoreUnavailable) as exc:
            raise StoreUnavailable(f"cannot open store sqlite://{path}: {getattr(exc, 'msg', exc)}") from None

    def _setup(self, memory: bool) -> None:
        """WAL mode and the schema. Turning a new file to WAL takes its lock without waiting
        (SQLITE_BUSY at once, not after the busy timeout), so processes opening a fresh
        store together retry until the first one has made it."""
        deadline = time.monotonic() + BUSY_TIMEOUT
        while True:
            try:
                if not memory:
                    self._db.execute("PRAGMA journal_mode=WAL")
                    self._db.execute("PRAGMA synchronous=NORMAL")
                with self._write():
                    for stmt in _SCHEMA.split(";"):
                        if stmt.strip():
                            self._db.execute(stmt)
                return
            except (sqlite3.OperationalError, StoreUnavailable) as exc:
                if "locked" not in str(getattr(exc, "msg", exc)) or time.monotonic() > deadline:
                    raise
                time.sleep(0.01)

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
                self._notify()

    def _notify(self) -> None:
        """A commit is visible: wake the watchers (other processes through inotify)."""
        if self._file is not None:
            inotify.touch(self._file)
            return
        with self._committed:
            self._commits += 1
            self._committed.notify_all()

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

    def _events_since(self, prefix: str, start_revision: int) -> tuple[list[Event], float]:
        """The events, and the seconds until the earliest lease is due (inf: none)."""
        with self._read() as db:
            compacted = self._meta(db, "compacted")
            if start_revision < compacted:
                raise Compacted(f"revision {start_revision} is compacted (history starts at {compacted})",
                                compacted)
            rows = db.execute(
                "SELECT revision, type, key, value, create_rev, version, lease FROM events"
                " WHERE revision >= ? AND substr(key, 1, ?) = ? ORDER BY id",
                (start_revision, len(prefix), prefix)).fetchall()
            (due,) = db.execute("SELECT MIN(expires) FROM leases").fetchone()
        due_in = float("inf") if due is None else max(0.0, due - self._clock()) + EXPIRY_SLACK
        return [Event(t, KV(k, bytes(v), c, r, ver, lease), r) for r, t, k, v, c, ver, lease in rows], due_in

    def watch(self, prefix: str, start_revision: int, timeout: float) -> list[Event]:
        deadline = time.monotonic() + max(0.0, timeout)
        with self._listen() as commits:   # listening before the first read: no commit falls between
            while True:
                events, due_in = self._events_since(prefix, start_revision)
                left = deadline - time.monotonic()
                if events or left <= 0:
                    if events:
                        self._poll = self._poll_min
                    return events
                if due_in < left:
                    commits.wait(due_in)          # then read again: the lease is expired on the way
                elif not commits.wait(left):
                    return []                     # the deadline, and surely no commit

    @contextmanager
    def _listen(self) -> Iterator[_Waiter]:
        """What a watcher blocks on until the next commit (see the module docstring)."""
        if self._file is None:
            yield _MemoryCommits(self)
            return
        try:
            watch = inotify.DirWatch(os.path.dirname(self._file), {os.path.basename(self._file)})
        except OSError as exc:
            _warn_once(f"store sqlite://{self.path}: no inotify ({exc.strerror}); watchers poll every "
                       f"{self._poll_min:g}..{POLL_MAX:g} s instead")
            yield _Backoff(self)
            return
        with watch:
            yield watch

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __repr__(self) -> str:
        return f"SqliteStore({self.path!r})"


# -- what a watcher waits on ------------------------------------------------------


class _Waiter(Protocol):
    def wait(self, timeout: float) -> bool:
        """Block until a commit may have happened (True) or `timeout` seconds passed without one (False)."""
        ...


class _MemoryCommits:
    """`sqlite://:memory:` lives in one process: commits signal a condition."""

    def __init__(self, store: SqliteStore) -> None:
        self._store = store
        self._seen = store._commits

    def wait(self, timeout: float) -> bool:
        store = self._store
        with store._committed:
            store._committed.wait_for(lambda: store._commits != self._seen, timeout)
            changed, self._seen = store._commits != self._seen, store._commits
        return changed


class _Backoff:
    """No inotify: sleep, doubling the interval while nothing changes (reset by events);
    it cannot know whether something was committed, so the log is always read again."""

    def __init__(self, store: SqliteStore) -> None:
        self._store = store

    def wait(self, timeout: float) -> bool:
        store = self._store
        time.sleep(max(0.0, min(store._poll, timeout)))
        store._poll = min(store._poll * 2, POLL_MAX)
        return True


_warned: set[str] = set()


def _warn_once(msg: str) -> None:
    if msg not in _warned:
        _warned.add(msg)
        logging.getLogger(__name__).warning(msg)
