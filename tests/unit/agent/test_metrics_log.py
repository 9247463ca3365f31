"""The agent's metrics as a scraper parses them, /metrics and /healthz, structured log lines,
daemon helpers."""

from __future__ import annotations

import io
import json
import socket
import subprocess
import sys

import pytest
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.parser import text_string_to_metric_families

from tests.unit.agent import scrape
from tulle.agent import daemon, log, metrics
from tulle.cni import plugins
from tulle.errors import ConfigError


# family (as the parser names it: a counter's without `_total`) → type, label names
EXPOSED = {
    "tulle_leases": ("gauge", set()),
    "tulle_routes_programmed": ("gauge", set()),
    "tulle_reconcile": ("counter", set()),
    "tulle_reconcile_errors": ("counter", set()),
    "tulle_leases_refused": ("counter", {"backend"}),
    "tulle_lease_expiry_seconds": ("gauge", set()),
    "tulle_cni_requests": ("counter", {"command", "result"}),
    "tulle_cni_request_seconds": ("histogram", {"command"}),
    "tulle_controller_runs": ("counter", {"controller", "mode"}),
    "tulle_controller_errors": ("counter", {"controller"}),
    "tulle_controller_run_seconds": ("histogram", {"controller"}),
    "tulle_leader": ("gauge", {"identity"}),
}


def test_every_metric_keeps_its_name_type_and_labels():
    metrics.observe_cni_request("add", 0.02)
    metrics.observe_controller_run("network", True, 0.003)
    metrics.LEASES_REFUSED.labels(backend="host-gw")
    metrics.CONTROLLER_ERRORS.labels(controller="network")
    metrics.LEADER.labels(identity="n1")
    fams = {n: f for n, f in scrape.families().items() if not n.endswith("_created")}
    assert set(fams) == set(EXPOSED)
    for name, (kind, labels) in EXPOSED.items():
        assert fams[name].type == kind, name
        for sample in fams[name].samples:
            assert set(sample.labels) - {"le"} == labels, sample
    assert [s.name for s in fams["tulle_reconcile"].samples] == ["tulle_reconcile_total"]


def test_cni_observer_counts_and_times_by_command():
    before = scrape.value("tulle_cni_request_seconds_count", command="ADD")
    errors = scrape.value("tulle_cni_requests_total", command="ADD", result="error")
    under_10ms = scrape.value("tulle_cni_request_seconds_bucket", command="ADD", le="0.01")
    metrics.observe_cni_request("add", 0.007, ok=False)
    assert scrape.value("tulle_cni_request_seconds_count", command="ADD") == before + 1
    assert scrape.value("tulle_cni_requests_total", command="ADD", result="error") == errors + 1
    assert scrape.value("tulle_cni_request_seconds_bucket", command="ADD", le="0.01") == under_10ms + 1
    bounds = [s.labels["le"] for s in scrape.families()["tulle_cni_request_seconds"].samples
              if s.name.endswith("_bucket") and s.labels["command"] == "ADD"]
    assert bounds == [*(str(b) for b in metrics.CNI_BUCKETS), "+Inf"]   # the buckets dashboards know


def test_controller_runs_by_mode_with_millisecond_buckets():
    before = {m: scrape.value("tulle_controller_runs_total", controller="t", mode=m) for m in ("full", "incremental")}
    metrics.declare_controllers(["t"])
    assert scrape.value("tulle_controller_errors_total", controller="t") == 0 and \
        {"controller": "t"} in [s.labels for s in scrape.families()["tulle_controller_errors"].samples]
    metrics.observe_controller_run("t", False, 0.0015)
    metrics.observe_controller_run("t", True, 4.0)
    for mode in ("full", "incremental"):
        assert scrape.value("tulle_controller_runs_total", controller="t", mode=mode) == before[mode] + 1
    assert scrape.value("tulle_controller_run_seconds_bucket", controller="t", le="0.001") == 0
    assert scrape.value("tulle_controller_run_seconds_bucket", controller="t", le="0.0025") == 1
    assert scrape.value("tulle_controller_run_seconds_bucket", controller="t", le="5.0") == 2
    assert metrics.CONTROLLER_BUCKETS[0] == 0.001 and metrics.CONTROLLER_BUCKETS[-1] == 10.0


def get(path: str, registry: CollectorRegistry, health: metrics.Health,
        headers: str = "") -> tuple[int, dict[str, str], bytes]:
    """One GET answered by the server's handler over a socketpair (no port, no netns)."""
    client, server = socket.socketpair()
    with client, server:
        client.sendall(f"GET {path} HTTP/1.0\r\n{headers}\r\n".encode())
        metrics.handler_for(registry, health)(server, ("test", 0), None)
        server.shutdown(socket.SHUT_WR)
        raw = client.makefile("rb").read()
    head, _, body = raw.partition(b"\r\n\r\n")
    status, *lines = head.decode().split("\r\n")
    return int(status.split()[1]), dict(line.split(": ", 1) for line in lines), body


def test_metrics_endpoint_is_prometheus_clients_exposition():
    registry = CollectorRegistry()
    Counter("t_total", "A counter.", ["command"], registry=registry).labels(command='we"ird\n').inc(2)
    code, headers, body = get("/metrics", registry, metrics.Health())
    assert code == 200 and headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    [family] = [f for f in text_string_to_metric_families(body.decode()) if f.name == "t"]
    assert [(s.name, s.labels, s.value) for s in family.samples] == [("t_total", {"command": 'we"ird\n'}, 2.0)]
    code, headers, body = get("/metrics", registry, metrics.Health(),
                              "Accept: application/openmetrics-text; version=1.0.0\r\n")
    assert code == 200 and headers["Content-Type"].startswith("application/openmetrics-text")
    assert body.endswith(b"# EOF\n")


def test_healthz_is_unchanged_and_verbose_lists_each_controller():
    health = metrics.Health()
    code, headers, body = get("/healthz", CollectorRegistry(), health)
    assert (code, body) == (503, b"no subnet lease held\n") and headers["Content-Type"].startswith("text/plain")
    health.update(lease_held=True, last_reconcile_ok=False, last_error="endpoints: Conflict",
                  controllers={"network": (True, ""), "endpoints": (False, "Conflict")})
    code, _, body = get("/healthz", CollectorRegistry(), health)
    assert (code, body) == (503, b"last reconcile failed: endpoints: Conflict\n")
    code, _, body = get("/healthz?verbose", CollectorRegistry(), health)
    assert code == 503 and body.decode().splitlines() == [
        "[+]lease ok", "[-]reconcile failed: endpoints: Conflict",
        "[-]controller/endpoints failed: Conflict", "[+]controller/network ok", "healthz check failed"]
    health.update(last_reconcile_ok=True, controllers={"network": (True, "")})
    assert get("/healthz", CollectorRegistry(), health)[::2] == (200, b"ok\n")
    code, _, body = get("/healthz?verbose=1", CollectorRegistry(), health)
    assert code == 200 and body.decode().splitlines()[-2:] == ["[+]controller/network ok", "healthz check passed"]
    code, _, body = get("/nope", CollectorRegistry(), health)
    assert code == 404 and b"/metrics" in body


def test_cni_executables_never_import_prometheus_client():
    """The plugin executables (entry, forward, every plugin module loaded standalone) stay off
    prometheus_client and the agent. sys.modules, not -X importtime: modules loaded through
    importlib.import_module (as plugins.load does) are missing from importtime's report."""
    code = ("import sys\nfrom tulle.cni import entry, forward, plugins\nentry.light_pyroute2()\n"
            "for t in plugins.PLUGINS: plugins.load(t)\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'prometheus_client'"
            " or m.startswith('tulle.agent')))\n"
            "print(len([m for m in sys.modules if m.startswith('tulle.cni.plugins.')]))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    heavy, loaded = proc.stdout.splitlines()
    assert heavy == "[]" and int(loaded) >= len(plugins.PLUGINS)


def test_health():
    h = metrics.Health()
    assert h.status() == (False, "no subnet lease held")
    h.update(lease_held=True)
    assert not h.status()[0] and "not run yet" in h.status()[1]
    h.update(last_reconcile_ok=False, last_error="boom")
    assert h.status() == (False, "last reconcile failed: boom")
    h.update(last_reconcile_ok=True)
    assert h.status() == (True, "ok")


@pytest.mark.parametrize("addr", ["nohost", ":9109", "198.51.100.1:0", "198.51.100.1:http", "example.com:80"])
def test_bad_metrics_addr(addr):
    with pytest.raises(ConfigError, match="--metrics-addr"):
        metrics.parse_addr(addr)


def test_metrics_addr_forms():
    assert metrics.parse_addr("198.51.100.11:9109") == ("198.51.100.11", 9109)
    assert metrics.parse_addr("[::1]:9109") == ("::1", 9109)


def test_log_lines_are_json_with_context():
    buf = io.StringIO()
    log.configure(buf, node="n1")
    try:
        log.info("route added", dst="10.244.1.0/24", n=3)
    finally:
        log.configure()
    line = json.loads(buf.getvalue())
    assert line["level"] == "info" and line["msg"] == "route added" and line["node"] == "n1"
    assert line["dst"] == "10.244.1.0/24" and line["n"] == 3 and line["ts"].endswith("Z")


def test_subnet_env_is_flannels():
    import ipaddress

    text = daemon.subnet_env(ipaddress.IPv4Network("10.244.0.0/16"), ipaddress.IPv4Network("10.244.1.0/24"),
                             1450, True)
    assert text == ("FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24\n"
                    "FLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n")


@pytest.mark.parametrize("changes, message", [
    ({"public_ip": "198.51.100.300"}, "--public-ip"),
    ({"metrics_addr": "x"}, "--metrics-addr"),
    ({"backend": "geneve"}, "--backend: unknown backend 'geneve'"),
    ({"reconcile_interval": 0}, "--reconcile-interval"),
    ({"node": ""}, "--node"),
])
def test_option_validation(changes, message):
    opts = daemon.Options(node="n1", store="sqlite://:memory:")
    for k, v in changes.items():
        setattr(opts, k, v)
    with pytest.raises(ConfigError, match=message):
        daemon.validate_options(opts)


def test_stdlib_logging_is_bridged_to_json_lines():
    import logging

    buf = io.StringIO()
    log.configure(buf, node="n1")
    try:
        log.bridge_stdlib()
        log.bridge_stdlib()  # idempotent
        logging.getLogger("tulle.agent.api").warning("socket %s busy", "/run/x.sock")
    finally:
        log.unbridge_stdlib()
        log.configure()
    lines = [json.loads(l) for l in buf.getvalue().splitlines()]
    assert lines == [{"ts": lines[0]["ts"], "level": "warning", "msg": "socket /run/x.sock busy", "node": "n1",
                      "logger": "tulle.agent.api"}]
