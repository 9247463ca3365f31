"""Lease acquisition and renewal against an in-memory SQLite store."""

from __future__ import annotations

import ipaddress
import json
import random

import pytest

from tulle.cluster import netconfig
from tulle.cluster.lease import Lease, decode, encode, subnet_key
from tulle.agent.subnet import SubnetManager, free_subnets
from tulle.errors import ExhaustedError
from tulle.store import open_store
from tulle.store.sqlite import SqliteStore

PREFIX = "/coreos.com/network"
NET = ipaddress.IPv4Network
IP = ipaddress.IPv4Address


class First(random.Random):
    """Always the first candidate: makes two acquirers collide on purpose."""

    def choice(self, seq):  # type: ignore[override]
        return seq[0]


@pytest.fixture
def store():
    s = open_store("sqlite://:memory:")
    yield s
    s.close()


def manager(store, ip="198.51.100.11", cfg=None, state_dir=None, **kw):
    cfg = cfg or netconfig.build("10.244.0.0/16", backend="host-gw")
    return SubnetManager(store, PREFIX, cfg, f"node-{ip}", IP(ip), state_dir, **kw)


def put_lease(store, subnet, ip, reservation=False, ttl=3600, data=None):
    lease = Lease(NET(subnet), IP(ip), "host-gw", data or {})
    store.put(subnet_key(PREFIX, lease.subnet), encode(lease), lease=0 if reservation else store.grant(ttl))


def stored(store, subnet):
    kv = store.get(subnet_key(PREFIX, NET(subnet)))
    return None if kv is None else decode(kv.key, kv.value, kv.mod_revision, has_ttl=kv.lease != 0)


def test_acquire_creates_a_lease_in_range_bound_to_a_ttl(store):
    m = manager(store)
    lease = m.acquire("host-gw", {"k": "v"})
    assert lease.subnet.prefixlen == 24 and lease.subnet.subnet_of(NET("10.244.0.0/16"))
    assert lease.subnet != NET("10.244.0.0/24")     # below SubnetMin
    kv = store.get(subnet_key(PREFIX, lease.subnet))
    assert kv.lease != 0 and m.store_lease == kv.lease
    body = json.loads(kv.value)
    assert body == {"PublicIP": "198.51.100.11", "BackendType": "host-gw", "BackendData": {"k": "v"},
                    "Node": "node-198.51.100.11"}
    assert not lease.reservation


def test_reuses_the_lease_carrying_our_public_ip_and_publishes_new_backend_data(store):
    put_lease(store, "10.244.7.0/24", "198.51.100.11", data={"VtepMAC": "old"})
    put_lease(store, "10.244.8.0/24", "198.51.100.12")
    lease = manager(store).acquire("host-gw", {"VtepMAC": "new"})
    assert lease.subnet == NET("10.244.7.0/24")
    assert stored(store, "10.244.7.0/24").backend_data == {"VtepMAC": "new"}
    assert not stored(store, "10.244.7.0/24").reservation


def test_a_reservation_with_our_ip_is_used_and_stays_a_reservation(store):
    put_lease(store, "10.244.9.0/24", "198.51.100.11", reservation=True)
    m = manager(store)
    lease = m.acquire("host-gw")
    assert lease.subnet == NET("10.244.9.0/24") and lease.reservation
    assert m.store_lease == 0 and store.get(subnet_key(PREFIX, lease.subnet)).lease == 0
    assert m.expires_in() == float("inf") and not m.renew_due()
    assert m.renew() is m.lease


def test_reservations_of_others_and_taken_subnets_are_skipped(store):
    cfg = netconfig.parse({"Network": "10.244.0.0/16", "SubnetMin": "10.244.1.0", "SubnetMax": "10.244.3.0",
                           "Backend": {"Type": "host-gw"}})
    put_lease(store, "10.244.1.0/24", "198.51.100.50", reservation=True)
    put_lease(store, "10.244.2.0/24", "198.51.100.51")
    assert manager(store, cfg=cfg).acquire("host-gw").subnet == NET("10.244.3.0/24")


def test_previous_subnet_from_state_dir_is_reused(store, tmp_path):
    m = manager(store, state_dir=str(tmp_path))
    first = m.acquire("host-gw")
    store.revoke(m.store_lease)                     # e.g. expired while the node was down
    again = manager(store, ip="198.51.100.11", state_dir=str(tmp_path), rng=First()).acquire("host-gw")
    assert again.subnet == first.subnet


def test_previous_subnet_taken_by_someone_else_is_not_stolen(store, tmp_path):
    m = manager(store, state_dir=str(tmp_path))
    first = m.acquire("host-gw")
    store.revoke(m.store_lease)
    put_lease(store, str(first.subnet), "198.51.100.99")
    assert manager(store, state_dir=str(tmp_path)).acquire("host-gw").subnet != first.subnet


def test_own_lease_outside_the_config_is_deleted_and_replaced(store):
    put_lease(store, "10.99.1.0/24", "198.51.100.11")
    lease = manager(store).acquire("host-gw")
    assert lease.subnet.subnet_of(NET("10.244.0.0/16"))
    assert stored(store, "10.99.1.0/24") is None


class RacingStore:
    """Lets a rival take the subnet between our listing and our create."""

    def __init__(self, store, rival) -> None:
        self._s, self._rival, self.creates = store, rival, 0

    def __getattr__(self, name):
        return getattr(self._s, name)

    def create(self, key, value, lease=0):
        self.creates += 1
        if self.creates == 1:
            self._rival()
        return self._s.create(key, value, lease)


def test_conflict_is_retried_two_acquirers_two_free_subnets(store):
    cfg = netconfig.parse({"Network": "10.244.0.0/24", "SubnetLen": 26, "SubnetMax": "10.244.0.128",
                           "Backend": {"Type": "host-gw"}})
    assert len(list(cfg.subnets())) == 2
    rival = manager(store, ip="198.51.100.12", cfg=cfg, rng=First())
    racing = RacingStore(store, lambda: rival.acquire("host-gw"))
    ours = manager(racing, cfg=cfg, rng=First()).acquire("host-gw")
    assert racing.creates == 2                          # lost once, then won
    assert {ours.subnet, rival.lease.subnet} == {NET("10.244.0.64/26"), NET("10.244.0.128/26")}
    assert stored(store, str(ours.subnet)).public_ip == IP("198.51.100.11")
    with pytest.raises(ExhaustedError, match="no free subnet left.*10.244.0.0/24"):
        manager(store, ip="198.51.100.13", cfg=cfg).acquire("host-gw")


def test_exhaustion_is_a_clear_error(store):
    cfg = netconfig.parse({"Network": "10.244.0.0/28", "Backend": {"Type": "host-gw"}})
    manager(store, cfg=cfg).acquire("host-gw")
    with pytest.raises(ExhaustedError) as exc:
        manager(store, ip="198.51.100.12", cfg=cfg).acquire("host-gw")
    assert "all /29 subnets of 10.244.0.0/28" in exc.value.msg


def test_free_subnets_stops_at_100():
    cfg = netconfig.parse({"Network": "10.0.0.0/8", "Backend": {"Type": "host-gw"}})
    free = free_subnets(cfg, {NET("10.0.1.0/24")})
    assert len(free) == 100 and NET("10.0.1.0/24") not in free and free[0] == NET("10.0.2.0/24")


def test_renew_before_expiry_and_reacquire_after_it(tmp_path):
    now = [1000.0]
    store = SqliteStore(":memory:", clock=lambda: now[0])
    m = manager(store, state_dir=str(tmp_path), ttl=10, renew_margin=3, clock=lambda: now[0])
    lease = m.acquire("host-gw")
    assert not m.renew_due() and m.expires_in() == 10
    now[0] += 8
    assert m.renew_due()
    assert m.renew() is lease and m.expires_in() == 10 and not m.renew_due()
    now[0] += 8
    assert store.get(subnet_key(PREFIX, lease.subnet)) is not None  # renewed: still there at t+16
    now[0] += 100                                                  # missed renewals: expired
    assert store.get(subnet_key(PREFIX, lease.subnet)) is None
    again = m.renew()
    assert again.subnet == lease.subnet and store.get(subnet_key(PREFIX, lease.subnet)) is not None
    store.close()


def test_release_revokes_the_lease(store):
    m = manager(store)
    lease = m.acquire("host-gw")
    m.release()
    assert stored(store, str(lease.subnet)) is None and m.lease is None
