"""`tulle lab probe FROM TO[:PORT[/PROTO]]`: from inside a pod, who answers at TO?

TO is an IPv4 address, a pod, or a Service (`name` in FROM's namespace, or
`namespace/name`); a name that is both a Service and a pod means the Service, as
cluster DNS would answer. A Service resolves to its ClusterIP and, for a named or
numbered port, to that service port. PORT may be a number or a port name (the
pod's containerPort or the Service's port of that name); without a port the probe
is an ICMP echo. The probe runs on a thread entered into FROM's netns, so it
takes the pod's own routes, like a process in the pod would.

Exit codes (the CLI): 0 answered, 1 no answer (refused, timed out, no route), 2 bad input.
"""

from __future__ import annotations

import errno
import ipaddress
import re
import socket
import time
from dataclasses import asdict, dataclass
from typing import Any

from tulle.errors import ConfigError
from tulle.kernel import netns
from tulle.lab import checks, pods, podspec
from tulle.lab.session import Session

DEFAULT_TIMEOUT = 2.0
_TARGET = re.compile(r"^(?P<host>[^:]+)(?::(?P<port>[^:/]+)(?:/(?P<proto>[A-Za-z]+))?)?$")
_REPLY = re.compile(r"^(?P<pod>\S+/\S+) \(container (?P<container>[^)]+)\)$")


@dataclass(frozen=True)
class Target:
    host: str                       # an address, or [namespace/]name
    port: str | None = None         # a number or a port name; None: ICMP
    protocol: str | None = None     # TCP | UDP when given


@dataclass(frozen=True)
class Route:
    """A resolved probe: where from, to which address and port, and what TO was."""

    source: str                     # namespace/name of FROM
    netns_path: str
    address: str
    port: int | None
    protocol: str                   # ICMP | TCP | UDP
    via: str                        # "pod default/web-1", "service default/web", "address"


@dataclass
class Result:
    source: str
    target: str
    address: str
    port: int | None
    protocol: str
    via: str
    answered: bool
    reply: str = ""                 # what answered: the server's line, or the pod an echo came from
    error: str = ""                 # why not: refused | timed out | no route to host | ...
    seconds: float = 0.0

    @property
    def answering_pod(self) -> str:
        m = _REPLY.match(self.reply)
        return m.group("pod") if m else ""

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "pod": self.answering_pod}

    def text(self) -> str:
        where = self.address + (f":{self.port}/{self.protocol}" if self.port else " (ICMP echo)")
        if self.answered:
            return self.reply or f"{where}: connected, no reply"
        return f"no answer from {where}: {self.error}"


def parse_target(text: str) -> Target:
    m = _TARGET.match(text.strip())
    if not m:
        raise ConfigError(f"bad probe target {text!r}: use ADDRESS|[NAMESPACE/]NAME[:PORT[/tcp|udp]]")
    proto = m.group("proto")
    if proto and proto.upper() not in podspec.PROTOCOLS:
        raise ConfigError(f"bad probe target {text!r}: protocol {proto!r} is not tcp or udp")
    port = m.group("port")
    if port is not None and port.isdigit() and not 1 <= int(port) <= 65535:
        raise ConfigError(f"bad probe target {text!r}: port {port} is not in 1..65535")
    return Target(m.group("host"), port, proto.upper() if proto else None)


def _is_address(host: str) -> bool:
    try:
        ipaddress.IPv4Address(host)
    except ValueError:
        return False
    return True


def resolve(s: Session, source: str, target: Target, namespace: str | None = None) -> Route:
    """Where the probe goes; TulleError (bad input) when FROM, TO or the port cannot be resolved."""
    src = pods.resolve(s.st, source, namespace)
    src_ns = podspec.split_ref(src)[0]
    path = pods.netns_path(s.st, src)
    if _is_address(target.host):
        if target.port is not None and not target.port.isdigit():
            raise ConfigError(f"port {target.port!r}: a named port needs a pod or a service, not an address")
        return Route(src, path, target.host, _number(target.port), _protocol(target), "address")
    ns, name = podspec.split_ref(target.host, src_ns)
    svc = s.client.find("services", name, ns)
    if svc is not None:
        return _to_service(src, path, svc, target)
    k = pods.resolve(s.st, target.host, src_ns)
    pod = s.client.find("pods", name, ns) or {}
    port, proto = _pod_port(pod, target, k)
    return Route(src, path, s.st.pods[k].ip, port, proto, f"pod {k}")


def _number(port: str | None) -> int | None:
    return int(port) if port is not None else None


def _protocol(target: Target) -> str:
    return "ICMP" if target.port is None else (target.protocol or "TCP")


def _to_service(src: str, path: str, svc: dict, target: Target) -> Route:
    md, spec = svc["metadata"], svc.get("spec") or {}
    ref = f"{md['namespace']}/{md['name']}"
    ip = spec.get("clusterIP")
    if not ip or ip == "None":
        raise ConfigError(f"service {ref} has no ClusterIP ({'headless' if ip == 'None' else spec.get('type')}): "
                          f"probe one of its pods")
    if target.port is None:
        return Route(src, path, ip, None, "ICMP", f"service {ref}")
    for p in spec.get("ports") or []:
        proto = str(p.get("protocol") or "TCP")
        named = p.get("name") == target.port
        numbered = target.port.isdigit() and int(p.get("port", 0)) == int(target.port)
        if (named or numbered) and target.protocol in (None, proto):
            return Route(src, path, ip, int(p["port"]), proto, f"service {ref}")
    if target.port.isdigit():        # a port the Service does not list: try it anyway (expect no answer)
        return Route(src, path, ip, int(target.port), _protocol(target), f"service {ref}")
    raise ConfigError(f"service {ref} has no port named {target.port!r}")


def _pod_port(pod: dict, target: Target, k: str) -> tuple[int | None, str]:
    if target.port is None or target.port.isdigit():
        return _number(target.port), _protocol(target)
    for c in podspec.containers_of(pod):
        for p in c.ports:
            if p.name == target.port and (target.protocol in (None, p.protocol)):
                return p.port, p.protocol
    raise ConfigError(f"pod {k} has no port named {target.port!r}")


# --- the probe itself (inside FROM's netns) ------------------------------------------------

_WHY = {errno.ECONNREFUSED: "refused", errno.EHOSTUNREACH: "no route to host",
        errno.ENETUNREACH: "network is unreachable", errno.ETIMEDOUT: "timed out"}


def _why(exc: OSError) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    return _WHY.get(exc.errno or 0, exc.strerror or str(exc))


def _tcp(address: str, port: int, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    with socket.create_connection((address, port), timeout=timeout) as sock:
        data = b""
        while not data.endswith(b"\n") and len(data) < 4096:
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                more = sock.recv(4096)
            except TimeoutError:
                break
            if not more:
                break
            data += more
        return data.decode(errors="replace").strip()


def _udp(address: str, port: int, timeout: float) -> str:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.connect((address, port))
        sock.send(b"probe\n")
        return sock.recv(4096).decode(errors="replace").strip()


def run(route: Route, target: str, timeout: float = DEFAULT_TIMEOUT, owners: dict[str, str] | None = None) -> Result:
    """Probe once; never raises for what the network does. `owners` maps pod IPs to pods, to
    name who answered an ICMP echo."""
    result = Result(route.source, target, route.address, route.port, route.protocol, route.via, False)
    start = time.monotonic()
    if route.protocol == "ICMP":
        proc = checks.ping_in(route.netns_path, route.address, timeout=timeout)
        result.answered = proc.returncode == 0
        if result.answered:
            who = (owners or {}).get(route.address)
            result.reply = f"{who} answered the ICMP echo" if who else f"{route.address} answered the ICMP echo"
        else:
            out = proc.stdout + proc.stderr
            result.error = "no route to host" if "Unreachable" in out or "unreachable" in out else "timed out"
    else:
        probe = _tcp if route.protocol == "TCP" else _udp
        try:
            result.reply = netns.run_in(route.netns_path, probe, route.address, route.port, timeout)
            result.answered = True
        except OSError as exc:
            result.error = _why(exc)
    result.seconds = round(time.monotonic() - start, 4)
    return result
