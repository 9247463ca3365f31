"""Every pod reaches every other pod across nodes, ICMP and TCP: each backend × each store,
and vxlan/udp across two L2 segments joined by the router."""

from __future__ import annotations

import ipaddress

import pytest

from tests.lab.conftest import needs_agent
from tulle.lab import checks, pods, state

pytestmark = [pytest.mark.netns, needs_agent]


def assert_full_mesh(lab: str) -> None:
    for node in ("n1", "n2", "n3"):
        pods.add(lab, node, f"p{node[1:]}")
    st = state.load(lab)
    assert len({ipaddress.ip_network(f"{p.ip}/24", strict=False) for p in st.pods.values()}) == 3
    results = checks.all_pairs(st)
    assert len(results) == 6
    failed = [r for r in results if not r.ok]
    assert not failed, failed


@pytest.mark.parametrize("store", ["sqlite", "etcd"])
@pytest.mark.parametrize("backend", ["host-gw", "vxlan", "udp"])
def test_every_pod_reaches_every_other(make_lab, backend, store):
    st = make_lab(backend=backend, store=store)
    assert_full_mesh(st.lab)


@pytest.mark.parametrize("backend", ["vxlan", "udp"])
def test_across_two_segments(make_lab, backend):
    st = make_lab(backend=backend, segments=2)
    assert [n.segment for n in st.plan().nodes] == [0, 1, 0]
    assert_full_mesh(st.lab)
