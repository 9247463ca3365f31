"""`lab up` / `lab down`: nothing leaks, existing labs are refused, bad input and failures
during up leave nothing behind."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.lab.conftest import needs_agent
from tulle import procs
from tulle.errors import ConfigError, ExistsError, TulleError
from tulle.kernel import netns
from tulle.lab import agents, cluster, state, topology
from tulle.store import StoreUnavailable
from tulle.store.etcd_server import EtcdServer

pytestmark = pytest.mark.netns


def tulle(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tulle.cli.main", *args], capture_output=True, text=True,
                          timeout=120, check=False)


def traces(lab: str) -> list[str]:
    """Anything of `lab` that exists: netns, state dir, processes."""
    left = [n for n in netns.list_names(f"tulle-{lab}-") if topology.is_lab_netns(lab, n)]
    if os.path.exists(state.path(lab)):
        left.append(state.path(lab))
    root = state.path(lab) + "/"
    left += [f"pid {p}" for p in procs.find(lambda args: any(a.startswith(root) for a in args))]
    return left


@needs_agent
def test_up_down_ten_times_leaks_nothing(lab_name):
    for _ in range(10):
        st = cluster.up(lab_name, nodes_count=2)
        pids = list(st.nodes.values())
        assert all(agents.alive(lab_name, n, p) for n, p in st.nodes.items())
        assert traces(lab_name)
        assert cluster.down(lab_name) is True
        assert traces(lab_name) == []
        assert not any(procs.alive(p) for p in pids)


@needs_agent
def test_up_refuses_an_existing_lab_and_down_of_a_missing_lab_is_fine(lab_name):
    cluster.up(lab_name, nodes_count=1)
    before = traces(lab_name)
    with pytest.raises(ExistsError, match="already exists"):
        cluster.up(lab_name, nodes_count=1)
    out = tulle("lab", "up", "--lab", lab_name, "--nodes", "1")
    assert out.returncode == 1 and "already exists" in out.stderr
    assert traces(lab_name) == before and cluster.status(lab_name)["nodes"][0]["agent_alive"]
    out = tulle("lab", "down", "--lab", lab_name)
    assert out.returncode == 0 and "removed" in out.stdout and traces(lab_name) == []
    out = tulle("lab", "down", "--lab", lab_name)
    assert out.returncode == 0 and "does not exist" in out.stdout


@pytest.mark.parametrize("args, words", [
    (["--backend", "host-gw", "--segments", "2"], "host-gw needs every node on one L2 segment"),
    (["--backend", "bogus"], "unknown backend 'bogus'"),
    (["--segments", "3"], "--segments must be 1 or 2"),
    (["--subnet-len", "8"], "SubnetLen /8 is larger than the network allows"),
    (["--network", "198.51.100.0/24"], "overlaps the lab underlay"),
    (["--network", "10.0.0.0/24", "--subnet-len", "26", "--nodes", "4"], "fewer than the 4 nodes"),
])
def test_bad_input_is_refused_and_creates_nothing(lab_name, args, words):
    out = tulle("lab", "up", "--lab", lab_name, *args)
    assert out.returncode == 1 and words in out.stderr, out.stderr
    assert "Traceback" not in out.stderr
    assert traces(lab_name) == []


def test_etcd_that_never_starts_fails_up_and_leaves_nothing(lab_name, monkeypatch):
    monkeypatch.setattr(EtcdServer, "start", lambda self, timeout=0: None)   # "etcd not started"
    with pytest.raises(StoreUnavailable, match="198.51.100.254:2379"):
        cluster.up(lab_name, nodes_count=1, store="etcd")
    assert traces(lab_name) == []


@needs_agent
def test_agent_that_cannot_reach_its_store_fails_up_and_leaves_nothing(lab_name, monkeypatch):
    real = agents.command

    def wrong_url(plan, node):
        cmd = real(plan, node)
        cmd[cmd.index("--store") + 1] = "etcd://198.51.100.254:2999"   # nobody listens there
        return cmd

    monkeypatch.setattr(agents, "command", wrong_url)
    with pytest.raises(TulleError) as exc:
        cluster.up(lab_name, nodes_count=1, store="etcd", timeout=15)
    assert "agent" in exc.value.msg and "2999" in exc.value.msg, exc.value.msg
    assert traces(lab_name) == []


def test_unknown_lab_is_a_clear_error():
    out = tulle("lab", "status", "--lab", "nosuchlab")
    assert out.returncode == 1 and "lab 'nosuchlab' does not exist" in out.stderr
    with pytest.raises(ConfigError, match="bad lab name"):
        cluster.down("../etc")
