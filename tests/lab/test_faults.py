"""`tulle lab fault`: the store stopped, killed and back; a node partitioned and healed; BIRD
and the udp forwarder frozen and killed — and what tulle does meanwhile: an agent restarted
without its store keeps the data plane (bgp: BIRD too), `lab status` answers from what is
known, the lease is registered once the store is back, a dead daemon is started again."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from typing import Callable

import pytest

from tests.lab.conftest import needs_agent
from tests.lab.test_agents import loss, start_ping
from tulle.cluster.lease import DEFAULT_PREFIX, subnet_key
from tulle.errors import ConfigError
from tulle.kernel import netns
from tulle.lab import agents, cluster, faults, pods, state, topology

pytestmark = [pytest.mark.netns, needs_agent]


def ping_ok(lab: str, src: str, ip: str) -> bool:
    cmd = ["nsenter", f"--net={netns.path_of(topology.pod_netns(lab, src))}", "ping", "-n", "-q", "-c", "1",
           "-W", "1", ip]
    return subprocess.run(cmd, capture_output=True, timeout=10).returncode == 0


def two_pods(make_lab, **options) -> tuple[str, str]:
    """A 2-node lab, pod a on n1 reaching pod b on n2: (the lab, b's address)."""
    lab = make_lab(nodes_count=2, **options).lab
    pods.add(lab, "n1", "a")
    ip = pods.add(lab, "n2", "b").ip
    assert ping_ok(lab, "a", ip)
    return lab, ip


@contextlib.contextmanager
def pinging(lab: str, ip: str, count: int, after: Callable[[], object] = lambda: None):
    """Pod a pings `ip` `count` times at 10/s while the block runs; yields a list that holds
    (sent, received) once every reply was waited for. `after` runs last (an undo), always."""
    ping = start_ping(lab, "a", ip, count=count)
    result: list[tuple[int, int]] = []
    try:
        yield result
        out, _ = ping.communicate(timeout=60)
    finally:
        if ping.poll() is None:
            ping.kill()
        after()
    result.append(loss(out))


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
    lab, b_ip = two_pods(make_lab, backend="host-gw")
    st = state.load(lab)
    faults.partition(lab, "n2")
    assert faults.active(lab) == [f"partition {st.plan().node('n2').fabric_port}"]
    assert not ping_ok(lab, "a", b_ip)
    faults.heal(lab, "n2")
    assert ping_ok(lab, "a", b_ip)
    faults.loss(lab, "n2", 50)
    assert faults.active(lab) == [f"loss-50 {st.plan().node('n2').fabric_port}"]
    assert faults.clear(lab) and faults.active(lab) == []


def test_sqlite_writer_stopped_and_started(make_lab):
    st = make_lab(nodes_count=1, backend="host-gw")
    lab = st.lab
    assert "write lock held" in faults.store(lab, "stop")
    assert "released" in faults.store(lab, "start")
    pods.add(lab, "n1", "a")                                     # the store takes writes again


def test_bird_killed_is_started_again_in_recovery_and_loses_nothing(make_lab):
    lab, b_ip = two_pods(make_lab, backend="bgp")
    before = faults.daemon_pid(lab, "n1", "bird")
    with pinging(lab, b_ip, 40) as result:                       # 4 s at 10/s, every reply waited for
        time.sleep(0.5)
        said = faults.daemon(lab, "n1", "bird", "kill")
    after = faults.daemon_pid(lab, "n1", "bird")
    assert said == f"bird on n1 (pid {before}) killed; its agent started another (pid {after})"
    [(sent, received)] = result
    assert sent == received == 40, result                          # graceful restart held the routes
    wait_log(lab, "n1", '"daemons": "bird"')
    with open(agents.log_path(lab, "n1")) as f:
        assert '"recovery": true' in f.read().split("backend daemon exited")[-1]

    assert faults.daemon(lab, "n1", "bird", "stop") == f"bird on n1 (pid {after}) frozen"
    assert faults.daemon(lab, "n1", "bird", "start") == f"bird on n1 (pid {after}) resumed"
    assert faults.daemon(lab, "n1", "bird", "start") == f"bird on n1 (pid {after}) is running"
    with pytest.raises(ConfigError, match="runs the bgp backend: no forwarder"):
        faults.daemon(lab, "n1", "forwarder", "kill")


def test_udp_forwarder_killed_is_replaced(make_lab):
    lab, b_ip = two_pods(make_lab, backend="udp")
    before = faults.daemon_pid(lab, "n2", "forwarder")
    said = faults.daemon(lab, "n2", "forwarder", "kill")
    after = faults.daemon_pid(lab, "n2", "forwarder")
    assert after and after != before and said.endswith(f"its agent started another (pid {after})")
    deadline = time.monotonic() + 5
    while not ping_ok(lab, "a", b_ip):
        assert time.monotonic() < deadline, "no path after the forwarder was replaced"
    assert faults.daemon(lab, "n2", "forwarder", "stop").endswith("frozen")
    assert not ping_ok(lab, "a", b_ip)                           # nobody forwards
    assert faults.daemon(lab, "n2", "forwarder", "start").endswith("resumed")
    assert ping_ok(lab, "a", b_ip)


def test_bgp_agent_and_bird_dead_start_again_without_the_store(make_lab):
    """BIRD comes back from the last known state (blocks included): without it the peers
    would drop the node's routes once their graceful restart time ran out."""
    lab, b_ip = two_pods(make_lab, backend="bgp", store="etcd")
    time.sleep(6)                                                # the last known state is saved
    faults.store(lab, "kill")
    with pinging(lab, b_ip, 40, after=lambda: faults.store(lab, "start")) as result:
        agents.kill(lab, "n1", state.load(lab).nodes["n1"])
        bird = faults.daemon_pid(lab, "n1", "bird")
        assert bird is not None
        os.kill(bird, signal.SIGKILL)
        cluster.agent_restart(lab, "n1", kill=True)
        deadline = time.monotonic() + 10
        while faults.daemon_pid(lab, "n1", "bird") in (None, bird):
            assert time.monotonic() < deadline, agents.log_tail(lab, "n1")
            time.sleep(0.1)
    [(sent, received)] = result
    assert sent == received, result


def test_agent_restarts_while_sqlite_takes_no_writes(make_lab):
    """SQLite's write lock held elsewhere: reads answer, the lease write does not. The agent
    starts from its last known state (before: its start failed after the busy timeout,
    undid the node's routes and VTEP, and it exited — found by `tulle lab chaos`)."""
    lab, b_ip = two_pods(make_lab, backend="vxlan")
    time.sleep(6)                                                # the last known state is saved
    faults.store(lab, "stop")
    with pinging(lab, b_ip, 60, after=lambda: faults.store(lab, "start")) as result:
        cluster.agent_restart(lab, "n2", kill=True)
        assert agents.alive(lab, "n2", state.load(lab).nodes["n2"]), agents.log_tail(lab, "n2")
    [(sent, received)] = result
    assert sent == received, result
    wait_log(lab, "n2", "store reachable again")
