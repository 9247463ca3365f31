"""The agent also syncs when keys under a backend's `watch_prefixes` change (bgp: the blocks)."""

from __future__ import annotations

import threading

from tests.unit.agent.test_daemon_loop import FakeBackend, env, wait_for  # noqa: F401 - env is a fixture
from tulle.agent import daemon
from tulle.cluster.lease import DEFAULT_PREFIX


class BlockWatcher(FakeBackend):
    watch_prefixes = ("blocks/",)


def test_a_block_change_triggers_sync_and_is_no_lease(env, monkeypatch):
    fake, store, opts = env
    watcher = BlockWatcher()
    monkeypatch.setattr(daemon.base, "create", lambda t, node, cfg: watcher)
    opts.reconcile_interval = 60  # no tick during the test: only the watch can sync
    agent = daemon.Agent(opts)
    agent.start()
    assert agent.backend is watcher
    t = threading.Thread(target=agent.loop)
    t.start()
    try:
        wait_for(lambda: len(watcher.synced) == 1)        # the start pass
        store.put(f"{DEFAULT_PREFIX}/blocks/10.244.3.0-26", b'{"Affinity": "n2", "Allocations": {}}')
        wait_for(lambda: len(watcher.synced) == 2)
        assert watcher.passes[-1] == ("update", [])       # a block key is not a lease
        assert len(agent.leases) == 1                     # only our own
    finally:
        agent.stop_event.set()
        t.join(5)
        agent.close()
