"""Leader election over a store lease, with the store's and the elector's clocks faked."""

from __future__ import annotations

import json

from tulle.cluster.leader import LeaderElector, lease_key
from tulle.store.sqlite import SqliteStore


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def electors(n: int = 2, ttl: int = 6):
    clock = Clock()
    store = SqliteStore(":memory:", clock=clock)
    key = lease_key("/registry")
    return clock, store, [LeaderElector(store, key, f"n{i + 1}", ttl=ttl, clock=clock, wall=clock)
                          for i in range(n)]


def test_exactly_one_leads_and_the_object_says_who():
    clock, store, (a, b) = electors()
    assert a.tick() is True
    assert b.tick() is False
    body = json.loads(store.get(lease_key("/registry")).value)
    assert body["kind"] == "Lease" and body["spec"]["holderIdentity"] == "n1"
    assert body["spec"]["leaseDurationSeconds"] == 6
    assert a.holder() == b.holder() == "n1"


def test_renewal_keeps_leadership_past_the_ttl():
    clock, store, (a, b) = electors()
    a.tick()
    for _ in range(10):
        clock.t += 1.0
        assert a.tick() is True
        assert b.tick() is False


def test_takeover_when_the_leader_stops_renewing():
    clock, store, (a, b) = electors()
    a.tick()
    clock.t += 3
    assert b.tick() is False                # a's lease still runs
    clock.t += 4                            # 7 s since a's last renewal > ttl 6
    assert b.tick() is True
    assert b.holder() == "n2"
    assert json.loads(store.get(lease_key("/registry")).value)["spec"]["leaseTransitions"] == 1
    clock.t += 1
    assert a.tick() is False                # a finds its lease gone and steps down


def test_release_hands_over_at_the_next_tick():
    clock, store, (a, b) = electors()
    a.tick()
    b.tick()
    a.release()
    assert a.leading is False
    clock.t += b.retry_period
    assert b.tick() is True


def test_on_change_reports_transitions():
    seen: list[bool] = []
    clock = Clock()
    store = SqliteStore(":memory:", clock=clock)
    e = LeaderElector(store, lease_key("/r"), "n1", ttl=4, clock=clock, wall=clock, on_change=seen.append)
    e.tick()
    e.release()
    assert seen == [True, False]
