"""Prometheus metrics and the health endpoint of the node agent.

The metrics are prometheus_client objects in the agent's own `REGISTRY`, a
private CollectorRegistry rather than the library's process-wide default: a
test, or several agents in one process, never meets "duplicated timeseries"
from another user of the default registry, and /metrics shows only tulle's
series. They are module-level so that backends, controllers and the CNI socket
server count without being handed anything (agents sharing a process share
them; `tulle_leader` is per identity):

  tulle_leases                       gauge    remote leases this node knows
  tulle_routes_programmed            gauge    routes a route backend owns in the kernel
  tulle_reconcile_total              counter  reconcile passes (store change or tick)
  tulle_reconcile_errors_total       counter  failed controller runs and agent loop errors
  tulle_leases_refused_total         counter  remote leases a backend could not serve (labels: backend)
  tulle_lease_expiry_seconds         gauge    seconds until our lease expires (0: reservation)
  tulle_cni_requests_total           counter  CNI requests served (labels: command, result)
  tulle_cni_request_seconds          histogram of CNI request latency (labels: command)
  tulle_controller_runs_total        counter  controller runs (labels: controller, mode=full|incremental)
  tulle_controller_errors_total      counter  controller runs that failed (labels: controller)
  tulle_controller_run_seconds       histogram of one controller run, 1 ms … 10 s (labels: controller)
  tulle_leader                       gauge    1 while this agent holds the leader lease (labels: identity)

The hooks: the CNI server reports a request with `observe_cni_request`, the
controller host a run with `observe_controller_run`.

GET /metrics serves prometheus_client's exposition (the format and content type
it negotiates from Accept, gzip when asked). GET /healthz answers 200 "ok" when
the lease is held and the last reconcile succeeded, else 503 with the reason;
`/healthz?verbose` lists every check, each controller's last outcome among
them, as Kubernetes' `/healthz?verbose` does.

This module is the agent's only: the CNI plugin executables never import it
(prometheus_client costs ~80 ms to import).
"""

from __future__ import annotations

import contextlib
import http.server
import ipaddress
import socket
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import MetricsHandler

from tulle.errors import ConfigError

CNI_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# 1 ms … 10 s: from an incremental run with nothing to write to a full sync that reads a
# large node's routes, neighbours and FDB back and repairs them.
CONTROLLER_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
ACCEPT_RETRY = 0.1   # seconds before accepting again after a failed accept()
CLOSE_WAIT = 5.0     # seconds close() waits for the serving thread

REGISTRY = CollectorRegistry()

LEASES = Gauge("tulle_leases", "Remote subnet leases known to this node.", registry=REGISTRY)
ROUTES_PROGRAMMED = Gauge("tulle_routes_programmed", "Routes the backend owns in the kernel.", registry=REGISTRY)
RECONCILE_TOTAL = Counter("tulle_reconcile_total", "Reconcile passes (store change or tick).", registry=REGISTRY)
RECONCILE_ERRORS = Counter("tulle_reconcile_errors_total", "Reconcile passes that failed.", registry=REGISTRY)
LEASES_REFUSED = Counter("tulle_leases_refused_total",
                         "Remote leases the backend refused (e.g. host-gw peer not L2 adjacent).",
                         ["backend"], registry=REGISTRY)
LEASE_EXPIRY = Gauge("tulle_lease_expiry_seconds", "Seconds until this node's lease expires (0 for a reservation).",
                     registry=REGISTRY)
CNI_REQUESTS = Counter("tulle_cni_requests_total", "CNI requests served by the agent socket.",
                       ["command", "result"], registry=REGISTRY)
CNI_SECONDS = Histogram("tulle_cni_request_seconds", "Latency of CNI requests served by the agent.",
                        ["command"], buckets=CNI_BUCKETS, registry=REGISTRY)
CONTROLLER_RUNS = Counter("tulle_controller_runs_total", "Controller runs, full (resync) or incremental.",
                          ["controller", "mode"], registry=REGISTRY)
CONTROLLER_ERRORS = Counter("tulle_controller_errors_total", "Controller runs that failed.",
                            ["controller"], registry=REGISTRY)
CONTROLLER_SECONDS = Histogram("tulle_controller_run_seconds", "Duration of one controller run (plan + apply).",
                               ["controller"], buckets=CONTROLLER_BUCKETS, registry=REGISTRY)
LEADER = Gauge("tulle_leader", "1 while this agent holds the leader lease.", ["identity"], registry=REGISTRY)


def observe_cni_request(command: str, seconds: float, ok: bool = True) -> None:
    """Count one CNI request (ADD/DEL/CHECK/...) and its latency; for the CNI socket server."""
    command = command.upper()
    CNI_REQUESTS.labels(command=command, result="ok" if ok else "error").inc()
    CNI_SECONDS.labels(command=command).observe(seconds)


def observe_controller_run(name: str, full: bool, seconds: float) -> None:
    """Count one controller run and its duration; the controller host's `on_run` hook."""
    CONTROLLER_RUNS.labels(controller=name, mode="full" if full else "incremental").inc()
    CONTROLLER_SECONDS.labels(controller=name).observe(seconds)


def declare_controllers(names: Iterable[str]) -> None:
    """Export every controller's series at 0 from the start: a counter that appears only at
    its first increment hides that increment from rate() and increase()."""
    for name in names:
        for mode in ("full", "incremental"):
            CONTROLLER_RUNS.labels(controller=name, mode=mode)
        CONTROLLER_ERRORS.labels(controller=name)
        CONTROLLER_SECONDS.labels(controller=name)


# --- health -------------------------------------------------------------------

@dataclass
class Health:
    """What /healthz reports; the daemon updates it."""

    lease_held: bool = False
    last_reconcile_ok: bool = False
    last_error: str = ""
    controllers: dict[str, tuple[bool, str]] = field(default_factory=dict)  # name → (ok, error) of its last run
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def update(self, **changes: object) -> None:
        with self._lock:
            for k, v in changes.items():
                setattr(self, k, v)

    def status(self) -> tuple[bool, str]:
        with self._lock:
            return self._status()

    def verbose(self) -> tuple[bool, str]:
        """The status and Kubernetes' verbose report: `[+]name ok` or `[-]name failed: why` per
        check (the lease, the last reconcile, each controller's last run), then the verdict."""
        with self._lock:
            ok, _ = self._status()
            checks = [("lease", self.lease_held, "no subnet lease held"),
                      ("reconcile", self.last_reconcile_ok, self.last_error or "not run yet")]
            checks += [(f"controller/{name}", c_ok, error)
                       for name, (c_ok, error) in sorted(self.controllers.items())]
        lines = [f"[+]{name} ok" if c_ok else f"[-]{name} failed: {why}" for name, c_ok, why in checks]
        lines.append("healthz check passed" if ok else "healthz check failed")
        return ok, "\n".join(lines) + "\n"

    def _status(self) -> tuple[bool, str]:
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


class _Handler(MetricsHandler):
    """/metrics is prometheus_client's own handler; /healthz and the 404 are ours."""

    registry: CollectorRegistry = REGISTRY
    health: Health = HEALTH

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        url = urllib.parse.urlsplit(self.path)
        if url.path == "/metrics":
            super().do_GET()
        elif url.path == "/healthz":
            if "verbose" in urllib.parse.parse_qs(url.query, keep_blank_values=True):
                ok, body = self.health.verbose()
            else:
                ok, reason = self.health.status()
                body = reason + "\n"
            self._reply(200 if ok else 503, body)
        else:
            self._reply(404, "not found: try /metrics or /healthz\n")

    def _reply(self, code: int, body: str) -> None:
        data = body.encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def handler_for(registry: CollectorRegistry, health: Health) -> type[_Handler]:
    """A request handler serving `registry` and `health` (MetricsHandler.factory, with health)."""
    return type("Handler", (_Handler,), {"registry": registry, "health": health})


class MetricsServer:
    """http.server on its own daemon thread; `close()` stops it and frees the port.

    The thread blocks in accept() (no timeout): an idle agent has no wake-ups for
    metrics — prometheus_client's own start_http_server polls twice a second, so
    only its handler is used. close() shuts the listening socket down, which makes
    that accept() fail at once (Linux), and the thread ends; each request is served
    on a thread of its own (ThreadingHTTPServer's process_request). The socket is
    bound by the constructor, so in the network namespace of the calling thread.
    """

    def __init__(self, addr: str, registry: CollectorRegistry = REGISTRY, health: Health = HEALTH) -> None:
        host, port = parse_addr(addr)
        cls = http.server.ThreadingHTTPServer
        if ":" in host:
            cls = type("V6Server", (http.server.ThreadingHTTPServer,), {"address_family": socket.AF_INET6})
        try:
            self._server = cls((host, port), handler_for(registry, health))
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
