"""Acquiring and renewing this node's subnet lease, the way Flannel does.

Acquire, in order (Flannel's tryAcquireLease):
  1. a key that already carries this node's PublicIP: reuse it (a reservation —
     a key without TTL — stays a reservation; a lease gets a fresh TTL) and
     publish our current BackendData in it (a restarted VTEP has a new MAC);
     a key with our IP that no longer fits the config is deleted;
  2. else the subnet this node held last time (recorded in the state dir) when
     nobody holds it now;
  3. else one picked at random among up to 100 free subnets between SubnetMin
     and SubnetMax (taken: every key, lease or reservation).
The write is create-if-absent (etcd: version == 0) bound to a store lease of
`ttl` (tulle.node_defaults.LEASE_TTL, 24 h), so two nodes never win the same subnet;
losing the race re-lists and tries again. `renew()` keeps the store lease alive;
the daemon calls it once `renew_due()` (within `renew_margin` of expiry,
LEASE_RENEW_MARGIN, 1 h, as Flannel).
Both are parameters so tests can work in seconds.
"""

from __future__ import annotations

import ipaddress
import json
import os
import random
import time
from typing import Any, Callable

from tulle import node_defaults
from tulle.agent import log
from tulle.cluster.lease import Lease, decode, encode, subnet_from_key, subnet_key, subnets_prefix
from tulle.cluster.netconfig import NetConfig
from tulle.errors import ExhaustedError, TryAgain
from tulle.store import KV, LeaseExpired, Store

MAX_CANDIDATES = 100   # Flannel picks at random among at most this many free subnets
RACE_RETRIES = 10
STATE_FILE = "lease.json"


def kv_to_lease(kv: KV) -> Lease | None:
    """The lease a store key holds, or None for keys that are not leases (logged)."""
    if subnet_from_key(kv.key) is None:
        return None
    try:
        return decode(kv.key, kv.value, mod_revision=kv.mod_revision, has_ttl=kv.lease != 0)
    except Exception as exc:  # a malformed foreign key must not stop the node
        log.warning("ignoring malformed lease", key=kv.key, error=str(exc))
        return None


def free_subnets(config: NetConfig, taken: set[ipaddress.IPv4Network],
                 limit: int = MAX_CANDIDATES) -> list[ipaddress.IPv4Network]:
    """Up to `limit` subnets between SubnetMin and SubnetMax that overlap nothing taken (pure)."""
    out = []
    for sn in config.subnets():
        if any(sn.overlaps(t) for t in taken):
            continue
        out.append(sn)
        if len(out) >= limit:
            break
    return out


class SubnetManager:
    """Holds one node's lease in the store."""

    def __init__(self, store: Store, prefix: str, config: NetConfig, node: str,
                 public_ip: ipaddress.IPv4Address, state_dir: str | None = None,
                 ttl: int = node_defaults.LEASE_TTL, renew_margin: float = node_defaults.LEASE_RENEW_MARGIN,
                 rng: random.Random | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.prefix = prefix
        self.config = config
        self.node = node
        self.public_ip = ipaddress.IPv4Address(public_ip)
        self.state_dir = state_dir
        self.ttl = ttl
        self.renew_margin = min(renew_margin, ttl / 2)
        self.rng = rng or random.Random()
        self.clock = clock
        self.lease: Lease | None = None
        self.store_lease = 0          # store lease id (0: we hold a reservation)
        self.expires_at = 0.0         # clock() time our store lease runs out
        self._backend_type = ""
        self._backend_data: dict[str, Any] = {}

    # -- state dir -----------------------------------------------------------

    def previous_subnet(self) -> ipaddress.IPv4Network | None:
        """The subnet recorded by the last run on this node, if any."""
        if not self.state_dir:
            return None
        try:
            with open(os.path.join(self.state_dir, STATE_FILE)) as f:
                return ipaddress.IPv4Network(json.load(f)["subnet"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _record(self, lease: Lease) -> None:
        if not self.state_dir:
            return
        os.makedirs(self.state_dir, exist_ok=True)
        path = os.path.join(self.state_dir, STATE_FILE)
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump({"subnet": str(lease.subnet), "public_ip": str(lease.public_ip), "node": self.node}, f)
        os.replace(tmp, path)

    # -- acquire -------------------------------------------------------------

    def leases(self) -> tuple[list[Lease], int]:
        """Every lease and reservation under the prefix, and the revision of the read."""
        kvs, rev = self.store.list(subnets_prefix(self.prefix))
        return [lease for kv in kvs if (lease := kv_to_lease(kv)) is not None], rev

    def _value(self, subnet: ipaddress.IPv4Network) -> bytes:
        return encode(Lease(subnet, self.public_ip, self._backend_type, self._backend_data, node=self.node))

    def acquire(self, backend_type: str, backend_data: dict[str, Any] | None = None) -> Lease:
        """Take (or retake) this node's lease; ExhaustedError when no subnet is free."""
        self._backend_type = backend_type
        self._backend_data = dict(backend_data or {})
        for attempt in range(RACE_RETRIES):
            try:
                lease = self._try_acquire()
            except TryAgain as exc:
                log.info("subnet race lost, retrying", attempt=attempt + 1, reason=exc.msg)
                continue
            self.lease = lease
            self._record(lease)
            log.info("subnet lease acquired", subnet=lease.subnet, public_ip=lease.public_ip,
                     reservation=lease.reservation, ttl=0 if lease.reservation else self.ttl)
            return lease
        raise TryAgain(f"could not acquire a subnet lease after {RACE_RETRIES} attempts: "
                       f"other nodes kept taking the same subnets")

    def _try_acquire(self) -> Lease:
        leases, _ = self.leases()
        mine = [l for l in leases if l.public_ip == self.public_ip]
        for old in mine:
            if self.config.contains(old.subnet):
                return self._take_over(old)
            log.warning("deleting own lease that no longer fits the network config",
                        subnet=old.subnet, network=self.config.network)
            self.store.delete(subnet_key(self.prefix, old.subnet), mod_revision=old.mod_revision)
        taken = {l.subnet for l in leases}
        subnet = None
        prev = self.previous_subnet()
        if prev is not None and self.config.contains(prev) and not any(prev.overlaps(t) for t in taken):
            log.info("reusing previously held subnet", subnet=prev)
            subnet = prev
        if subnet is None:
            candidates = free_subnets(self.config, taken)
            if not candidates:
                raise ExhaustedError(
                    f"no free subnet left: all /{self.config.subnet_len} subnets of {self.config.network} "
                    f"between {self.config.subnet_min.network_address} and "
                    f"{self.config.subnet_max.network_address} are taken ({len(taken)} leases and reservations)")
            subnet = self.rng.choice(candidates)
        return self._create(subnet)

    def _create(self, subnet: ipaddress.IPv4Network) -> Lease:
        lease_id = self.store.grant(self.ttl)
        kv = self.store.create(subnet_key(self.prefix, subnet), self._value(subnet), lease=lease_id)
        if kv is None:
            self.store.revoke(lease_id)
            raise TryAgain(f"subnet {subnet} was taken by another node meanwhile")
        self._hold(lease_id)
        return self._lease_of(kv)

    def _take_over(self, old: Lease) -> Lease:
        """Reuse the key carrying our PublicIP, publishing our current backend data."""
        key = subnet_key(self.prefix, old.subnet)
        lease_id = 0 if old.reservation else self.store.grant(self.ttl)
        kv = self.store.compare_and_swap(key, self._value(old.subnet), old.mod_revision, lease=lease_id)
        if kv is None:
            if lease_id:
                self.store.revoke(lease_id)
            raise TryAgain(f"lease {old.subnet} changed while we were taking it over")
        self._hold(lease_id)
        log.info("found lease for our public IP, reusing", subnet=old.subnet, reservation=old.reservation)
        return self._lease_of(kv)

    def _hold(self, lease_id: int) -> None:
        self.store_lease = lease_id
        self.expires_at = self.clock() + self.ttl if lease_id else 0.0

    def _lease_of(self, kv: KV) -> Lease:
        lease = kv_to_lease(kv)
        assert lease is not None
        return lease

    # -- renew ---------------------------------------------------------------

    def expires_in(self) -> float:
        """Seconds until our store lease ends (inf for a reservation, 0 when none is held)."""
        if self.lease is None:
            return 0.0
        if not self.store_lease:
            return float("inf")
        return max(0.0, self.expires_at - self.clock())

    def renew_due(self) -> bool:
        return self.lease is not None and bool(self.store_lease) and self.expires_in() <= self.renew_margin

    def renew(self) -> Lease:
        """Refresh the TTL; when the store lease is gone (expired, revoked) retake the subnet."""
        if self.lease is None:
            raise TryAgain("no lease to renew: acquire first")
        if not self.store_lease:
            return self.lease
        try:
            self.store.keep_alive(self.store_lease)
            self._hold(self.store_lease)
            log.info("subnet lease renewed", subnet=self.lease.subnet, ttl=self.ttl)
            return self.lease
        except LeaseExpired:
            log.warning("subnet lease expired, acquiring again", subnet=self.lease.subnet)
            return self.reacquire()

    def reacquire(self) -> Lease:
        """Our key vanished (expired or deleted by someone): take a lease again, the same subnet
        when it is still free (it is recorded in the state dir)."""
        old, self.lease, self.store_lease = self.store_lease, None, 0
        if old:
            try:
                self.store.revoke(old)  # its key is gone; do not leave the lease to time out
            except Exception:
                pass
        return self.acquire(self._backend_type, self._backend_data)

    def release(self) -> None:
        """Give the subnet back (a node leaving for good); reservations are kept."""
        if self.lease is not None and self.store_lease:
            self.store.revoke(self.store_lease)
        self.lease = None
        self.store_lease = 0
