"""The vxlan backend on hand-built nodes (no agent): pods reach each other across
nodes; each remote lease gets exactly one neighbour, one FDB entry and one route;
sync() restores drift and forgets leases that are gone; DirectRouting uses plain
routes for same-segment peers only."""

from __future__ import annotations

import ipaddress

import pytest

from tests.netns import topo
from tulle.agent.backends import base
from tulle.agent.backends.vxlan.plan import PROTO
from tulle.cluster.lease import Lease
from tulle.kernel import links, neigh, routes

pytestmark = pytest.mark.netns

DEV = "tulle.1"


@pytest.fixture
def cluster(topology):
    """Builds nodes and remembers every backend started on them; tears them down
    (inside their node netns) before the namespaces go."""
    made: list[tuple[topo.Node, object]] = []

    def build(segments: list[int], config: dict | None = None):
        nodes = topology(segments=max(segments) + 1).add_nodes_with_pods(segments, pod_mtu=1450)
        backends, leases = [], []
        for node in nodes:
            backend = base.create("vxlan", node.info(), config or {"Type": "vxlan"})
            made.append((node, backend))
            info = node.run(backend.prepare)
            lease = Lease(subnet=node.subnet, public_ip=node.public_ip, backend_type="vxlan",
                          backend_data=info.backend_data, node=node.name)
            node.run(backend.start, lease)
            backends.append(backend)
            leases.append(lease)
        return nodes, backends, leases

    yield build
    for node, backend in reversed(made):
        node.run(backend.teardown)


def _sync_all(nodes, backends, leases, extra: list[Lease] = ()) -> None:
    for node, backend, own in zip(nodes, backends, leases):
        node.run(backend.sync, [l for l in leases if l is not own] + list(extra))


def _state(node: topo.Node) -> dict:
    def read():
        return {
            "neigh": {n.ip: n.mac for n in neigh.list_on(DEV)},
            "fdb": {(e.mac, e.dst) for e in neigh.fdb_list(DEV) if e.dst is not None},
            "routes": {r.dst: r for r in routes.list_routes(4) if r.proto == PROTO},
            "link": links.get(DEV),
        }
    return node.run(read)


def test_three_nodes_exact_entries_drift_and_removal(cluster):
    nodes, backends, leases = cluster([0, 0, 0])
    # Bad or foreign leases are skipped (a warning), never programmed.
    foreign = Lease(subnet=ipaddress.IPv4Network("10.244.50.0/24"),
                    public_ip=ipaddress.IPv4Address("198.51.100.50"), backend_type="host-gw")
    broken = Lease(subnet=ipaddress.IPv4Network("10.244.51.0/24"),
                   public_ip=ipaddress.IPv4Address("198.51.100.51"), backend_type="vxlan",
                   backend_data={"VNI": 1, "VtepMAC": "not-a-mac"})
    _sync_all(nodes, backends, leases, extra=[foreign, broken])
    assert topo.unreachable([n.pod for n in nodes], deadline=6.0) == []

    n1 = nodes[0]
    link = _state(n1)["link"]
    assert (link.kind, link.mtu, link.mac) == ("vxlan", topo.UNDERLAY_MTU - 50, leases[0].backend_data["VtepMAC"])
    for node, own in zip(nodes, leases):
        state = _state(node)
        remotes = [l for l in leases if l is not own]
        assert state["neigh"] == {l.subnet.network_address: l.backend_data["VtepMAC"] for l in remotes}
        assert state["fdb"] == {(l.backend_data["VtepMAC"], l.public_ip) for l in remotes}
        assert set(state["routes"]) == {l.subnet for l in remotes}
        for l in remotes:
            r = state["routes"][l.subnet]
            assert (r.gw, r.dev, r.onlink) == (l.subnet.network_address, DEV, True)

    # Drift: a neighbour, an FDB entry and a route deleted by hand come back on sync().
    n2l, n3l = leases[1], leases[2]
    def vandalize():
        neigh.delete(DEV, n2l.subnet.network_address)
        neigh.fdb_delete(DEV, n3l.backend_data["VtepMAC"], n3l.public_ip)
        routes.delete(_state_routes()[n3l.subnet])
    def _state_routes():
        return {r.dst: r for r in routes.list_routes(4) if r.proto == PROTO}
    n1.run(vandalize)
    before = _state(n1)
    assert len(before["neigh"]) == 1 and len(before["fdb"]) == 1 and len(before["routes"]) == 1
    n1.run(backends[0].sync, [n2l, n3l])
    after = _state(n1)
    assert (len(after["neigh"]), len(after["fdb"]), len(after["routes"])) == (2, 2, 2)
    assert topo.ping(n1.pod.ns, nodes[2].pod.ip)

    # The whole VTEP deleted: rebuilt by sync() with the same (published) MAC.
    n1.run(links.delete, DEV)
    n1.run(backends[0].sync, [n2l, n3l])
    rebuilt = _state(n1)
    assert rebuilt["link"].mac == leases[0].backend_data["VtepMAC"]
    assert (len(rebuilt["neigh"]), len(rebuilt["fdb"]), len(rebuilt["routes"])) == (2, 2, 2)
    assert topo.ping(n1.pod.ns, nodes[1].pod.ip)

    # An agent restart (a new backend instance) keeps the device and its MAC.
    again = base.create("vxlan", n1.info(), {"Type": "vxlan"})
    assert n1.run(again.prepare).backend_data == leases[0].backend_data
    assert n1.run(links.get, DEV).index == rebuilt["link"].index

    # A lease that is gone loses its neighbour, FDB entry and route; the other stays.
    n1.run(backends[0].sync, [n2l])
    gone = _state(n1)
    assert set(gone["neigh"]) == {n2l.subnet.network_address}
    assert gone["fdb"] == {(n2l.backend_data["VtepMAC"], n2l.public_ip)}
    assert set(gone["routes"]) == {n2l.subnet}
    assert not topo.ping_once(n1.pod.ns, nodes[2].pod.ip)
    assert topo.ping(n1.pod.ns, nodes[1].pod.ip)

    # teardown removes the device and every route the backend made.
    n1.run(backends[0].teardown)
    down = _state(n1)
    assert down["link"] is None and down["routes"] == {}


def test_direct_routing_same_segment_only(cluster):
    """n1, n2 share segment 0; n3 sits behind the router on segment 1."""
    nodes, backends, leases = cluster([0, 0, 1], {"Type": "vxlan", "DirectRouting": True})
    _sync_all(nodes, backends, leases)
    assert topo.unreachable([n.pod for n in nodes], deadline=6.0) == []

    n1, n2, n3 = nodes
    s1 = _state(n1)
    direct = s1["routes"][n2.subnet]
    assert (direct.gw, direct.dev, direct.onlink) == (n2.public_ip, topo.UNDERLAY_DEV, False)
    overlay = s1["routes"][n3.subnet]
    assert (overlay.gw, overlay.dev, overlay.onlink) == (n3.subnet.network_address, DEV, True)
    assert s1["neigh"] == {n3.subnet.network_address: leases[2].backend_data["VtepMAC"]}
    assert s1["fdb"] == {(leases[2].backend_data["VtepMAC"], n3.public_ip)}

    s3 = _state(n3)   # alone on its segment: everything goes through the VTEP
    assert {r.dev for r in s3["routes"].values()} == {DEV}
    assert len(s3["neigh"]) == len(s3["fdb"]) == 2

    # teardown also removes the direct route that lives on the underlay device.
    n1.run(backends[0].teardown)
    assert _state(n1)["routes"] == {}


def test_update_writes_only_the_change(cluster, monkeypatch):
    """The store-change path: update() adds and removes exactly one lease's entries without
    reading the kernel back (drift stays until the tick's sync), and converges fully when it
    has no last pass or a write fails."""
    nodes, backends, leases = cluster([0, 0, 0])
    n1, b1 = nodes[0], backends[0]
    n2l, n3l = leases[1], leases[2]
    n1.run(b1.update, [n2l])                         # no last pass yet: a full sync
    assert set(_state(n1)["routes"]) == {n2l.subnet}

    n1.run(neigh.delete, DEV, n2l.subnet.network_address)   # drift update() must not see

    def no_dump(*a, **kw):
        raise AssertionError("update() read the kernel back")

    with monkeypatch.context() as m:
        for mod, name in ((neigh, "list_on"), (neigh, "fdb_list"), (routes, "list_routes")):
            m.setattr(mod, name, no_dump)
        n1.run(b1.update, [n2l, n3l])                # n3 joins
    s = _state(n1)
    assert set(s["routes"]) == {n2l.subnet, n3l.subnet}
    assert s["neigh"] == {n3l.subnet.network_address: n3l.backend_data["VtepMAC"]}   # n2's still missing
    assert s["fdb"] == {(l.backend_data["VtepMAC"], l.public_ip) for l in (n2l, n3l)}
    n1.run(b1.sync, [n2l, n3l])                      # the tick repairs the drift
    assert len(_state(n1)["neigh"]) == 2
    n2, n3 = nodes[1], nodes[2]
    n2.run(backends[1].sync, [leases[0], n3l])
    n3.run(backends[2].sync, [leases[0], n2l])

    with monkeypatch.context() as m:
        for mod, name in ((neigh, "list_on"), (neigh, "fdb_list"), (routes, "list_routes")):
            m.setattr(mod, name, no_dump)
        n1.run(b1.update, [n3l])                     # n2 leaves
    s = _state(n1)
    assert set(s["routes"]) == {n3l.subnet}
    assert s["neigh"] == {n3l.subnet.network_address: n3l.backend_data["VtepMAC"]}
    assert s["fdb"] == {(n3l.backend_data["VtepMAC"], n3l.public_ip)}
    assert topo.ping(n1.pod.ns, n3.pod.ip)

    n1.run(links.delete, DEV)                        # a write into a VTEP that is gone fails:
    n1.run(b1.update, [n2l, n3l])                    # update() converges fully instead
    s = _state(n1)
    assert s["link"].mac == leases[0].backend_data["VtepMAC"]
    assert (len(s["neigh"]), len(s["fdb"]), len(s["routes"])) == (2, 2, 2)
    assert topo.ping(n1.pod.ns, n3.pod.ip) and topo.ping(n1.pod.ns, n2.pod.ip)
