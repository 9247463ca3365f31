"""An agent starts while its store is out of reach: from its last known state, with the
data plane as it was, and registers its lease once the store answers."""

from __future__ import annotations

import dataclasses
import os
import threading

import pytest

from tests.unit.agent.test_daemon_loop import FakeBackend, env, put_remote, wait_for  # noqa: F401 - fixture
from tulle.agent import daemon, lastknown
from tulle.cluster.lease import DEFAULT_PREFIX, subnet_key
from tulle.store import StoreUnavailable, open_store


def run(agent: daemon.Agent) -> threading.Thread:
    t = threading.Thread(target=agent.loop, daemon=True)
    t.start()
    return t


def stop(agent: daemon.Agent, t: threading.Thread) -> None:
    agent.stop_event.set()
    t.join(10)
    agent.close()


def test_start_without_the_store_from_the_last_known_state(env, tmp_path, monkeypatch):
    fake, store, opts = env
    # the store in a directory of its own, so that it can be taken away
    os.makedirs(tmp_path / "db")
    url = f"sqlite://{tmp_path}/db/store.db"
    db = open_store(url)
    db.put(f"{DEFAULT_PREFIX}/config", store.get(f"{DEFAULT_PREFIX}/config").value)
    opts = dataclasses.replace(opts, store=url, lease_ttl=3600, renew_margin=60)
    put_remote(db, "10.244.250.0/24", "198.51.100.12")

    first = daemon.Agent(opts)
    first.start()
    own = first.own
    t = run(first)
    wait_for(lambda: os.path.exists(os.path.join(opts.state_dir, lastknown.FILE)))
    stop(first, t)

    os.rename(tmp_path / "db", tmp_path / "db.away")            # the store is gone
    fake.passes.clear()
    fake.started.clear()
    second = daemon.Agent(opts)
    second.start()                                               # no error: the last known state
    assert fake.started[-1].subnet == own.subnet
    t = run(second)
    try:
        wait_for(lambda: ("sync", ["10.244.250.0/24"]) in fake.passes)   # remotes from the saved state
        os.rename(tmp_path / "db.away", tmp_path / "db")         # back
        back = open_store(url)
        wait_for(lambda: second._registered, timeout=40)
        kv = back.get(subnet_key(DEFAULT_PREFIX, own.subnet))
        assert kv is not None and kv.lease != 0                  # registered again, same subnet
        put_remote(back, "10.244.251.0/24", "198.51.100.13")     # and following the store again
        wait_for(lambda: fake.synced and fake.synced[-1] == ["10.244.250.0/24", "10.244.251.0/24"], timeout=40)
    finally:
        stop(second, t)


def test_the_first_start_needs_the_store(env, tmp_path):
    fake, store, opts = env
    opts = dataclasses.replace(opts, store=f"sqlite://{tmp_path}/nowhere/store.db")
    with pytest.raises(StoreUnavailable, match="no last known state"):
        daemon.Agent(opts).start()


def test_a_change_throttled_by_the_saver_is_written_later(tmp_path):
    """A remote lease seen within MIN_INTERVAL of the last save must still reach the file (a
    lost one made an offline start drop that node's route)."""
    from tulle.store.base import KV

    now = [0.0]
    saver = lastknown.Saver(str(tmp_path), clock=lambda: now[0])
    kv = KV("/coreos.com/network/subnets/10.244.9.0-24", b"{}", 2, 2, 1)
    assert saver.save("{}", None, [], 1)
    now[0] = 1.0
    assert not saver.save("{}", None, [kv], 2)              # throttled ...
    now[0] = lastknown.MIN_INTERVAL + 0.5
    assert saver.save("{}", None, [kv], 2)                  # ... and written once the interval passed
    assert not saver.save("{}", None, [kv], 2)              # nothing new: nothing written
