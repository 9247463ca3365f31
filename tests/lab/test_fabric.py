"""The lab's underlay without agents: segments, router, no way out, etcd in the fabric."""

from __future__ import annotations

import contextlib
import ipaddress
import subprocess

import pytest

from tulle.kernel import netns, routes
from tulle.lab import fabric, nodes, state, topology
from tulle.store.etcd import EtcdStore
from tulle.store.etcd_server import EtcdServer

pytestmark = pytest.mark.netns


@contextlib.contextmanager
def underlay(lab: str, **options):
    """Fabric and node netns of a plan, no agents; `lab_name` removes them afterwards."""
    plan = topology.plan(lab, **options)
    with contextlib.ExitStack() as undo:
        state.create_dir(lab)
        fabric.build(plan, undo)
        for node in plan.nodes:
            fabric.add_node(plan, node, undo)
            nodes.write_files(plan, node)
        yield plan


def ping(ns: str, ip: str) -> bool:
    cmd = ["nsenter", f"--net={netns.path_of(ns)}", "ping", "-n", "-q", "-c", "1", "-W", "2", ip]
    return subprocess.run(cmd, capture_output=True, check=False, timeout=10).returncode == 0


def test_nodes_on_two_segments_reach_each_other_through_the_router(lab_name):
    with underlay(lab_name, nodes=3, segments=2) as plan:
        n1, n2, n3 = plan.nodes
        assert (n1.segment, n2.segment, n3.segment) == (0, 1, 0)
        assert ping(n1.netns, str(n2.ip.ip))          # seg0 -> router -> seg1
        assert ping(n2.netns, str(n3.ip.ip))          # and back
        assert ping(n1.netns, str(n3.ip.ip))          # same segment: the bridge
        assert ping(n2.netns, str(plan.fabric_ip.ip))  # the fabric (outside the cluster) from seg1
        # No lab netns has a default route: nothing can leave the lab.
        for ns in [plan.fabric_netns, plan.router_netns, *(n.netns for n in plan.nodes)]:
            table = netns.run_in(netns.path_of(ns), routes.list_routes, 4)
            assert all(r.dst.prefixlen > 0 for r in table), (ns, table)
        on_n2 = netns.run_in(netns.path_of(n2.netns), routes.list_routes, 4)
        assert any(r.dst == ipaddress.IPv4Network("198.51.100.0/24") and str(r.gw) == "203.0.113.1" for r in on_n2)


def test_one_segment_has_no_router(lab_name):
    with underlay(lab_name, nodes=2) as plan:
        assert plan.router_netns is None and not netns.exists(f"tulle-{lab_name}-router")
        assert ping(plan.nodes[0].netns, str(plan.nodes[1].ip.ip))


def test_etcd_in_the_fabric_answers_the_nodes(lab_name):
    with underlay(lab_name, nodes=1) as plan:
        server = EtcdServer(netns.path_of(plan.fabric_netns), state.path(lab_name, "etcd"),
                            host=str(plan.fabric_ip.ip))
        server.start()
        try:
            # A client whose sockets live in node n1: the way an agent reaches the store.
            client = EtcdStore([server.endpoint], netns=netns.path_of(plan.nodes[0].netns))
            client.put("/k", "v")
            assert server.store().get("/k").value == b"v"
            client.close()
        finally:
            server.stop()
