"""50 `tulle lab pod add` at once (CLI processes) all succeed, each with an address of its own,
Running — they no longer wait for one another: the lab lock is held only around state.json
writes, never across a CNI ADD (issue 10, item 6; no timing is asserted here). Two adds of one
name race cleanly: one pod, one AlreadyExists, no leak. Then 50 `pod del` at once leave nothing."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.lab import pod_traces
from tests.lab.conftest import api, lab_up, needs_agent
from tulle.lab import state

pytestmark = [pytest.mark.netns, needs_agent]

PODS = 50
TWICE = ("c0", "c1")          # also added a second time, in the same burst
NODES = ("n1", "n2", "n3")


@pytest.fixture(scope="module")
def lab():
    with lab_up(nodes_count=len(NODES), backend="host-gw") as name:
        yield name


def burst(argvs: list[list[str]]) -> list[subprocess.CompletedProcess]:
    """Start every command at once, then wait for all (bounded)."""
    running = [subprocess.Popen([sys.executable, "-m", "tulle.cli.main", *a], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True) for a in argvs]
    done = []
    for p in running:
        out, err = p.communicate(timeout=120)
        done.append(subprocess.CompletedProcess(p.args, p.returncode, out, err))
    return done


def test_fifty_concurrent_adds_then_dels(lab):
    before = {n: pod_traces.node_view(lab, n) for n in NODES}
    names = [f"c{i}" for i in range(PODS)]
    adds = [["lab", "pod", "add", "--lab", lab, NODES[i % len(NODES)], n] for i, n in enumerate(names)]
    again = [["lab", "pod", "add", "--lab", lab, "n3", n] for n in TWICE]
    results = burst(adds + again)

    by_name: dict[str, list[subprocess.CompletedProcess]] = {}
    for argv, r in zip(adds + again, results):
        by_name.setdefault(argv[-1], []).append(r)
    for name, rs in by_name.items():
        codes = sorted(r.returncode for r in rs)
        assert codes == ([0, 1] if name in TWICE else [0]), (name, [r.stderr for r in rs])
        for r in rs:
            if r.returncode:
                assert r.stderr.strip() == f'Error from server (AlreadyExists): pods "{name}" already exists'

    st = state.load(lab)
    assert sorted(st.pods) == sorted(f"default/{n}" for n in names)
    ips = [p.ip for p in st.pods.values()]
    assert len(set(ips)) == PODS
    with api(lab) as c:
        objects = c.list("pods", "default")[0]
    assert sorted(o["metadata"]["name"] for o in objects) == sorted(names)
    assert {o["status"]["phase"] for o in objects} == {"Running"}
    assert {o["status"]["podIP"] for o in objects} == set(ips)
    for node in NODES:
        mine = {p.ip: p.container_id for p in st.pods.values() if p.node == node}
        assert pod_traces.leases(lab, node) == mine
        assert len(pod_traces.host_veths(lab, node)) == len(mine)

    dels = burst([["lab", "pod", "del", "--lab", lab, n] for n in names])
    assert [r.returncode for r in dels] == [0] * PODS, [r.stderr for r in dels if r.returncode][:3]
    assert {n: pod_traces.node_view(lab, n) for n in NODES} == before
    assert state.load(lab).pods == {}
    for name in names[:5] + list(TWICE):
        assert pod_traces.of_pod(lab, "default", name) == []


LIGHT = """
import sys
from tulle.cli.main import main
code = main(sys.argv[1:])
print(sorted(m for m in ("pyroute2", "tulle.kernel.rtnl") if m in sys.modules))
sys.exit(code)
"""


def test_pod_add_and_del_do_not_import_netlink(lab):
    """A pod add is one short process among many at once: importing pyroute2 cost more than
    the rest of the add (the netns, the CNI ADD through the agent, the server)."""
    for argv in (["lab", "pod", "add", "--lab", lab, "n1", "light"], ["lab", "pod", "del", "--lab", lab, "light"]):
        r = subprocess.run([sys.executable, "-c", LIGHT, *argv], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip().splitlines()[-1] == "[]", (argv, r.stdout)
