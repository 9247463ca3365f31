"""The agent as a host of controllers: watch prefixes → snapshot → pure plan → apply.

A controller names the store key prefixes it reads, turns a complete snapshot of
them into a plan (pure: no store, no kernel, no clock unless passed in) and applies
the plan. The host owns the one list+watch loop:

- it lists every watched prefix once, keeps the keys in a cache and follows the
  watch from the listing's revision (re-listing after Compacted), so a controller
  never has to trust an event stream to be complete: it always gets the whole
  state under its prefixes;
- after a batch of events it runs the controllers whose prefixes changed, with
  `full=False` (write only the difference); on every resync tick it runs them all
  with `full=True` (read the world back and repair drift). Both must reach the
  same end state — that is what makes a missed event cost only latency;
- controllers marked `leader_only` (cluster-wide work: allocation repair,
  endpoint slices) run only while this agent holds the leader lease;
- a failing controller is reported (`on_error`, `outcomes`) and never stops the
  loop or the other controllers; the agent retries with a full pass soon after.

Collaborators (store, kernel, clock) are given to each controller by whoever
builds it, so a controller is unit-tested with fakes and no monkeypatching.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Callable, Generic, Iterable, Mapping, Protocol, TypeVar

from tulle.store.base import KV, Compacted, Event, Store, StoreError

P = TypeVar("P")


@dataclass(frozen=True)
class Snapshot:
    """Every cached key under the watched prefixes, as of `revision` (read-only)."""

    kvs: Mapping[str, KV]
    revision: int

    def under(self, prefix: str) -> list[KV]:
        """The keys under `prefix`, sorted."""
        return [self.kvs[k] for k in sorted(self.kvs) if k.startswith(prefix)]

    def get(self, key: str) -> KV | None:
        return self.kvs.get(key)


class Controller(Protocol[P]):
    """What the host runs; see the module docstring."""

    name: str
    prefixes: tuple[str, ...]      # absolute store key prefixes this controller reads
    leader_only: bool              # cluster-wide: only the elected agent runs it

    def plan(self, snapshot: Snapshot) -> P:
        """The desired state for this snapshot (pure)."""
        ...

    def apply(self, plan: P, full: bool) -> None:
        """Make it so: `full` reads the world back and repairs drift; otherwise write only
        what differs from the last applied plan."""
        ...


class Leadership(Protocol):
    def tick(self) -> bool:
        """Acquire or renew when due; True while this agent leads."""
        ...


@dataclass
class Outcome:
    """What the last run of each controller did (health, metrics, tests)."""

    ok: bool = True
    error: str = ""
    runs: int = 0
    at: float = 0.0


def common_prefix(prefixes: Iterable[str]) -> str:
    """The longest prefix of every watched prefix: what one store watch covers."""
    items = list(prefixes)
    if not items:
        return "/"
    first, last = min(items), max(items)
    n = 0
    while n < min(len(first), len(last)) and first[n] == last[n]:
        n += 1
    return first[:n]


@dataclass
class Host:
    """Runs controllers over one cached list+watch of the store."""

    store: Store
    controllers: list[Any]                        # Controller[Any] each
    leadership: Leadership | None = None
    clock: Callable[[], float] = time.monotonic
    on_error: Callable[[str, BaseException], None] = lambda name, exc: None
    on_run: Callable[[str, bool, float], None] = lambda name, full, seconds: None
    outcomes: dict[str, Outcome] = field(default_factory=dict)
    _cache: dict[str, KV] = field(default_factory=dict)
    _revision: int = 0
    _next_rev: int = 0
    _dirty: set[str] = field(default_factory=set)
    _leading: bool = False
    resync: bool = False            # a re-list happened: the next run should be a full one
    stale: bool = False             # the cache is not the store's (seeded, or a poll failed): re-list

    @property
    def watched(self) -> str:
        return common_prefix(p for c in self.controllers for p in c.prefixes)

    def snapshot(self) -> Snapshot:
        return Snapshot(MappingProxyType(dict(self._cache)), self._revision)

    def relist(self) -> None:
        """A fresh listing of the watched prefixes; every controller is due a full run."""
        kvs, rev = self.store.list(self.watched)
        prefixes = tuple(p for c in self.controllers for p in c.prefixes)
        self._cache = {kv.key: kv for kv in kvs if kv.key.startswith(prefixes)}
        self._revision, self._next_rev = rev, rev + 1
        self._dirty = {c.name for c in self.controllers}
        self.resync = True
        self.stale = False

    def seed(self, kvs: Mapping[str, KV], revision: int) -> None:
        """Start from a saved snapshot (the store is out of reach): every controller is due a
        full run over it, and the next successful `relist` replaces it."""
        prefixes = tuple(p for c in self.controllers for p in c.prefixes)
        self._cache = {k: kv for k, kv in kvs.items() if k.startswith(prefixes)}
        self._revision, self._next_rev = revision, revision + 1
        self._dirty = {c.name for c in self.controllers}
        self.resync = self.stale = True

    def local_keys(self) -> list[KV]:
        """The cached keys the node's own controllers read (not the leader-only ones): what an
        agent saves to start from when the store is down."""
        prefixes = tuple(p for c in self.controllers if not c.leader_only for p in c.prefixes)
        return [kv for k, kv in sorted(self._cache.items()) if k.startswith(prefixes)]

    @property
    def revision(self) -> int:
        return self._revision

    def absorb(self, events: list[Event]) -> None:
        """Apply a batch of watch events to the cache; mark the controllers they concern."""
        for ev in events:
            key = ev.kv.key
            touched = [c for c in self.controllers if key.startswith(c.prefixes)]
            if not touched:
                continue
            if ev.type == "delete":
                self._cache.pop(key, None)
            else:
                self._cache[key] = ev.kv
            self._dirty.update(c.name for c in touched)
        if events:
            self._revision = events[-1].revision
            self._next_rev = events[-1].revision + 1

    def poll(self, timeout: float) -> None:
        """One watch slice: wait up to `timeout` for changes, absorb them (re-list after Compacted,
        or first when the cache is stale)."""
        if self.stale:
            self.relist()
            return
        try:
            events = self.store.watch(self.watched, self._next_rev, timeout)
        except Compacted:
            self.relist()
            return
        except StoreError:
            self.stale = True        # what we missed meanwhile comes with a fresh listing
            raise
        self.absorb(events)

    def lead(self) -> bool:
        """Ask the leadership (when there is one) and note a change: a new leader runs its
        leader-only controllers in full at once."""
        if self.leadership is None:
            return False
        leading = self.leadership.tick()
        if leading and not self._leading:
            self._dirty.update(c.name for c in self.controllers if c.leader_only)
        self._leading = leading
        return leading

    def run(self, full: bool = False, only: Iterable[str] | None = None) -> bool:
        """Run the dirty controllers (or, with full, every controller); True when all succeeded."""
        names = set(only) if only is not None else None
        if full and names is None:
            self.resync = False
        snap = self.snapshot()
        ok = True
        for c in self.controllers:
            if names is not None and c.name not in names:
                continue
            if not full and c.name not in self._dirty:
                continue
            if c.leader_only and not self._leading:
                self._dirty.discard(c.name)
                continue
            ok = self.run_one(c, snap, full) and ok
        return ok

    def run_one(self, c: Any, snap: Snapshot, full: bool) -> bool:
        out = self.outcomes.setdefault(c.name, Outcome())
        self._dirty.discard(c.name)
        started = self.clock()
        try:
            c.apply(c.plan(snap), full)
        except Exception as exc:  # noqa: BLE001 - one failing controller must not stop the others
            out.ok, out.error = False, _describe(exc)
            self.on_error(c.name, exc)
            return False
        finally:
            out.runs += 1
            out.at = self.clock()
            self.on_run(c.name, full, out.at - started)
        out.ok, out.error = True, ""
        return True

    @property
    def pending(self) -> bool:
        return bool(self._dirty)


def _describe(exc: BaseException) -> str:
    msg = getattr(exc, "msg", None)
    return msg if isinstance(msg, str) else f"{type(exc).__name__}: {exc}"
