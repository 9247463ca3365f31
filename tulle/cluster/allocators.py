"""ClusterIPs and NodePorts: unique cluster-wide, claimed in the store.

Each allocated value is one key, `<prefix>/ranges/serviceips/<ip>` or
`<prefix>/ranges/servicenodeports/<port>`, created with create-if-absent: two
creators racing for the same value (other processes, other nodes) can never both
win, whatever the store. The value names the owner (namespace, name, uid), so the
repair controller can release claims whose Service is gone (a creator that died
between claiming and writing the Service) — the API server's allocator + repair
loop, without a bitmap to keep consistent.

A Service creation claims first and writes the Service second; a failed write
releases what it claimed.
"""

from __future__ import annotations

import ipaddress
import json
import random
from dataclasses import dataclass
from typing import Iterator

from tulle.cluster import errors
from tulle.store.base import Store

DEFAULT_SERVICE_NETWORK = ipaddress.IPv4Network("10.96.0.0/12")
DEFAULT_NODE_PORTS = range(30000, 32768)
RANDOM_TRIES = 64          # random picks before falling back to a scan from a random start


@dataclass(frozen=True)
class Owner:
    namespace: str
    name: str
    uid: str

    def encode(self) -> str:
        return json.dumps({"namespace": self.namespace, "name": self.name, "uid": self.uid}, sort_keys=True)

    @classmethod
    def decode(cls, raw: bytes) -> "Owner | None":
        try:
            body = json.loads(raw)
            return cls(str(body["namespace"]), str(body["name"]), str(body["uid"]))
        except (ValueError, KeyError, TypeError):
            return None


def parse_port_range(text: str) -> range:
    """`30000-32767` (kube-apiserver's --service-node-port-range) → range(30000, 32768)."""
    lo, sep, hi = str(text).partition("-")
    try:
        start, end = int(lo), int(hi if sep else lo)
    except ValueError:
        raise errors.BadRequest(f"invalid node port range {text!r}: expected FIRST-LAST") from None
    if not 1 <= start <= end <= 65535:
        raise errors.BadRequest(f"invalid node port range {text!r}: ports must be 1-65535, first <= last")
    return range(start, end + 1)


def _spread(values: range, rng: random.Random) -> Iterator[int]:
    """Random picks first (cheap when the range is sparse), then every value once."""
    for _ in range(min(RANDOM_TRIES, len(values))):
        yield values[rng.randrange(len(values))]
    start = rng.randrange(len(values))
    for i in range(len(values)):
        yield values[(start + i) % len(values)]


class _Claims:
    """Values of one kind claimed under one key prefix."""

    def __init__(self, store: Store, prefix: str, rng: random.Random | None = None) -> None:
        self.store, self.prefix = store, prefix.rstrip("/") + "/"
        self.rng = rng or random.Random()

    def key(self, value: object) -> str:
        return f"{self.prefix}{value}"

    def claim(self, value: object, owner: Owner) -> bool:
        """True when `value` is now ours (already ours counts: a retried create)."""
        if self.store.create(self.key(value), owner.encode()) is not None:
            return True
        held = self.store.get(self.key(value))
        return held is not None and Owner.decode(held.value) == owner

    def release(self, value: object, owner: Owner | None = None) -> None:
        """Release `value`; with `owner`, only when it still holds it."""
        kv = self.store.get(self.key(value))
        if kv is None:
            return
        if owner is None or Owner.decode(kv.value) == owner:
            self.store.delete(kv.key, mod_revision=kv.mod_revision)

    def claimed(self) -> dict[str, tuple[Owner | None, int]]:
        """Every claimed value → (its owner, the claim's mod revision)."""
        kvs, _ = self.store.list(self.prefix)
        return {kv.key[len(self.prefix):]: (Owner.decode(kv.value), kv.mod_revision) for kv in kvs}


class ServiceIPs(_Claims):
    """ClusterIPs from the service network (its network and broadcast addresses never)."""

    def __init__(self, store: Store, prefix: str, network: ipaddress.IPv4Network | None = DEFAULT_SERVICE_NETWORK,
                 rng: random.Random | None = None) -> None:
        super().__init__(store, f"{prefix.rstrip('/')}/ranges/serviceips", rng)
        self.network = network

    def _configured(self, owner: Owner, path: str, value: object) -> ipaddress.IPv4Network:
        if self.network is None:
            raise errors.Invalid("Service", owner.name, [errors.invalid(
                path, value, "no ServiceNetwork is configured (the pod Network covers the default 10.96.0.0/12): "
                             "set ServiceNetwork in the network config")])
        return self.network

    def _usable(self) -> range:
        assert self.network is not None
        first = int(self.network.network_address) + 1
        last = int(self.network.broadcast_address) - 1
        return range(first, last + 1)

    def allocate(self, owner: Owner, path: str) -> str:
        self._configured(owner, path, [])
        for n in _spread(self._usable(), self.rng):
            ip = str(ipaddress.IPv4Address(n))
            if self.claim(ip, owner):
                return ip
        raise errors.Invalid("Service", owner.name, [errors.invalid(
            path, [], f"failed to allocate a serviceIP: range is full ({self.network})")])

    def request(self, ip: str, owner: Owner, path: str) -> str:
        """Claim a user-chosen ClusterIP, or Invalid in the API server's words."""
        network = self._configured(owner, path, [ip])
        try:
            addr = ipaddress.IPv4Address(ip)
        except ValueError:
            raise errors.Invalid("Service", owner.name, [errors.invalid(
                path, [ip], "must be a valid IP address")]) from None
        if addr not in network or int(addr) not in self._usable():
            raise errors.Invalid("Service", owner.name, [errors.invalid(
                path, [ip], f"failed to allocate IP {ip}: the provided IP ({ip}) is not in the valid range. "
                            f"The range of valid IPs is {self.network}")])
        if not self.claim(str(addr), owner):
            raise errors.Invalid("Service", owner.name, [errors.invalid(
                path, [ip], f"failed to allocate IP {ip}: provided IP is already allocated")])
        return str(addr)


class NodePorts(_Claims):
    """NodePorts (one claim per port number; a Service may use it for TCP and UDP)."""

    def __init__(self, store: Store, prefix: str, ports: range = DEFAULT_NODE_PORTS,
                 rng: random.Random | None = None) -> None:
        super().__init__(store, f"{prefix.rstrip('/')}/ranges/servicenodeports", rng)
        self.ports = ports

    def allocate(self, owner: Owner, path: str) -> int:
        for port in _spread(self.ports, self.rng):
            if self.claim(port, owner):
                return port
        raise errors.Invalid("Service", owner.name, [errors.invalid(
            path, 0, f"failed to allocate a nodePort: range is full ({self.range_text()})")])

    def request(self, port: int, owner: Owner, path: str) -> int:
        if port not in self.ports:
            raise errors.Invalid("Service", owner.name, [errors.invalid(
                path, port, f"provided port is not in the valid range. The range of valid ports is "
                            f"{self.range_text()}")])
        if not self.claim(port, owner):
            raise errors.Invalid("Service", owner.name, [errors.invalid(
                path, port, "provided port is already allocated")])
        return port

    def range_text(self) -> str:
        return f"{self.ports.start}-{self.ports.stop - 1}"


def service_claims(svc: dict) -> tuple[list[str], list[int]]:
    """The ClusterIPs and NodePorts a stored Service holds."""
    spec = svc.get("spec") or {}
    ips = [ip for ip in (spec.get("clusterIPs") or [spec.get("clusterIP")]) if ip and ip != "None"]
    ports = sorted({p["nodePort"] for p in spec.get("ports") or [] if p.get("nodePort")})
    return ips, ports


def owner_of(obj: dict) -> Owner:
    meta = obj["metadata"]
    return Owner(meta.get("namespace", ""), meta["name"], meta["uid"])
