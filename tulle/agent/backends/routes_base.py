"""The shared route network: a backend that is "one set of kernel routes per remote lease".

A subclass says which routes a lease needs (`routes_for`); this base turns the
complete remote set into the desired route list and writes what routediff.diff
says it lacks against the routes it owns in the kernel, so `sync` is the
reconcile step (a route deleted by hand comes back on the next tick; a route of
a lease that is gone is removed). `update`, the store-change path, diffs the new
desired list against the one the last pass made true instead of dumping the
kernel's routes, so a join costs each node one route write.

Ownership: every route tulle's agent programs carries the route protocol number
ROUTE_PROTO = 250 (`ip route show proto 250`; iproute2 shows it as a number as
it has no name in /etc/iproute2/rt_protos). Only routes with that protocol are
ever removed, so routes made by the kernel, the CNI bridge or an admin are left
alone. 250 is not used by the kernel, iproute2 or the usual routing daemons
(BIRD uses 12, Calico's felix 80, flannel none).
"""

from __future__ import annotations

import ipaddress
from typing import Any, Iterable

from tulle.agent import log, metrics
from tulle.agent.backends import routediff
from tulle.agent.backends.base import BackendInfo, NodeInfo
from tulle.cluster.lease import Lease
from tulle.errors import KernelError, TulleError
from tulle.kernel.routes import Route

ROUTE_PROTO = 250


class Refused(TulleError):
    """A remote lease this backend cannot serve (the message says why)."""


class RouteNetwork:
    """Base of route backends (host-gw)."""

    type_name = ""
    watch_prefixes: tuple[str, ...] = ()
    proto = ROUTE_PROTO

    def __init__(self, node: NodeInfo, config: Any) -> None:
        self.node = node
        self.config = config        # the backend's parsed config (tulle.cluster.backendconf)
        self.own: Lease | None = None
        self._refused: dict[tuple, str] = {}
        self._ignored: set[tuple] = set()
        self._applied: list[Route] | None = None   # what the kernel held after the last sync/update

    # -- what subclasses provide ---------------------------------------------

    def routes_for(self, lease: Lease) -> list[Route]:
        """The routes one remote lease needs; raise Refused when it cannot be served."""
        raise NotImplementedError

    def before_sync(self) -> None:
        """Gather what routes_for needs once per pass (e.g. the connected underlay subnets)."""

    def mtu(self) -> int:
        return self.node.underlay_mtu

    # -- the Backend contract ------------------------------------------------

    def prepare(self) -> BackendInfo:
        return BackendInfo(backend_data={}, mtu=self.mtu())

    def start(self, own: Lease) -> None:
        self.own = own
        self._applied = None   # a new own subnet: the next pass converges fully

    def desired(self, remotes: list[Lease], refresh: bool = True) -> list[Route]:
        """The routes for every remote lease this backend serves; refusals logged once and counted.
        `refresh=False` reuses what before_sync() gathered in the last pass."""
        if refresh:
            self.before_sync()
        out: list[Route] = []
        refused: dict[tuple, str] = {}
        for lease in remotes:
            if self.own is not None and lease.subnet == self.own.subnet:
                continue
            ident = (lease.subnet, lease.public_ip, lease.backend_type)
            if lease.backend_type != self.type_name:
                if ident not in self._ignored:
                    log.warning(f"ignoring a lease of another backend (this network runs {self.type_name})",
                                subnet=lease.subnet, public_ip=lease.public_ip, backend=lease.backend_type)
                    self._ignored.add(ident)
                continue
            try:
                out += self.routes_for(lease)
            except Refused as exc:
                refused[ident] = exc.msg
                if ident not in self._refused:
                    log.error(exc.msg, subnet=lease.subnet, public_ip=lease.public_ip, peer=lease.node or None)
                    metrics.LEASES_REFUSED.labels(backend=self.type_name).inc()
        self._refused = refused
        return out

    def sync(self, remotes: list[Lease]) -> None:
        self._applied = None
        want = self.desired(remotes)
        self._apply(want, routediff.diff(want, routediff.owned(self.proto)))

    def update(self, remotes: list[Lease]) -> None:
        """The same end state as sync(), from the last pass's routes instead of a kernel dump;
        a full sync when there was no good last pass or a route write fails."""
        if self._applied is None:
            self.sync(remotes)
            return
        want = self.desired(remotes, refresh=False)
        todo = routediff.diff(want, self._applied)
        self._applied = None
        try:
            self._apply(want, todo)
        except KernelError as exc:
            log.warning(f"{self.type_name}: incremental update failed, converging fully", error=exc.msg)
            self.sync(remotes)

    def _apply(self, want: list[Route], todo: routediff.RouteDiff) -> None:
        """Write `todo`; `want` is what the kernel holds afterwards (remembered on success)."""
        try:
            routediff.write(todo, self.type_name)
        except routediff.WriteFailed as exc:
            metrics.ROUTES_PROGRAMMED.set(len(want) - exc.unwritten)
            raise
        metrics.ROUTES_PROGRAMMED.set(len(want))
        self._applied = want

    def refused(self) -> dict[tuple, str]:
        """Leases refused in the last pass (ident → reason)."""
        return dict(self._refused)

    def stop(self) -> None:
        """Routes stay: pods keep talking while the agent restarts."""

    def daemons_down(self) -> list[str]:
        return []                     # the kernel routes on its own

    def teardown(self) -> None:
        self._applied = None
        routediff.write(routediff.diff([], routediff.owned(self.proto)), self.type_name)
        metrics.ROUTES_PROGRAMMED.set(0)


def connected_networks(addresses: Iterable[ipaddress.IPv4Interface | ipaddress.IPv6Interface]
                       ) -> list[ipaddress.IPv4Network]:
    """The IPv4 subnets these interface addresses make directly reachable."""
    return [a.network for a in addresses if a.version == 4]
