"""The udp backend on hand-built nodes (no agent): pods reach each other through the
user-space loop (ICMP and a few MB of TCP), sync() changes the loop's table,
a deleted TUN or a dead loop is restored by sync(), stop() leaves the loop
forwarding for the next instance to adopt, a loop nobody recorded is replaced,
and teardown() ends the loop and removes the TUN."""

from __future__ import annotations

import ipaddress
import os
import threading

import pytest

from tests.netns import topo
from tulle import procs
from tulle.agent.backends import base, udp
from tulle.cluster.lease import Lease
from tulle.kernel import addrs, links, routes

pytestmark = pytest.mark.netns


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); it is gone for our purposes once reaped.
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split(")")[-1].split()[0] != "Z"


@pytest.fixture
def cluster(topology, tmp_path):
    made: list[tuple[topo.Node, object]] = []

    def build(segments: list[int]):
        nodes = topology(segments=max(segments) + 1).add_nodes_with_pods(
            segments, pod_mtu=topo.UNDERLAY_MTU - udp.OVERHEAD)
        backends, leases = [], []
        for node in nodes:
            backend = base.create("udp", node.info(str(tmp_path / node.name)), {"Type": "udp"})
            made.append((node, backend))
            info = node.run(backend.prepare)
            assert info.mtu == topo.UNDERLAY_MTU - 28 and info.backend_data == {}
            lease = Lease(subnet=node.subnet, public_ip=node.public_ip, backend_type="udp", node=node.name)
            node.run(backend.start, lease)
            backends.append(backend)
            leases.append(lease)
        for node, backend, own in zip(nodes, backends, leases):
            node.run(backend.sync, leases)   # the whole list: the backend leaves its own out
        return nodes, backends, leases

    yield build
    for node, backend in reversed(made):
        node.run(backend.teardown)   # stops the loop process first, then removes the TUN


def test_three_nodes_ping_tcp_and_table(cluster):
    nodes, backends, leases = cluster([0, 0, 1])   # n3 behind the router: UDP is routed fine
    assert topo.unreachable([n.pod for n in nodes], deadline=6.0) == []
    sent, got = topo.tcp_copy(nodes[0].pod, nodes[2].pod, 4 << 20)
    assert got == sent
    sent, got = topo.tcp_copy(nodes[1].pod, nodes[0].pod, 2 << 20)
    assert got == sent

    n1, b1 = nodes[0], backends[0]
    assert b1.table == {leases[1].subnet: leases[1].public_ip, leases[2].subnet: leases[2].public_ip}
    n1.run(b1.sync, leases)   # stats arrive with each sync's reply
    assert b1.stats["tx"] > 1000 and b1.stats["rx"] > 100

    def tun_state():
        link = links.require(udp.DEVICE)
        cluster_routes = [r for r in routes.list_routes(4, dev=udp.DEVICE) if r.dst == topo.NETWORK]
        return link.kind, link.mtu, addrs.list_on(udp.DEVICE), len(cluster_routes)
    assert n1.run(tun_state) == ("tun", 1472, [ipaddress.IPv4Interface("10.244.1.0/16")], 1)

    # sync() without n3's lease: the loop forgets it (other leases and kinds skipped).
    foreign = Lease(subnet=ipaddress.IPv4Network("10.244.60.0/24"),
                    public_ip=ipaddress.IPv4Address("198.51.100.60"), backend_type="vxlan")
    n1.run(b1.sync, [leases[1], foreign])
    assert b1.table == {leases[1].subnet: leases[1].public_ip}
    assert not topo.ping_once(n1.pod.ns, nodes[2].pod.ip)
    assert topo.ping(n1.pod.ns, nodes[1].pod.ip)
    n1.run(b1.sync, leases)
    assert topo.ping(n1.pod.ns, nodes[2].pod.ip)


def test_restore_stop_restart_teardown(cluster):
    nodes, backends, leases = cluster([0, 0])
    n1, b1 = nodes[0], backends[0]
    assert topo.ping(n1.pod.ns, nodes[1].pod.ip)

    # The loop killed from outside: the next sync() starts a new one.
    dead = b1.pid
    os.kill(dead, 9)
    n1.run(b1.sync, leases)
    assert b1.pid not in (None, dead)
    assert topo.ping(n1.pod.ns, nodes[1].pod.ip)

    # The TUN deleted: sync() rebuilds it (address, route) and re-attaches a new loop.
    old = b1.pid
    n1.run(links.delete, udp.DEVICE)
    n1.run(b1.sync, leases)
    assert b1.pid not in (None, old) and not _alive(old)
    assert topo.ping(n1.pod.ns, nodes[1].pod.ip)

    # stop() (the agent stops or dies): the loop stays, forwarding with its last table.
    threads = threading.active_count()
    pid = b1.pid
    b1.stop()
    assert b1.pid is None and _alive(pid)
    assert threading.active_count() <= threads
    assert topo.ping(n1.pod.ns, nodes[1].pod.ip)

    # The next agent adopts it (the same process) and hands it the current table.
    state_dir = b1.node.state_dir
    again = base.create("udp", n1.info(state_dir), {"Type": "udp"})
    n1.run(again.start, leases[0])
    assert again.pid == pid
    n1.run(again.sync, leases[:1])          # no remote lease: n2 unreachable
    assert not topo.ping_once(n1.pod.ns, nodes[1].pod.ip)
    n1.run(again.sync, leases)
    assert again.pid == pid and topo.ping(n1.pod.ns, nodes[1].pod.ip)

    # A loop nobody recorded (its agent died before writing the pidfile) is ended, not
    # fought over: the next start() replaces it instead of failing on a busy TUN.
    again.stop()
    os.unlink(os.path.join(state_dir, udp.PIDFILE))
    third = base.create("udp", n1.info(state_dir), {"Type": "udp"})
    n1.run(third.start, leases[0])
    n1.run(third.sync, leases)
    assert third.pid not in (None, pid) and not _alive(pid)
    assert topo.ping(n1.pod.ns, nodes[1].pod.ip)

    # teardown() (the node leaves): no loop, no control socket, no TUN.
    pid = third.pid
    n1.run(third.teardown)
    assert not _alive(pid)
    assert not os.path.exists(udp.control_path(state_dir)) and not os.path.exists(os.path.join(state_dir, udp.PIDFILE))
    assert n1.run(links.get, udp.DEVICE) is None


def test_loop_exits_when_its_state_dir_goes(cluster):
    """A loop left by a node whose state is removed (a node deleted by hand) does not
    pin the node's netns: it exits once its control socket is gone."""
    nodes, backends, leases = cluster([0, 0])
    n1, b1 = nodes[0], backends[0]
    pid = b1.pid
    b1.stop()
    os.unlink(udp.control_path(b1.node.state_dir))
    assert procs.wait_dead(pid, 5.0)
