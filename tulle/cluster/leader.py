"""Leader election through a store lease: one agent at a time runs cluster-wide work.

The leader holds a key bound to a store lease of `ttl` seconds and renews it every
`ttl / 3`; when it dies the store ends the lease and deletes the key, and the next
candidate whose `tick` finds the key gone creates it (create-if-absent: exactly one
wins). A leader that stops cleanly revokes its lease, so a successor takes over at
its next tick instead of after a whole TTL.

The key's value is a `coordination.k8s.io/v1` Lease object (holderIdentity,
leaseDurationSeconds, acquireTime, renewTime, leaseTransitions), stored where the
object API keeps Leases, so `tulle lab get leases -n kube-system` shows who leads,
as `kubectl get lease -n kube-system` does for kube-controller-manager.
"""

from __future__ import annotations

import datetime
import json
import time
import uuid
from typing import Callable

from tulle import node_defaults
from tulle.store.base import LeaseExpired, Store, StoreError

DEFAULT_TTL = node_defaults.LEADER_LEASE
DEFAULT_NAME = "tulle-controllers"
NAMESPACE = "kube-system"


def micro_time(t: float) -> str:
    """metav1.MicroTime: RFC 3339 with microseconds."""
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def lease_key(registry_prefix: str, name: str = DEFAULT_NAME) -> str:
    return f"{registry_prefix.rstrip('/')}/leases/{NAMESPACE}/{name}"


class LeaderElector:
    """Call `tick()` often (every second is fine); it says whether we lead."""

    def __init__(self, store: Store, key: str, identity: str, ttl: int = DEFAULT_TTL,
                 clock: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time,
                 on_change: Callable[[bool], None] = lambda leading: None) -> None:
        self.store, self.key, self.identity, self.ttl = store, key, identity, max(2, int(ttl))
        self.clock, self.wall, self.on_change = clock, wall, on_change
        self.lease = 0
        self.leading = False
        self._next_renew = 0.0
        self._next_try = 0.0
        self._acquired = ""
        self._uid = ""
        self._had_holder = False
        self._transitions = 0

    @property
    def retry_period(self) -> float:
        return max(0.5, self.ttl / 7)

    def _body(self, renew: float) -> str:
        name = self.key.rsplit("/", 1)[-1]
        return json.dumps({
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": name, "namespace": NAMESPACE, "uid": self._uid,
                         "creationTimestamp": self._acquired[:19] + "Z"},
            "spec": {"holderIdentity": self.identity, "leaseDurationSeconds": self.ttl,
                     "acquireTime": self._acquired, "renewTime": micro_time(renew),
                     "leaseTransitions": self._transitions},
        }, sort_keys=True)

    def tick(self) -> bool:
        now = self.clock()
        try:
            if self.leading:
                if now >= self._next_renew:
                    self._renew(now)
            elif now >= self._next_try:
                self._next_try = now + self.retry_period
                self._try_acquire(now)
        except StoreError:
            # The store is out of reach: keep leading only while our lease can still be alive.
            if self.leading and now >= self._next_renew + self.ttl * 2 / 3 - self.retry_period:
                self._set(False)
        return self.leading

    def holder(self) -> str | None:
        """Who leads now, from the store (None: nobody)."""
        kv = self.store.get(self.key)
        if kv is None:
            return None
        try:
            return str(json.loads(kv.value)["spec"]["holderIdentity"])
        except (ValueError, KeyError, TypeError):
            return None

    def _try_acquire(self, now: float) -> None:
        current = self.store.get(self.key)
        if current is not None:
            try:
                self._transitions = int(json.loads(current.value)["spec"].get("leaseTransitions", 0))
                self._had_holder = True
            except (ValueError, KeyError, TypeError, AttributeError):
                pass
            return
        lease = self.store.grant(self.ttl)
        self._acquired = micro_time(self.wall())
        self._uid = str(uuid.uuid4())            # each holder's Lease is a new object
        if self._had_holder:                     # 0 for the first holder ever seen, as client-go counts
            self._transitions += 1
        if self.store.create(self.key, self._body(self.wall()), lease=lease) is None:
            self.store.revoke(lease)
            return
        self.lease = lease
        self._next_renew = now + self.ttl / 3
        self._set(True)

    def _renew(self, now: float) -> None:
        try:
            self.store.keep_alive(self.lease)
        except LeaseExpired:
            self.lease = 0
            self._set(False)
            return
        kv = self.store.get(self.key)
        if kv is None or kv.lease != self.lease:
            self._set(False)
            return
        self.store.compare_and_swap(self.key, self._body(self.wall()), kv.mod_revision, lease=self.lease)
        self._next_renew = now + self.ttl / 3

    def _set(self, leading: bool) -> None:
        if leading != self.leading:
            self.leading = leading
            self.on_change(leading)

    def release(self) -> None:
        """Step down now (clean stop): the next candidate takes over at its next tick."""
        if self.lease:
            try:
                self.store.revoke(self.lease)
            except StoreError:
                pass
            self.lease = 0
        self._set(False)
