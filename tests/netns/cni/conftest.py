"""Fixtures shared by the meta-plugin tests (portmap, firewall)."""

from __future__ import annotations

import pytest

from tests.netns.cni.pods import add_client, make_pod


@pytest.fixture
def lab(host_ns, pod_ns, make_netns):
    """A pod behind host_ns, and an outside client (203.0.113.2) on another host link."""
    client = make_netns("client")
    pod = make_pod(host_ns, pod_ns)
    add_client(host_ns, client)
    return pod, client
