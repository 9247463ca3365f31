"""The backend contract: how a node's pods reach the pods of every other node.

A backend is built by its factory from its parsed config (the network config's
"Backend" object read by tulle.cluster.backendconf), then:

  prepare()        before the lease is taken: create devices whose identity goes
                   into the lease (a VTEP's MAC) and return BackendInfo
  start(own)       the lease is ours: finish local setup (VTEP address, TUN loop)
  sync(remotes)    make the kernel hold exactly what these remote leases need
                   (routes, neighbours, FDB entries) and nothing for leases that
                   are gone, reading the kernel back to repair any drift.
                   Idempotent: the agent calls it at start and on every
                   reconcile tick, which is what restores a deleted route or
                   device within the reconcile interval.
  update(remotes)  the same end state after a store change, reached by writing
                   only what differs from the last sync/update and reading
                   nothing back (a join touches one lease: each node makes a few
                   netlink writes, not a dump of every table); a backend falls
                   back to sync when it has no good last pass or a write fails.
                   A backend with nothing to diff may simply call sync.
  stop()           agent shutdown: stop threads; leave the data plane in place so
                   pods keep talking while the agent restarts (as Flannel does)
  teardown()       the node leaves the network: remove everything the backend made

`watch_prefixes` names more key prefixes (relative to the agent's prefix, e.g.
("blocks/",); empty for most): the agent then also calls update() when keys under
them change.
Where a node's pods are, for the masquerade rules, is the masquerade controller's
business (the lease, or in bgp mode the blocks in the store snapshot), not the backend's.

Backends come from the explicit REGISTRY below (name -> the module whose `factory`
builds it); an unknown name is a ConfigError listing the known ones.
"""

from __future__ import annotations

import importlib
import ipaddress
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Protocol

from tulle.agent import log
from tulle.cluster import backendconf
from tulle.cluster.backendconf import BackendConfig
from tulle.cluster.lease import DEFAULT_PREFIX, Lease
from tulle.errors import ConfigError
from tulle.store.base import KV


@dataclass(frozen=True)
class NodeInfo:
    """What a backend knows of the node it runs on."""

    name: str
    public_ip: ipaddress.IPv4Address     # underlay address other nodes reach us at
    underlay_dev: str                    # the device carrying public_ip
    underlay_mtu: int
    network: ipaddress.IPv4Network       # the cluster (pod) CIDR
    state_dir: str                       # private scratch space of this agent
    # The store as the agent sees it, keys under a prefix: its controller host's snapshot —
    # current while the store answers, the last known state when it does not (bgp reads
    # its blocks there, so a start without the store still brings BIRD up).
    watched: Callable[[str], list[KV]] | None = field(default=None, compare=False, repr=False)
    prefix: str = DEFAULT_PREFIX         # the agent's key prefix in the store


@dataclass(frozen=True)
class BackendInfo:
    backend_data: dict[str, Any] = field(default_factory=dict)  # published in our lease
    mtu: int = 1500                                            # pod MTU on this backend


class SkipWarnings:
    """Warn once per peer and reason a backend cannot serve, not on every reconcile tick;
    a peer warns again when its reason changes or after it was served in between."""

    def __init__(self, msg: str, key: str) -> None:
        self.msg, self.key = msg, key
        self._last: dict[str, str] = {}

    def report(self, reasons: dict[str, str]) -> None:
        for who, reason in reasons.items():
            if self._last.get(who) != reason:
                log.warning(self.msg, **{self.key: who}, reason=reason)
        self._last = dict(reasons)

    def leases(self, skipped: list[tuple[Lease, str]]) -> None:
        """report() for skipped leases, keyed by their subnet."""
        self.report({str(lease.subnet): reason for lease, reason in skipped})


class Backend(Protocol):
    type_name: str
    watch_prefixes: tuple[str, ...]     # more store keys to follow, relative to the agent's prefix

    def prepare(self) -> BackendInfo: ...

    def start(self, own: Lease) -> None: ...

    def sync(self, remotes: list[Lease]) -> None: ...

    def update(self, remotes: list[Lease]) -> None: ...

    def stop(self) -> None: ...

    def teardown(self) -> None: ...

    def daemons_down(self) -> list[str]:
        """The helper processes it runs (BIRD, the udp forwarder) that died since it started
        them: the agent checks every loop pass and syncs at once, which starts them again."""
        ...


Factory = Callable[[NodeInfo, Any], Backend]
"""factory(node, config) where config is the backend's own type from tulle.cluster.backendconf."""

REGISTRY: dict[str, str] = {
    "host-gw": "tulle.agent.backends.host_gw",
    "vxlan": "tulle.agent.backends.vxlan.backend",
    "udp": "tulle.agent.backends.udp",
    "bgp": "tulle.agent.backends.bgp.backend",
}


def create(type_name: str, node: NodeInfo, config: BackendConfig | Mapping[str, Any]) -> Backend:
    """The backend named `type_name`, from its parsed config (NetConfig.backend_config) or a
    "Backend" object, which is parsed here (with the node's network for bgp's pools)."""
    if type_name not in REGISTRY:
        raise ConfigError(f"unknown backend {type_name!r}; known backends: {', '.join(sorted(REGISTRY))}")
    if isinstance(config, Mapping):
        config = backendconf.parse({"Type": type_name, **config}, node.network)
    if config.TYPE != type_name:
        raise ConfigError(f"backend {type_name!r} given the config of backend {config.TYPE!r}")
    module = importlib.import_module(REGISTRY[type_name])
    return module.factory(node, config)
