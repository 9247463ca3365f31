"""`tulle lab fault`: the store stopped, killed and back; a node partitioned and healed —
and what tulle does meanwhile: an agent restarted without its store keeps the data plane,
`lab status` answers from what is known, and the lease is registered once the store is back."""

from __future__ import annotations

import subprocess
import time

import pytest

from tests.lab.conftest import needs_agent
from tests.lab.test_agents import loss, start_ping
from tulle.cluster.lease import DEFAULT_PREFIX, subnet_key
from tulle.kernel import netns
from tulle.lab import agents, cluster, faults, pods, state, topology

pytestmark = [pytest.mark.netns, needs_agent]


def ping_ok(lab: str, src: str, ip: str) -> bool:
    cmd = ["nsenter", f"--net={netns.path_of(topology.pod_netns(lab, src))}", "ping", "-n", "-q", "-c", "1",
           "-W", "1", ip]
    return subprocess.run(cmd, capture_output=True, timeout=10).returncode == 0


def wait_log(lab: str, node: str, text: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open(agents.log_path(lab, node)) as f:
            if text in f.read():
                return
        time.sleep(0.2)
    raise AssertionError(f"{node}'s agent never logged {text!r}:\n{agents.log_tail(lab, node)}")


def test_agent_restarts_without_etcd_and_registers_when_it_is_back(make_lab):
    st = make_lab(nodes_count=2, backend="host-gw", store="etcd")
    lab = st.lab
    pods.add(lab, "n1", "a")
    b = pods.add(lab, "n2", "b")
    time.sleep(6)                       # the agents save their last known state (at most every 5 s)
    print(faults.store(lab, "kill"))
    ping = start_ping(lab, "a", b.ip, count=60)                 # 6 s at 10/s
    try:
        for node in ("n1", "n2"):
            cluster.agent_restart(lab, node, kill=True)         # today: "cannot reach etcd", no agent
        status = cluster.status(lab)
        assert "store_error" in status
        assert all(n["stale"] and n["subnet"] and n["agent_alive"] for n in status["nodes"])
        out, _ = ping.communicate(timeout=30)
    finally:
        if ping.poll() is None:
            ping.kill()
    sent, received = loss(out)
    assert sent == received, out                                # the data plane never moved
    wait_log(lab, "n1", "store unreachable")
    print(faults.store(lab, "start"))
    for node in ("n1", "n2"):
        wait_log(lab, node, "store reachable again")
    kv = cluster.open_lab_store(state.load(lab).plan())
    try:
        for lease in [l for l in agents.leases(kv)]:
            kv_lease = kv.get(subnet_key(DEFAULT_PREFIX, lease.subnet))
            assert kv_lease is not None and kv_lease.lease != 0
        assert len(agents.leases(kv)) == 2
    finally:
        kv.close()
    assert ping_ok(lab, "a", b.ip)


def test_frozen_etcd_status_answers_from_what_is_known(make_lab):
    st = make_lab(nodes_count=2, backend="host-gw", store="etcd")
    lab = st.lab
    time.sleep(6)
    faults.store(lab, "stop")
    try:
        status = cluster.status(lab)
        assert "store_error" in status and all(n["stale"] and n["subnet"] for n in status["nodes"])
    finally:
        faults.store(lab, "start")
    assert "store_error" not in cluster.status(lab)


def test_partition_and_heal(make_lab):
    st = make_lab(nodes_count=2, backend="host-gw")
    lab = st.lab
    pods.add(lab, "n1", "a")
    b = pods.add(lab, "n2", "b")
    assert ping_ok(lab, "a", b.ip)
    faults.partition(lab, "n2")
    assert faults.active(lab) == [f"partition {st.plan().node('n2').fabric_port}"]
    assert not ping_ok(lab, "a", b.ip)
    faults.heal(lab, "n2")
    assert ping_ok(lab, "a", b.ip)
    faults.loss(lab, "n2", 50)
    assert faults.active(lab) == [f"loss-50 {st.plan().node('n2').fabric_port}"]
    assert faults.clear(lab) and faults.active(lab) == []


def test_sqlite_writer_stopped_and_started(make_lab):
    st = make_lab(nodes_count=1, backend="host-gw")
    lab = st.lab
    assert "write lock held" in faults.store(lab, "stop")
    assert "released" in faults.store(lab, "start")
    pods.add(lab, "n1", "a")                                     # the store takes writes again
