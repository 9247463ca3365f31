"""The agent's loop with a fake backend and no kernel: sync on change, re-list after
compaction, retake a deleted own lease, renew, and stop."""

from __future__ import annotations

import ipaddress
import threading
import time

import pytest

from tulle.agent import daemon, masquerade, metrics, netconfig
from tulle.agent.backends import base
from tulle.agent.lease import DEFAULT_PREFIX, Lease, encode, subnet_key, subnets_prefix
from tulle.errors import ExhaustedError
from tulle.store import Compacted, open_store


class FakeBackend:
    type_name = "host-gw"

    def __init__(self) -> None:
        self.started: list[Lease] = []
        self.synced: list[list[str]] = []
        self.stopped = self.torn_down = False

    def prepare(self) -> base.BackendInfo:
        return base.BackendInfo(backend_data={"fake": 1}, mtu=1400)

    def start(self, own: Lease) -> None:
        self.started.append(own)

    def sync(self, remotes: list[Lease]) -> None:
        self.synced.append(sorted(str(l.subnet) for l in remotes))

    def stop(self) -> None:
        self.stopped = True

    def teardown(self) -> None:
        self.torn_down = True


@pytest.fixture
def env(tmp_path, monkeypatch):
    fake = FakeBackend()
    monkeypatch.setattr(base, "create", lambda t, node, cfg: fake)
    monkeypatch.setattr(daemon, "find_underlay", lambda ip, iface: (ipaddress.IPv4Address(ip), "eth0", 1500))
    monkeypatch.setattr(masquerade, "ensure", lambda net, sn: False)
    monkeypatch.setattr(masquerade, "remove", lambda: False)
    monkeypatch.setattr(daemon.Agent, "_start_cni_server", lambda self, closers: None)
    url = f"sqlite://{tmp_path}/store.db"
    store = open_store(url)
    netconfig.write_config(store, DEFAULT_PREFIX, netconfig.build("10.244.0.0/16", backend="host-gw"))
    opts = daemon.Options(node="n1", store=url, public_ip="198.51.100.11", subnet_file=str(tmp_path / "subnet.env"),
                          state_dir=str(tmp_path / "state"), socket=str(tmp_path / "s.sock"),
                          reconcile_interval=0.2, lease_ttl=2, renew_margin=1)
    yield fake, store, opts
    store.close()


def wait_for(fn, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if fn():
            return
        time.sleep(0.02)
    raise AssertionError("timed out")


def put_remote(store, subnet: str, ip: str) -> str:
    key = subnet_key(DEFAULT_PREFIX, ipaddress.IPv4Network(subnet))
    store.put(key, encode(Lease(ipaddress.IPv4Network(subnet), ipaddress.IPv4Address(ip), "host-gw")),
              lease=store.grant(60))
    return key


def test_loop(env):
    fake, store, opts = env
    agent = daemon.Agent(opts)
    agent.start()
    own = agent.own
    assert fake.started == [own] and own is not None
    assert open(opts.subnet_file).read().startswith("FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=")
    assert "FLANNEL_MTU=1400" in open(opts.subnet_file).read()
    thread = threading.Thread(target=agent.loop, daemon=True)
    thread.start()
    try:
        wait_for(lambda: fake.synced and fake.synced[-1] == [])
        key = put_remote(store, "10.244.250.0/24", "198.51.100.12")
        wait_for(lambda: fake.synced[-1] == ["10.244.250.0/24"])
        assert metrics.LEASES.value() == 1

        # the watch history is gone: re-list, converge anyway
        real_watch = agent.store.watch
        calls = {"n": 0}

        def compacted_once(prefix, rev, timeout):
            calls["n"] += 1
            if calls["n"] == 1:
                raise Compacted("gone", rev)
            return real_watch(prefix, rev, timeout)

        agent.store.watch = compacted_once  # type: ignore[method-assign]
        store.delete(key)
        wait_for(lambda: calls["n"] > 1 and fake.synced[-1] == [])

        # our own key deleted by someone: taken again (same subnet, from the state dir)
        assert store.delete(subnet_key(DEFAULT_PREFIX, own.subnet))
        wait_for(lambda: store.get(subnet_key(DEFAULT_PREFIX, own.subnet)) is not None)
        wait_for(lambda: len(fake.started) == 2)
        assert fake.started[-1].subnet == own.subnet

        # TTL 2 s, renewed when <1 s is left: the key outlives its TTL
        time.sleep(3)
        assert store.get(subnet_key(DEFAULT_PREFIX, own.subnet)) is not None
        assert metrics.HEALTH.status() == (True, "ok")
    finally:
        agent.stop_event.set()
        thread.join(5)
        agent.close()
    assert not thread.is_alive() and fake.stopped and not fake.torn_down
    kvs, _ = store.list(subnets_prefix(DEFAULT_PREFIX))
    assert [kv.key for kv in kvs] == [subnet_key(DEFAULT_PREFIX, own.subnet)]  # lease kept at stop


def test_failed_start_undoes_backend_and_leaves_no_lease(env, monkeypatch):
    fake, store, opts = env

    def exhausted(self, *a, **kw):
        raise ExhaustedError("no free subnet left")

    monkeypatch.setattr(daemon.SubnetManager, "acquire", exhausted)
    with pytest.raises(ExhaustedError):
        daemon.Agent(opts).start()
    assert fake.torn_down
    assert store.list(subnets_prefix(DEFAULT_PREFIX))[0] == []
