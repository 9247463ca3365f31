"""The agents as processes: a crash and restart drops no packet; a node that leaves is
removed from every other node."""

from __future__ import annotations

import ipaddress
import re
import subprocess
import time

import pytest

from tests.lab.conftest import needs_agent
from tulle import procs
from tulle.kernel import links, neigh, netns, routes
from tulle.lab import agents, cluster, pods, state, topology

pytestmark = [pytest.mark.netns, needs_agent]


def start_ping(lab: str, pod: str, ip: str, count: int) -> subprocess.Popen:
    cmd = ["nsenter", f"--net={netns.path_of(topology.pod_netns(lab, pod))}",
           "ping", "-n", "-q", "-i", "0.1", "-c", str(count), "-W", "1", ip]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def loss(output: str) -> tuple[int, int]:
    m = re.search(r"(\d+) packets transmitted, (\d+) received", output)
    assert m, output
    return int(m.group(1)), int(m.group(2))


def forwarders(lab: str) -> list[int]:
    """Pids of the lab's udp forwarders (their argv carries a control socket in the lab dir)."""
    root = state.path(lab) + "/"
    return procs.find(lambda args: "tulle.agent.backends.udp_forwarder" in args
                      and any(a.startswith(root) for a in args))


# udp's data plane is a user-space forwarder: it outlives its agent and the next agent
# adopts it, so a restart (a crash or a clean stop) loses no packet there either.
@pytest.mark.parametrize("backend,kill", [("vxlan", True), ("host-gw", True), ("udp", True), ("udp", False)],
                         ids=["vxlan-kill", "host-gw-kill", "udp-kill", "udp-term"])
def test_agent_restarted_loses_no_packet(make_lab, backend, kill):
    st = make_lab(nodes_count=2, backend=backend)
    lab = st.lab
    pods.add(lab, "n1", "a")
    b = pods.add(lab, "n2", "b")
    before = forwarders(lab)
    ping = start_ping(lab, "a", b.ip, count=60)              # 6 s at 10/s
    try:
        time.sleep(0.5)
        for node in ("n1", "n2"):                            # both ends stop and come back
            old = state.load(lab).nodes[node]
            new = cluster.agent_restart(lab, node, kill=kill)
            assert new != old and not agents.alive(lab, node, old) and agents.alive(lab, node, new)
        assert ping.poll() is None, "the restarts outlasted the ping: nothing was measured"
        out, _ = ping.communicate(timeout=30)
    finally:
        if ping.poll() is None:
            ping.kill()
            ping.wait()
    sent, received = loss(out)
    assert sent == 60 and received == 60, out
    assert len(before) == (2 if backend == "udp" else 0)
    assert sorted(forwarders(lab)) == sorted(before)         # adopted, not replaced
    if backend == "udp":
        cluster.down(lab)
        assert forwarders(lab) == [] and not any(procs.alive(pid) for pid in before)


def vxlan_view(node_ns: str) -> dict:
    """Routes, permanent neighbours and FDB entries of the node's VTEP."""
    def read() -> dict:
        vtep = next(link.name for link in links.all_links() if link.kind == "vxlan")
        return {"routes": {r.dst for r in routes.list_routes(4) if r.dev == vtep or r.gw is not None},
                "neigh": {n.ip for n in neigh.list_on(vtep)},
                "fdb": {e.dst for e in neigh.fdb_list(vtep) if e.dst is not None}}
    return netns.run_in(netns.path_of(node_ns), read)


def test_node_del_removes_it_from_every_other_node(make_lab):
    st = make_lab(nodes_count=3, backend="vxlan")
    lab = st.lab
    status = cluster.status(lab)
    gone = next(n for n in status["nodes"] if n["name"] == "n3")
    subnet = ipaddress.IPv4Network(gone["subnet"])
    pods.add(lab, "n3", "c")
    survivors = [n.netns for n in st.plan().nodes if n.name != "n3"]
    for ns in survivors:                                     # before: n3 is known everywhere
        view = vxlan_view(ns)
        assert subnet in view["routes"] and subnet.network_address in view["neigh"]
        assert ipaddress.IPv4Address(gone["underlay_ip"]) in view["fdb"]

    cluster.node_del(lab, "n3")
    assert not netns.exists(f"tulle-{lab}-n3") and not netns.exists(topology.pod_netns(lab, "c"))
    assert [n["name"] for n in cluster.status(lab)["nodes"]] == ["n1", "n2"]
    assert cluster.status(lab)["pods"] == []
    deadline = time.monotonic() + 10
    for ns in survivors:
        while True:
            view = vxlan_view(ns)
            clean = (subnet not in view["routes"] and subnet.network_address not in view["neigh"]
                     and ipaddress.IPv4Address(gone["underlay_ip"]) not in view["fdb"])
            if clean or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert clean, (ns, view)


def test_node_del_leaves_no_udp_forwarder(make_lab):
    """A node that leaves takes its forwarder along (it outlives only its agent)."""
    st = make_lab(nodes_count=2, backend="udp")
    lab = st.lab
    mine = procs.find(lambda args: any(a.startswith(state.path(lab, "n2") + "/") for a in args)
                      and "tulle.agent.backends.udp_forwarder" in args)
    assert len(mine) == 1
    cluster.node_del(lab, "n2")
    assert procs.wait_dead(mine[0], 5.0)
    assert len(forwarders(lab)) == 1                         # n1's keeps serving
