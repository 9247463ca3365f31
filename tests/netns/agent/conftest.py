"""Agent tests on tests/netns/topo.py: node netns on one fabric bridge (eth0 =
198.51.100.1k), each running the real agent as a subprocess entered with nsenter."""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest

from tests.netns.topo import Topology, kernel_routes
from tulle.kernel import netns

METRICS_PORT = 9109


@pytest.fixture
def cluster(topology) -> Topology:
    """One segment; the agents serve /metrics and /healthz on <node ip>:9109."""
    return topology(metrics_port=METRICS_PORT)


def http_get(ns: str, url: str) -> tuple[int, str]:
    """GET from inside a netns (the socket is made by a thread entered into it)."""
    def get() -> tuple[int, str]:
        try:
            with urllib.request.urlopen(url, timeout=3) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()
        except OSError as exc:  # not listening (yet)
            return 0, str(exc)

    return netns.run_in(ns, get)


def agent_routes(ns: str) -> dict[str, str]:
    """dst → gateway of the routes the agent owns (host-gw: proto 250) in a node netns."""
    return kernel_routes(ns, "250")
