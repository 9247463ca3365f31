"""The agent's loop with a fake backend and no kernel: update on a store change, a full
sync at start, on every tick and after compaction, retake a deleted own lease, renew,
and stop."""

from __future__ import annotations

import ipaddress
import threading
import time

import pytest

from tests.unit.agent import scrape
from tulle.agent import daemon, masquerade, metrics
from tulle.cluster import netconfig
from tulle.agent.backends import base
from tulle.cluster.lease import DEFAULT_PREFIX, Lease, encode, subnet_key, subnets_prefix
from tulle.errors import ConfigError, ExhaustedError, TulleError
from tulle.store import Compacted, open_store


class FakeBackend:
    type_name = "host-gw"
    watch_prefixes: tuple[str, ...] = ()

    def __init__(self) -> None:
        self.started: list[Lease] = []
        self.passes: list[tuple[str, list[str]]] = []   # ("sync" | "update", remote subnets)
        self.stopped = self.torn_down = False
        self.down: list[str] = []      # what daemons_down answers (a daemon that died)

    @property
    def synced(self) -> list[list[str]]:
        """The remote subnets of every pass, sync or update."""
        return [subnets for _, subnets in self.passes]

    def prepare(self) -> base.BackendInfo:
        return base.BackendInfo(backend_data={"fake": 1}, mtu=1400)

    def start(self, own: Lease) -> None:
        self.started.append(own)

    def sync(self, remotes: list[Lease]) -> None:
        self.passes.append(("sync", sorted(str(l.subnet) for l in remotes)))

    def update(self, remotes: list[Lease]) -> None:
        self.passes.append(("update", sorted(str(l.subnet) for l in remotes)))

    def stop(self) -> None:
        self.stopped = True

    def teardown(self) -> None:
        self.torn_down = True

    def daemons_down(self) -> list[str]:
        return self.down


@pytest.fixture
def env(tmp_path, monkeypatch):
    fake = FakeBackend()
    monkeypatch.setattr(base, "create", lambda t, node, cfg: fake)
    monkeypatch.setattr(daemon, "find_underlay", lambda ip, iface: (ipaddress.IPv4Address(ip), "eth0", 1500))
    monkeypatch.setattr(daemon, "underlay_networks", lambda dev: [ipaddress.IPv4Network("198.51.100.0/24")])
    monkeypatch.setattr(masquerade, "ensure", lambda net, sn, runner=None: False)
    monkeypatch.setattr(masquerade, "remove", lambda runner=None: False)
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
        assert fake.passes[0] == ("sync", [])                       # start: a full converge
        key = put_remote(store, "10.244.250.0/24", "198.51.100.12")
        wait_for(lambda: fake.synced[-1] == ["10.244.250.0/24"])
        assert ("update", ["10.244.250.0/24"]) in fake.passes       # the change: only applied
        assert scrape.value("tulle_leases") == 1
        assert scrape.value("tulle_controller_runs_total", controller="network", mode="incremental") >= 1
        assert scrape.value("tulle_leader", identity="n1") == 1          # the only agent leads
        wait_for(lambda: fake.passes[-1] == ("sync", ["10.244.250.0/24"]))   # the tick: full again

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
        assert ("sync", []) in fake.passes[-2:]                     # re-listed: a full converge

        # our own key deleted by someone: taken again (same subnet, from the state dir)
        assert store.delete(subnet_key(DEFAULT_PREFIX, own.subnet))
        wait_for(lambda: store.get(subnet_key(DEFAULT_PREFIX, own.subnet)) is not None)
        wait_for(lambda: len(fake.started) == 2)
        assert fake.started[-1].subnet == own.subnet

        # TTL 2 s, renewed when <1 s is left: the key outlives its TTL
        time.sleep(3)
        assert store.get(subnet_key(DEFAULT_PREFIX, own.subnet)) is not None
        assert metrics.HEALTH.status() == (True, "ok")
        assert scrape.value("tulle_controller_runs_total", controller="endpoints", mode="full") >= 1
        assert scrape.value("tulle_controller_run_seconds_count", controller="network") >= 3
    finally:
        agent.stop_event.set()
        thread.join(5)
        agent.close()
    assert scrape.value("tulle_leader", identity="n1") == 0              # released at stop
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


def test_ticks_come_within_the_interval_spread(env, monkeypatch):
    """Agents started together must not converge in step: each tick is drawn from the last
    TICK_JITTER of the interval, never later than the interval."""
    fake, store, opts = env
    opts.reconcile_interval = 10.0
    agent = daemon.Agent(opts)
    now = 1000.0
    monkeypatch.setattr(daemon.time, "monotonic", lambda: now)
    for draw, expected in ((0.0, 1010.0), (0.5, 1009.0), (0.999999, 1008.0)):
        monkeypatch.setattr(daemon.random, "random", lambda d=draw: d)
        assert agent._next_tick() == pytest.approx(expected, abs=1e-3)


def test_default_interval_and_cli(monkeypatch):
    from tulle.cli import main as cli

    seen: list[daemon.Options] = []
    monkeypatch.setattr(daemon, "run", lambda opts: seen.append(opts) or 0)
    args = ["agent", "run", "--node", "n1", "--store", "sqlite://:memory:"]
    assert cli.main(args) == 0 and cli.main(args + ["--reconcile-interval", "2.5"]) == 0
    assert [o.reconcile_interval for o in seen] == [daemon.DEFAULT_RECONCILE_INTERVAL, 2.5]


class FlakyBackend(FakeBackend):
    """The first full converge fails (a netlink error, say)."""

    def sync(self, remotes: list[Lease]) -> None:
        super().sync(remotes)
        if len(self.passes) == 1:
            raise TulleError("RTNETLINK answers: no buffer space")


def test_a_failed_pass_is_retried_before_the_interval(env, monkeypatch):
    """...and counted per controller, and shown as that controller's outcome in /healthz?verbose."""
    fake, store, opts = env
    flaky = FlakyBackend()
    monkeypatch.setattr(daemon.base, "create", lambda t, node, cfg: flaky)
    monkeypatch.setattr(daemon, "RETRY_AFTER_FAILURE", 0.1)
    opts.reconcile_interval = 3600   # no tick during the test: only the retry can sync
    errors = scrape.value("tulle_controller_errors_total", controller="network")
    agent = daemon.Agent(opts)
    agent.start()
    assert metrics.HEALTH.verbose()[1].splitlines()[0] == "[+]lease ok"
    t = threading.Thread(target=agent.loop)
    t.start()
    try:
        wait_for(lambda: len(flaky.passes) >= 2)
        assert [kind for kind, _ in flaky.passes[:2]] == ["sync", "sync"]
        assert scrape.value("tulle_controller_errors_total", controller="network") == errors + 1
        wait_for(lambda: agent.last_pass_ok and metrics.HEALTH.status() == (True, "ok"))
        ok, report = metrics.HEALTH.verbose()
        assert ok and "[+]controller/network ok" in report.splitlines()
    finally:
        agent.stop_event.set()
        t.join(5)
        agent.close()


def test_a_service_network_over_the_underlay_is_refused_before_anything(env):
    fake, store, opts = env
    cfg = netconfig.build("10.244.0.0/16", backend="host-gw", service_network="198.51.100.0/25")
    netconfig.write_config(store, DEFAULT_PREFIX, cfg)
    with pytest.raises(ConfigError, match=r"ServiceNetwork 198\.51\.100\.0/25 overlaps the underlay \(eth0\) "
                                          r"range\(s\) 198\.51\.100\.0/24"):
        daemon.Agent(opts).start()
    assert store.list(subnets_prefix(DEFAULT_PREFIX))[0] == []        # refused before the lease


class DyingDaemonBackend(FakeBackend):
    """Runs a daemon (BIRD, say) that dies once; a full sync starts it again."""

    def sync(self, remotes: list[Lease]) -> None:
        super().sync(remotes)
        self.down = []


def test_a_dead_daemon_is_started_again_at_once_not_at_the_tick(env, monkeypatch):
    fake, store, opts = env
    backend = DyingDaemonBackend()
    monkeypatch.setattr(daemon.base, "create", lambda t, node, cfg: backend)
    opts.reconcile_interval = 3600   # no tick during the test
    agent = daemon.Agent(opts)
    agent.start()
    t = threading.Thread(target=agent.loop)
    t.start()
    try:
        wait_for(lambda: backend.passes == [("sync", [])])
        backend.down = ["bird"]                       # killed
        wait_for(lambda: backend.down == [] and len(backend.passes) == 2)
        assert backend.passes[1][0] == "sync"         # a full pass: it starts what is missing
        time.sleep(1.5)
        assert [k for k, _ in backend.passes].count("sync") == 2    # and only once (updates: the watch)
    finally:
        agent.stop_event.set()
        t.join(5)
        agent.close()
