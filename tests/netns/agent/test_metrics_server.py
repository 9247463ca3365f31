"""The metrics server in a private netns: serves /metrics, /healthz and 404s; blocks in
accept() while idle (no polling thread) and close() ends it and frees the port."""

from __future__ import annotations

import threading

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.netns.agent.conftest import http_get
from tulle.agent import metrics
from tulle.errors import ConfigError
from tulle.kernel import links, netns

pytestmark = pytest.mark.netns

ADDR = "127.0.0.1:9109"


def test_serve_then_close_frees_the_port(make_netns):
    ns = make_netns("metrics")
    netns.run_in(ns, links.set_up, "lo")
    server = netns.run_in(ns, metrics.MetricsServer, ADDR).start()
    try:
        code, text = http_get(ns, f"http://{ADDR}/metrics")
        assert code == 200 and "# TYPE tulle_reconcile_total counter" in text
        kinds = {f.name: f.type for f in text_string_to_metric_families(text)}
        assert kinds["tulle_reconcile"] == "counter" and kinds["tulle_cni_request_seconds"] == "histogram"
        code, _ = http_get(ns, f"http://{ADDR}/healthz")
        assert code in (200, 503)
        code, text = http_get(ns, f"http://{ADDR}/nope")
        assert code == 404 and "/metrics" in text
        # the serving thread is parked in accept() between requests
        assert any(t.name == "tulle-metrics" for t in threading.enumerate())
    finally:
        server.close()
    assert not any(t.name == "tulle-metrics" and t.is_alive() for t in threading.enumerate())
    code, _ = http_get(ns, f"http://{ADDR}/metrics")
    assert code == 0                                 # nobody listens any more
    netns.run_in(ns, metrics.MetricsServer, ADDR).close()   # the port is free for the next agent


def test_close_without_start_and_busy_port(make_netns):
    ns = make_netns("metrics")
    netns.run_in(ns, links.set_up, "lo")
    server = netns.run_in(ns, metrics.MetricsServer, ADDR)
    try:
        with pytest.raises(ConfigError, match="cannot serve metrics on 127.0.0.1:9109"):
            netns.run_in(ns, metrics.MetricsServer, ADDR)
    finally:
        server.close()                               # never started: closes cleanly
