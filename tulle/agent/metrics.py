"""Prometheus metrics and the health endpoint of the node agent.

The text exposition format (version 0.0.4) is small enough to write by hand,
which keeps the agent free of a client library. Metrics are process-global
(like prometheus_client's default registry) so that backends and the CNI
socket server can count without being handed anything:

  tulle_leases                       gauge    remote leases this node knows
  tulle_routes_programmed            gauge    routes a route backend owns in the kernel
  tulle_reconcile_total              counter  reconcile passes (store change or tick)
  tulle_reconcile_errors_total       counter  passes that failed (labels: stage)
  tulle_leases_refused_total         counter  remote leases a backend could not serve
  tulle_lease_expiry_seconds         gauge    seconds until our lease expires (0: reservation)
  tulle_cni_requests_total           counter  CNI requests served (labels: command, result)
  tulle_cni_request_seconds          histogram of CNI request latency (labels: command)

The CNI server reports a request with `observe_cni_request(command, seconds, ok)`.
GET /healthz answers 200 "ok" when the lease is held and the last reconcile
succeeded, else 503 with the reason; GET /metrics serves the exposition.
"""

from __future__ import annotations

import contextlib
import http.server
import ipaddress
import math
import socket
import threading
import time
from dataclasses import dataclass, field

from tulle.errors import ConfigError

Labels = tuple[tuple[str, str], ...]

DEFAULT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
ACCEPT_RETRY = 0.1   # seconds before accepting again after a failed accept()
CLOSE_WAIT = 5.0     # seconds close() waits for the serving thread


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(labels: Labels, extra: tuple[tuple[str, str], ...] = ()) -> str:
    items = labels + extra
    if not items:
        return ""
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in items) + "}"


def _num(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


def _key(labels: dict[str, str]) -> Labels:
    return tuple(sorted((k, str(v)) for k, v in labels.items()))


class _Metric:
    kind = ""

    def __init__(self, name: str, help_text: str) -> None:
        self.name = name
        self.help = help_text
        self._lock = threading.Lock()

    def header(self) -> list[str]:
        return [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} {self.kind}"]

    def samples(self) -> list[str]:
        raise NotImplementedError


class Counter(_Metric):
    kind = "counter"

    def __init__(self, name: str, help_text: str) -> None:
        super().__init__(name, help_text)
        self._values: dict[Labels, float] = {}

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        with self._lock:
            k = _key(labels)
            self._values[k] = self._values.get(k, 0.0) + amount

    def value(self, **labels: str) -> float:
        return self._values.get(_key(labels), 0.0)

    def samples(self) -> list[str]:
        with self._lock:
            values = dict(self._values) or {(): 0.0}
        return [f"{self.name}{_labels(k)} {_num(v)}" for k, v in sorted(values.items())]


class Gauge(Counter):
    kind = "gauge"

    def set(self, value: float, **labels: str) -> None:
        with self._lock:
            self._values[_key(labels)] = float(value)


class Histogram(_Metric):
    kind = "histogram"

    def __init__(self, name: str, help_text: str, buckets: tuple[float, ...] = DEFAULT_BUCKETS) -> None:
        super().__init__(name, help_text)
        self.buckets = tuple(sorted(buckets))
        self._series: dict[Labels, list[float]] = {}  # per-bucket counts + [sum, count]

    def observe(self, value: float, **labels: str) -> None:
        with self._lock:
            s = self._series.setdefault(_key(labels), [0.0] * (len(self.buckets) + 2))
            for i, bound in enumerate(self.buckets):
                if value <= bound:
                    s[i] += 1
            s[-2] += value
            s[-1] += 1

    def count(self, **labels: str) -> float:
        s = self._series.get(_key(labels))
        return s[-1] if s else 0.0

    def samples(self) -> list[str]:
        with self._lock:
            series = {k: list(v) for k, v in self._series.items()}
        out = []
        for k, s in sorted(series.items()):
            for i, bound in enumerate(self.buckets):
                out.append(f"{self.name}_bucket{_labels(k, (('le', _num(bound)),))} {_num(s[i])}")
            out.append(f"{self.name}_bucket{_labels(k, (('le', '+Inf'),))} {_num(s[-1])}")
            out.append(f"{self.name}_sum{_labels(k)} {_num(s[-2])}")
            out.append(f"{self.name}_count{_labels(k)} {_num(s[-1])}")
        return out


class Registry:
    def __init__(self) -> None:
        self._metrics: list[_Metric] = []

    def _add(self, metric: _Metric) -> _Metric:
        self._metrics.append(metric)
        return metric

    def counter(self, name: str, help_text: str) -> Counter:
        return self._add(Counter(name, help_text))  # type: ignore[return-value]

    def gauge(self, name: str, help_text: str) -> Gauge:
        return self._add(Gauge(name, help_text))  # type: ignore[return-value]

    def histogram(self, name: str, help_text: str, buckets: tuple[float, ...] = DEFAULT_BUCKETS) -> Histogram:
        return self._add(Histogram(name, help_text, buckets))  # type: ignore[return-value]

    def render(self) -> str:
        lines: list[str] = []
        for m in self._metrics:
            lines += m.header() + m.samples()
        return "\n".join(lines) + "\n"


REGISTRY = Registry()
LEASES = REGISTRY.gauge("tulle_leases", "Remote subnet leases known to this node.")
ROUTES_PROGRAMMED = REGISTRY.gauge("tulle_routes_programmed", "Routes the backend owns in the kernel.")
RECONCILE_TOTAL = REGISTRY.counter("tulle_reconcile_total", "Reconcile passes (store change or tick).")
RECONCILE_ERRORS = REGISTRY.counter("tulle_reconcile_errors_total", "Reconcile passes that failed.")
LEASES_REFUSED = REGISTRY.counter("tulle_leases_refused_total",
                                  "Remote leases the backend refused (e.g. host-gw peer not L2 adjacent).")
LEASE_EXPIRY = REGISTRY.gauge("tulle_lease_expiry_seconds",
                              "Seconds until this node's lease expires (0 for a reservation).")
CNI_REQUESTS = REGISTRY.counter("tulle_cni_requests_total", "CNI requests served by the agent socket.")
CNI_SECONDS = REGISTRY.histogram("tulle_cni_request_seconds", "Latency of CNI requests served by the agent.")


def observe_cni_request(command: str, seconds: float, ok: bool = True) -> None:
    """Count one CNI request (ADD/DEL/CHECK/...) and its latency; for the CNI socket server."""
    command = command.upper()
    CNI_REQUESTS.inc(command=command, result="ok" if ok else "error")
    CNI_SECONDS.observe(seconds, command=command)


# --- health -------------------------------------------------------------------

@dataclass
class Health:
    """What /healthz reports; the daemon updates it."""

    lease_held: bool = False
    last_reconcile_ok: bool = False
    last_error: str = ""
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def update(self, **changes: object) -> None:
        with self._lock:
            for k, v in changes.items():
                setattr(self, k, v)

    def status(self) -> tuple[bool, str]:
        with self._lock:
            if not self.lease_held:
                return False, "no subnet lease held"
            if not self.last_reconcile_ok:
                return False, f"last reconcile failed: {self.last_error or 'not run yet'}"
            return True, "ok"


HEALTH = Health()


def parse_addr(addr: str) -> tuple[str, int]:
    """`HOST:PORT` or `[v6]:PORT` → (host, port); ConfigError on anything else."""
    host, sep, port = addr.rpartition(":")
    host = host.strip("[]")
    try:
        if not sep or not host:
            raise ValueError
        ipaddress.ip_address(host) if host != "localhost" else None
        p = int(port)
        if not 0 < p < 65536:
            raise ValueError
    except ValueError:
        raise ConfigError(f"--metrics-addr {addr!r}: expected HOST:PORT with an IP address "
                          f"and a port in 1..65535") from None
    return host, p


class _Handler(http.server.BaseHTTPRequestHandler):
    registry: Registry = REGISTRY
    health: Health = HEALTH

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            self._reply(200, self.registry.render(), "text/plain; version=0.0.4; charset=utf-8")
        elif path == "/healthz":
            ok, reason = self.health.status()
            self._reply(200 if ok else 503, reason + "\n", "text/plain; charset=utf-8")
        else:
            self._reply(404, "not found: try /metrics or /healthz\n", "text/plain; charset=utf-8")

    def _reply(self, code: int, body: str, ctype: str) -> None:
        data = body.encode()
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - silence access logs
        pass


class MetricsServer:
    """http.server on its own daemon thread; `close()` stops it and frees the port.

    The thread blocks in accept() (no timeout): an idle agent has no wake-ups for
    metrics. close() shuts the listening socket down, which makes that accept()
    fail at once (Linux), and the thread ends; each request is served on a thread
    of its own (ThreadingHTTPServer's process_request).
    """

    def __init__(self, addr: str) -> None:
        host, port = parse_addr(addr)
        cls = http.server.ThreadingHTTPServer
        if ":" in host:
            cls = type("V6Server", (http.server.ThreadingHTTPServer,), {"address_family": socket.AF_INET6})
        try:
            self._server = cls((host, port), _Handler)
        except OSError as exc:
            raise ConfigError(f"cannot serve metrics on {addr}: {exc.strerror or exc}") from None
        self._server.daemon_threads = True
        self.address = self._server.server_address
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="tulle-metrics", daemon=True)

    def start(self) -> "MetricsServer":
        self._thread.start()
        return self

    def _serve(self) -> None:
        server = self._server
        while not self._closing.is_set():
            try:
                conn, peer = server.socket.accept()
            except OSError:
                if self._closing.is_set():
                    return                 # close() shut the socket down
                time.sleep(ACCEPT_RETRY)   # out of descriptors, aborted handshake: try again
                continue
            try:
                server.process_request(conn, peer)
            except Exception:  # noqa: BLE001 - as socketserver does: drop that request, keep serving
                server.handle_error(conn, peer)
                server.shutdown_request(conn)

    def close(self) -> None:
        self._closing.set()
        with contextlib.suppress(OSError):   # never listened, or already shut down
            self._server.socket.shutdown(socket.SHUT_RDWR)
        if self._thread.is_alive():
            self._thread.join(CLOSE_WAIT)
        self._server.server_close()
