"""The node agent's run loop (`tulle agent run`): a host of controllers.

Startup, each step undone if a later one fails, so bad input leaves nothing:
  open the store → read and validate `<prefix>/config` → find the underlay
  (PublicIP, device, MTU) → build the backend (registry) → metrics server →
  backend.prepare() → acquire the subnet lease (with the backend's data) →
  backend.start(lease) → subnet.env → masquerade → CNI socket server.
Then the controllers (tulle.agent.controller): `network` (the backend, over the
leases and, in bgp mode, the IPAM blocks), `masquerade`, and — only on the agent
that holds the leader lease — `endpoints` (EndpointSlices from Services and Pods)
and `allocations` (ClusterIP/NodePort claims without a Service). One list+watch
of the store feeds them all: a change runs the controllers whose keys changed
with only the difference to write (a join costs each of many agents a few
netlink writes); every reconcile tick (the interval, up to TICK_JITTER earlier
so agents started together drift apart; RETRY_AFTER_FAILURE after a failed
pass) runs them all in full, reading the kernel back and restoring anything
deleted by hand, and renews the lease when due. Our own key vanishing (deleted,
expired) makes us take a lease again at once. An idle agent wakes only for the
watch slice (to see SIGTERM, and the leader lease) and the tick.
SIGTERM/SIGINT stop the loop; the data plane and the subnet lease are kept, so pods
keep talking while the agent restarts (as Flannel does); the leader lease is
released, so another agent takes the cluster-wide work over at once.
Everything acts on the calling process's network namespace.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import ipaddress
import os
import random
import signal
import socket as socketlib
import threading
import time
from dataclasses import dataclass
from typing import Any

from tulle import node_defaults
from tulle.agent import diff, lastknown, log, masquerade, metrics
from tulle.agent.backends import base
from tulle.agent.controller import Host
from tulle.agent.controllers.allocations import AllocationRepair
from tulle.agent.controllers.endpoints import EndpointsController
from tulle.agent.controllers.network import (MasqueradeController, NetworkController, block_pods, lease_pods,
                                             leases_in)
from tulle.cluster import leader, netconfig
from tulle.cluster.api import DEFAULT_PREFIX as REGISTRY_PREFIX
from tulle.cluster.api import for_config
from tulle.cluster.blocks import blocks_prefix
from tulle.cluster.lease import DEFAULT_PREFIX, Lease
from tulle.agent.subnet import SubnetManager
from tulle.errors import ConfigError, NotFoundError, TulleError
from tulle.store import Store, StoreError, StoreUnavailable, open_store
from tulle.store.base import KV
from tulle.store.lazy import LazyStore

WATCH_SLICE = 1.0  # seconds a watch may block: bounds how long SIGTERM waits
# Seconds between full converges (kube-proxy's sync period). Each one dumps routes,
# neighbours and FDB (~20 ms of CPU at 50 nodes); store changes never wait for it.
DEFAULT_RECONCILE_INTERVAL = 30.0
TICK_JITTER = 0.2  # each tick comes up to this fraction of the interval early, never late
RETRY_AFTER_FAILURE = 2.0  # seconds: a failed pass is retried this soon, not a whole interval later
STORE_RETRY_MIN = 1.0      # an unreachable store is tried again after this, doubling ...
STORE_RETRY_MAX = 30.0     # ... up to this


class StoreStatus:
    """Say once that the store is unreachable and once that it is back; back off in between."""

    def __init__(self, clock=time.monotonic) -> None:
        self.clock = clock
        self.since: float | None = None
        self.delay = STORE_RETRY_MIN

    def down(self, exc: StoreError) -> float:
        """Note a failure; the seconds to wait before the next try."""
        if self.since is None:
            self.since = self.clock()
            self.delay = STORE_RETRY_MIN
            log.error("store unreachable; keeping the data plane as it is and retrying with back-off",
                      error=exc.msg, retry_max_s=STORE_RETRY_MAX)
        else:
            self.delay = min(self.delay * 2, STORE_RETRY_MAX)
        return self.delay

    def up(self) -> None:
        if self.since is not None:
            log.info("store reachable again", down_s=round(self.clock() - self.since, 1))
            self.since = None


@dataclass
class Options:
    node: str
    store: str
    prefix: str = DEFAULT_PREFIX
    public_ip: str | None = None
    iface: str | None = None
    socket: str = node_defaults.AGENT_SOCKET
    subnet_file: str = node_defaults.SUBNET_ENV
    state_dir: str = node_defaults.AGENT_STATE_DIR
    metrics_addr: str | None = None
    backend: str | None = None
    ip_masq: bool = True
    reconcile_interval: float = DEFAULT_RECONCILE_INTERVAL
    registry_prefix: str = REGISTRY_PREFIX     # where the API objects are (Services, Pods, ...)
    leader_lease: int = leader.DEFAULT_TTL     # seconds a dead leader holds the cluster-wide work
    lease_ttl: int = node_defaults.LEASE_TTL
    renew_margin: float = node_defaults.LEASE_RENEW_MARGIN


# --- pure helpers ---------------------------------------------------------------

def subnet_env(network: ipaddress.IPv4Network, subnet: ipaddress.IPv4Network, mtu: int, ip_masq: bool) -> str:
    """Flannel's subnet.env: FLANNEL_SUBNET is the subnet's first address (the pods' gateway)."""
    first = subnet.network_address + 1
    return (f"FLANNEL_NETWORK={network}\n"
            f"FLANNEL_SUBNET={first}/{subnet.prefixlen}\n"
            f"FLANNEL_MTU={mtu}\n"
            f"FLANNEL_IPMASQ={'true' if ip_masq else 'false'}\n")


def write_atomic(path: str, text: str, mode: int = 0o644) -> None:
    """Readers (the CNI plugin) never see a half-written file."""
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def validate_options(opts: Options) -> None:
    """Everything checkable without the store or the kernel."""
    if not opts.node:
        raise ConfigError("--node: a node name is required")
    if opts.public_ip:
        try:
            ipaddress.IPv4Address(opts.public_ip)
        except ValueError:
            raise ConfigError(f"--public-ip {opts.public_ip!r} is not an IPv4 address") from None
    if opts.metrics_addr:
        metrics.parse_addr(opts.metrics_addr)
    if opts.backend and opts.backend not in base.REGISTRY:
        raise ConfigError(f"--backend: unknown backend {opts.backend!r}; known backends: "
                          f"{', '.join(sorted(base.REGISTRY))}")
    if not opts.reconcile_interval > 0:
        raise ConfigError(f"--reconcile-interval must be positive, got {opts.reconcile_interval}")
    if opts.leader_lease < 2:
        raise ConfigError(f"--leader-lease-duration must be at least 2 seconds, got {opts.leader_lease}")


# --- the underlay -------------------------------------------------------------------

def find_underlay(public_ip: str | None, iface: str | None) -> tuple[ipaddress.IPv4Address, str, int]:
    """(PublicIP, device, MTU) in this netns, from --public-ip and/or --iface (Flannel's rules:
    --iface alone uses its first IPv4 address; --public-ip alone finds the device carrying it;
    neither: the default route's device, else the only device with an IPv4 address)."""
    from tulle.kernel import addrs, links, routes

    if iface:
        link = links.get(iface)
        if link is None:
            raise ConfigError(f"--iface {iface}: no such device in this network namespace")
        v4 = [a for a in addrs.list_on(iface, family=socketlib.AF_INET)]
        if public_ip:
            return ipaddress.IPv4Address(public_ip), iface, link.mtu
        if not v4:
            raise ConfigError(f"--iface {iface} has no IPv4 address (or give --public-ip)")
        return v4[0].ip, iface, link.mtu
    candidates = []
    for link in links.all_links():
        if link.name == "lo":
            continue
        for a in addrs.list_on(link.name, family=socketlib.AF_INET):
            candidates.append((a.ip, link))
    if public_ip:
        ip = ipaddress.IPv4Address(public_ip)
        for addr, link in candidates:
            if addr == ip:
                return ip, link.name, link.mtu
        raise ConfigError(f"--public-ip {public_ip} is not an address of any device in this network "
                          f"namespace (give --iface when it is a NAT address)")
    for r in routes.list_routes(4):
        if r.dst.prefixlen == 0 and r.dev:
            for addr, link in candidates:
                if link.name == r.dev:
                    return addr, link.name, link.mtu
    if len({link.name for _, link in candidates}) == 1:
        addr, link = candidates[0]
        return addr, link.name, link.mtu
    raise ConfigError("cannot tell which device is the underlay: give --public-ip or --iface")


def open_node_store(url: str) -> Store:
    """The store; the agent's own state root (the default SQLite file's home) is made on first use."""
    path = url.removeprefix("sqlite://")
    if path != url and os.path.dirname(os.path.abspath(path)) == node_defaults.STATE_ROOT:
        os.makedirs(node_defaults.STATE_ROOT, mode=0o700, exist_ok=True)
    return open_store(url)


def underlay_networks(dev: str) -> list[ipaddress.IPv4Network]:
    """The IPv4 networks on the underlay device (in this netns)."""
    from tulle.kernel import addrs

    return [a.network for a in addrs.list_on(dev, family=socketlib.AF_INET)]


def check_service_network(cfg: netconfig.NetConfig, dev: str) -> None:
    """ClusterIPs must never shadow the underlay: a Service VIP there would capture node traffic."""
    if cfg.service_network is not None:
        netconfig.check_no_overlap(cfg.service_network, underlay_networks(dev), what=f"underlay ({dev})",
                                   field="ServiceNetwork")


def _leadership_changed(identity: str, leading: bool) -> None:
    metrics.LEADER.labels(identity=identity).set(1 if leading else 0)
    log.info("leader lease acquired: running the cluster-wide controllers" if leading else
             "leader lease lost or released")


def _observe_cni(kind: str, command: str, seconds: float, code: int) -> None:
    """CniServer's per-request hook → the agent's CNI metrics."""
    metrics.observe_cni_request(command, seconds, ok=code == 0)


# --- the agent ----------------------------------------------------------------------

class Agent:
    """One node's agent: startup, the loop, shutdown."""

    def __init__(self, opts: Options, stop: threading.Event | None = None) -> None:
        validate_options(opts)
        self.opts = opts
        self.stop_event = stop or threading.Event()
        self.store: Store | None = None
        self.config: netconfig.NetConfig | None = None
        self.backend: Any = None
        self.info: base.BackendInfo | None = None
        self.subnets: SubnetManager | None = None
        self.leases: diff.LeaseMap = {}
        self.last_pass_ok = False
        self.host: Host | None = None
        self.elector: leader.LeaderElector | None = None
        self._registered = True            # False while our lease is assumed, not yet in the store
        self._store_status = StoreStatus()
        self._saver = lastknown.Saver(opts.state_dir)
        self._closers = contextlib.ExitStack()

    @property
    def own(self) -> Lease | None:
        return self.subnets.lease if self.subnets else None

    # -- startup -----------------------------------------------------------

    def start(self) -> None:
        """Bring the node up; on failure everything made so far is undone and the error raised.

        With the store out of reach the agent starts from its last known state (network
        config, its own lease, the remote leases; tulle.agent.lastknown) and keeps the data
        plane as it was; it registers its lease and catches up once the store answers."""
        opts = self.opts
        with contextlib.ExitStack() as closers:     # kept while running, closed at stop
            with contextlib.ExitStack() as undo:    # only for a failed start
                store = LazyStore(opts.store, open_node_store, retry_after=STORE_RETRY_MIN)
                self.store = store
                closers.callback(store.close)
                cfg, known = self._read_config(store)
                self.config = cfg
                if opts.backend and opts.backend != cfg.backend_type:
                    raise ConfigError(f"--backend {opts.backend} does not match the network config's "
                                      f"backend {cfg.backend_type!r} (at {opts.prefix}/config)")
                public_ip, dev, mtu = find_underlay(opts.public_ip, opts.iface)
                check_service_network(cfg, dev)
                node = base.NodeInfo(name=opts.node, public_ip=public_ip, underlay_dev=dev, underlay_mtu=mtu,
                                     network=cfg.network, state_dir=opts.state_dir, watched=self._watched,
                                     prefix=opts.prefix)
                self.backend = base.create(cfg.backend_type, node, cfg.backend_config)
                log.info("agent starting", backend=cfg.backend_type, network=cfg.network, public_ip=public_ip,
                         iface=dev, store=opts.store, prefix=opts.prefix)
                if opts.metrics_addr:
                    server = metrics.MetricsServer(opts.metrics_addr).start()
                    closers.callback(server.close)
                    log.info("metrics served", addr=opts.metrics_addr)
                self.info = self.backend.prepare()
                undo.callback(self._undo_backend)
                self.subnets = SubnetManager(store, opts.prefix, cfg, opts.node, public_ip, opts.state_dir,
                                             ttl=opts.lease_ttl, renew_margin=opts.renew_margin)
                if known is None:
                    try:
                        lease = self.subnets.acquire(cfg.backend_type, self.info.backend_data)
                        undo.callback(self.subnets.release)
                        metrics.HEALTH.update(lease_held=True)
                    except StoreUnavailable as exc:
                        known = self._known_after_refusal(exc)   # reads answered, a write did not
                        lease = self._assume(known, public_ip)
                else:
                    lease = self._assume(known, public_ip)
                undo.callback(self._undo_activate)
                self.host = self._build_host()
                if known is not None:
                    self.host.seed(known.kvs, known.revision)
                self._activate(lease)
                self._start_cni_server(closers)
                undo.pop_all()
            self._closers = closers.pop_all()

    def _read_config(self, store: Store) -> tuple[netconfig.NetConfig, lastknown.LastKnown | None]:
        """The network config from the store, or (store unreachable) from the last known state."""
        opts = self.opts
        try:
            return netconfig.read_config(store, opts.prefix), None
        except NotFoundError:
            raise NotFoundError(
                f"no network config at {opts.prefix.rstrip('/')}/config in {opts.store}: write one first, "
                f"e.g. tulle agent init-network --store {opts.store} --network 10.244.0.0/16") from None
        except StoreUnavailable as exc:
            known = lastknown.load(opts.state_dir, opts.prefix)
            if known is None or known.own is None:
                raise StoreUnavailable(f"{exc.msg} (and no last known state in {opts.state_dir} to start "
                                       f"from: the first start needs the store)") from None
            self._store_status.down(exc)
            log.warning("starting from the last known state; the lease is registered when the store answers",
                        subnet=known.own.subnet, remote_keys=len(known.kvs), state_dir=opts.state_dir)
            return netconfig.parse(known.config), known

    def _known_after_refusal(self, exc: StoreUnavailable) -> lastknown.LastKnown:
        """The store answered reads but took no write (SQLite's write lock held elsewhere,
        an etcd without quorum): start from the last known state as when it is unreachable,
        rather than fail the start and undo the node's data plane."""
        known = lastknown.load(self.opts.state_dir, self.opts.prefix)
        if known is None or known.own is None:
            raise exc
        self._store_status.down(exc)
        log.warning("the store takes no writes; starting from the last known state, the lease is registered "
                    "when it does", subnet=known.own.subnet, error=exc.msg)
        return known

    def _assume(self, known: lastknown.LastKnown, public_ip: ipaddress.IPv4Address) -> Lease:
        """Hold the lease we last held, not yet confirmed by the store (the loop registers it)."""
        assert self.subnets is not None and self.info is not None and known.own is not None
        lease = Lease(known.own.subnet, public_ip, self.config.backend_type if self.config else "",
                      self.info.backend_data, node=self.opts.node)
        self.subnets.lease = lease
        self._registered = False
        return lease

    def _undo_backend(self) -> None:
        with contextlib.suppress(Exception):
            self.backend.teardown()

    def _undo_activate(self) -> None:
        with contextlib.suppress(Exception):
            os.unlink(self.opts.subnet_file)
        if self.opts.ip_masq:
            with contextlib.suppress(Exception):
                masquerade.remove()

    def _activate(self, lease: Lease) -> None:
        """Our lease is (newly) known: backend start, subnet.env, masquerade."""
        assert self.config is not None and self.info is not None
        self.backend.start(lease)
        write_atomic(self.opts.subnet_file,
                     subnet_env(self.config.network, lease.subnet, self.info.mtu, self.opts.ip_masq))
        log.info("subnet.env written", path=self.opts.subnet_file, subnet=lease.subnet, mtu=self.info.mtu)
        self._ensure_masquerade()

    def _ensure_masquerade(self) -> None:
        """The masquerade controller, run now (startup, a new lease)."""
        if self.host is not None:
            self.host.run(full=True, only=["masquerade"])

    def _start_cni_server(self, closers: contextlib.ExitStack) -> None:
        if importlib.util.find_spec("tulle.agent.api") is None:
            log.info("CNI socket server not available in this build; plugins run standalone")
            return
        try:
            from tulle.agent.api import CniServer  # type: ignore[import-not-found]

            os.makedirs(os.path.dirname(os.path.abspath(self.opts.socket)), exist_ok=True)
            server = CniServer(self.opts.socket, observe=_observe_cni)
            server.start()
        except Exception as exc:  # the data plane matters more than the socket
            log.error("CNI socket server failed to start; plugins will run standalone",
                      socket=self.opts.socket, error=str(exc))
            return
        closers.callback(server.close)
        log.info("CNI socket served", socket=self.opts.socket)

    # -- the controllers -------------------------------------------------------

    def _build_host(self) -> Host:
        """The controllers this agent runs, over one list+watch of the store."""
        assert self.store is not None and self.config is not None
        opts = self.opts
        own = lambda: self.own  # noqa: E731 - the lease the agent holds right now
        bgp = self.config.backend_type == "bgp"
        controllers: list = [
            NetworkController(self.backend, opts.prefix, own),
            MasqueradeController(self.config.network, opts.prefix, own,
                                 block_pods(opts.prefix, opts.node) if bgp else lease_pods,
                                 enabled=opts.ip_masq, extra_prefixes=(blocks_prefix(opts.prefix),) if bgp else ()),
        ]
        api = for_config(self.store, self.config, opts.registry_prefix)   # the cluster's Service ranges
        controllers += [EndpointsController(api), AllocationRepair(api)]
        metrics.declare_controllers(c.name for c in controllers)
        metrics.LEADER.labels(identity=opts.node).set(0)
        self.elector = leader.LeaderElector(self.store, leader.lease_key(opts.registry_prefix), opts.node,
                                            ttl=opts.leader_lease,
                                            on_change=functools.partial(_leadership_changed, opts.node))
        return Host(self.store, controllers, leadership=self.elector, on_error=self._controller_failed,
                    on_run=metrics.observe_controller_run)

    def _controller_failed(self, name: str, exc: BaseException) -> None:
        msg = exc.msg if isinstance(exc, TulleError) else f"{type(exc).__name__}: {exc}"
        metrics.RECONCILE_ERRORS.inc()
        metrics.CONTROLLER_ERRORS.labels(controller=name).inc()
        log.error("controller failed", controller=name, error=msg)

    # -- the loop ------------------------------------------------------------

    def reconcile(self, why: str, full: bool = True) -> bool:
        """Run the controllers: all of them in full (start, tick, re-list: backend.sync reads
        the kernel back and repairs drift), or only those whose keys changed (a store change:
        backend.update writes only the difference). Failures are logged, counted and survived."""
        assert self.host is not None
        metrics.RECONCILE_TOTAL.inc()
        ok = self.host.run(full=full)
        failed = [f"{n}: {o.error}" for n, o in self.host.outcomes.items() if not o.ok]
        metrics.HEALTH.update(last_reconcile_ok=ok, last_error="; ".join(failed),
                              controllers={n: (o.ok, o.error) for n, o in self.host.outcomes.items()})
        if not ok:
            log.error("reconcile failed", why=why, error="; ".join(failed))
        self.last_pass_ok = ok
        return ok

    def _refresh_leases(self, why: str) -> None:
        """The lease map from the host's cache; log what changed."""
        assert self.host is not None
        old, self.leases = self.leases, leases_in(self.host.snapshot(), self.opts.prefix)
        change = diff.diff(old, self.leases)
        for what, items in (("added", change.added), ("removed", change.removed), ("changed", change.changed)):
            for lease in items:
                log.info(f"lease {what}", subnet=lease.subnet, public_ip=lease.public_ip, peer=lease.node or None,
                         why=why)

    def _check_own(self) -> None:
        """Our key vanished or was taken over (or an earlier retake failed): take a lease again."""
        assert self.subnets is not None and self.host is not None
        if not self._registered or self.host.stale:
            return                                  # _online registers it once the store answers
        own = self.own
        if own is not None:
            current = self.leases.get(own.subnet)
            if current is not None and current.public_ip == own.public_ip:
                return
            log.warning("our subnet lease disappeared from the store; acquiring again", subnet=own.subnet)
        else:
            log.warning("no subnet lease held; acquiring again")
        metrics.HEALTH.update(lease_held=False)
        lease = self.subnets.reacquire()
        self.leases[lease.subnet] = lease  # the watch confirms it; do not retake it meanwhile
        metrics.HEALTH.update(lease_held=True)
        if own is not None and lease.subnet != own.subnet:
            log.warning("subnet changed; pods on the old subnet must be recreated",
                        old=own.subnet, new=lease.subnet)
        self._activate(lease)

    def _renew(self) -> None:
        assert self.subnets is not None
        if not self._registered:
            return
        if self.subnets.renew_due():
            before = self.own
            lease = self.subnets.renew()
            if before is None or lease is not before:  # it had expired and was taken again
                self.leases[lease.subnet] = lease
                self._activate(lease)
        left = self.subnets.expires_in()
        metrics.LEASE_EXPIRY.set(0 if left == float("inf") else left)

    def loop(self) -> None:
        assert self.store is not None and self.host is not None
        host = self.host
        try:
            host.relist()
        except StoreError as exc:                   # started from the last known state
            self._store_status.down(exc)
        self._refresh_leases("start")
        self._online()
        host.lead()
        self.reconcile("start")
        self._save()
        next_tick = self._next_tick()
        while not self.stop_event.is_set():
            timeout = max(0.0, min(WATCH_SLICE, next_tick - time.monotonic()))
            try:
                host.poll(timeout)
                self._online()
                host.lead()
                if host.pending:
                    why = "resync" if host.resync else "watch"   # re-listed: in full
                    self._refresh_leases(why)
                    self._check_own()
                    self.reconcile(why, full=host.resync)
                self._save()          # a change throttled by the saver's interval is written later
                self._check_daemons()
                if time.monotonic() >= next_tick:
                    next_tick = self._next_tick()
                    self._check_own()
                    self._renew()
                    self.reconcile("tick")
                if not self.last_pass_ok:
                    next_tick = min(next_tick, time.monotonic() + RETRY_AFTER_FAILURE)
            except StoreError as exc:   # unreachable, or refused: keep the data plane, back off
                msg = exc.msg
                metrics.RECONCILE_ERRORS.inc()
                metrics.HEALTH.update(last_reconcile_ok=False, last_error=msg)
                self.stop_event.wait(self._store_status.down(exc))
            except Exception as exc:  # noqa: BLE001 - no subnet free, a bug: retry, don't die
                msg = exc.msg if isinstance(exc, TulleError) else f"{type(exc).__name__}: {exc}"
                metrics.RECONCILE_ERRORS.inc()
                metrics.HEALTH.update(last_reconcile_ok=False, last_error=msg)
                log.error("agent loop error; retrying", error=msg)
                self.stop_event.wait(RETRY_AFTER_FAILURE)

    def _watched(self, prefix: str) -> list[KV]:
        """The store under `prefix` as the controller host last saw it (for the backend)."""
        return self.host.snapshot().under(prefix) if self.host is not None else []

    def _check_daemons(self) -> None:
        """A helper daemon of the backend died (killed, crashed): sync now, not at the next tick
        (up to --reconcile-interval away). After a failed pass the retry timer does it."""
        assert self.backend is not None
        if self.stop_event.is_set():
            return                  # stopping: a daemon ended with us (lab down TERMs all) stays so
        down = self.backend.daemons_down()
        if down and self.last_pass_ok:
            log.warning("backend daemon exited; starting it again", daemons=",".join(down))
            self.reconcile("daemon exited")

    def _online(self) -> None:
        """The store answered: say so once after an outage, and register a lease we only assumed."""
        assert self.host is not None and self.subnets is not None
        if self.host.stale:
            return
        if not self._registered:
            before = self.own
            try:
                lease = self.subnets.acquire(self.config.backend_type if self.config else "",
                                             self.info.backend_data if self.info else {})
            except StoreUnavailable as exc:     # it reads but takes no writes yet: try again later
                self._store_status.down(exc)
                return
            self._store_status.up()
            self._registered = True
            self.leases[lease.subnet] = lease
            metrics.HEALTH.update(lease_held=True)
            if before is None or lease.subnet != before.subnet:
                self._activate(lease)
            return
        self._store_status.up()

    def _save(self) -> None:
        """Keep the last known state for a start without the store."""
        if self.host is None or self.config is None or self.host.stale or not self._registered:
            return
        try:
            self._saver.save(self.config.to_json(), self.own, self.host.local_keys(), self.host.revision)
        except OSError as exc:
            log.warning("cannot save the last known state", path=self._saver.path, error=str(exc))

    def _next_tick(self) -> float:
        """When the next full converge is due: within the interval, at a random point of its
        last TICK_JITTER, so agents started together do not all dump their tables at once."""
        return time.monotonic() + self.opts.reconcile_interval * (1 - TICK_JITTER * random.random())

    def close(self) -> None:
        """Stop threads and servers; the data plane and the subnet lease stay, the leader
        lease is released."""
        if self.elector is not None:
            with contextlib.suppress(Exception):
                self.elector.release()
        if self.backend is not None:
            with contextlib.suppress(Exception):
                self.backend.stop()
        self._closers.close()  # CNI server, metrics server, store
        log.info("agent stopped")


def run(opts: Options) -> int:
    """`tulle agent run`: start, loop until SIGTERM/SIGINT, stop. Startup errors raise TulleError."""
    log.configure(node=opts.node)
    log.bridge_stdlib()
    stop = threading.Event()
    agent = Agent(opts, stop)

    def on_signal(signum: int, _frame: object) -> None:
        log.info("signal received, stopping", signal=signal.Signals(signum).name)
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        try:
            agent.start()
        except OSError as exc:
            raise TulleError(f"agent failed to start: {exc}") from None
        try:
            agent.loop()
        finally:
            agent.close()
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
    return 0
