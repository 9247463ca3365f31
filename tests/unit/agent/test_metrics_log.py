"""Hand-written Prometheus exposition, health, structured log lines, daemon helpers."""

from __future__ import annotations

import io
import json

import pytest

from tulle.agent import daemon, log, metrics
from tulle.errors import ConfigError


def test_exposition_format():
    reg = metrics.Registry()
    c = reg.counter("t_total", "A counter.")
    g = reg.gauge("t_gauge", "A gauge.")
    h = reg.histogram("t_seconds", "A histogram.", buckets=(0.1, 1.0))
    c.inc(command="ADD")
    c.inc(2, command="ADD")
    c.inc(command='we"ird\n')
    g.set(3)
    h.observe(0.05, command="ADD")
    h.observe(0.5, command="ADD")
    assert reg.render() == "\n".join([
        "# HELP t_total A counter.", "# TYPE t_total counter",
        't_total{command="ADD"} 3', 't_total{command="we\\"ird\\n"} 1',
        "# HELP t_gauge A gauge.", "# TYPE t_gauge gauge", "t_gauge 3",
        "# HELP t_seconds A histogram.", "# TYPE t_seconds histogram",
        't_seconds_bucket{command="ADD",le="0.1"} 1', 't_seconds_bucket{command="ADD",le="1"} 2',
        't_seconds_bucket{command="ADD",le="+Inf"} 2', 't_seconds_sum{command="ADD"} 0.55',
        't_seconds_count{command="ADD"} 2',
    ]) + "\n"


def test_unset_counter_renders_zero_and_cni_observer():
    text = metrics.REGISTRY.render()
    assert "tulle_reconcile_errors_total" in text and "# TYPE tulle_cni_request_seconds histogram" in text
    before = metrics.CNI_SECONDS.count(command="ADD")
    metrics.observe_cni_request("add", 0.02, ok=False)
    assert metrics.CNI_SECONDS.count(command="ADD") == before + 1
    assert metrics.CNI_REQUESTS.value(command="ADD", result="error") >= 1


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
