"""One lab, pods on one node and across: status/pods JSON, exec, add/del, errors."""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import sys

import pytest

from tests.lab.conftest import needs_agent
from tulle.cluster import errors
from tulle.errors import ConfigError
from tulle.kernel import netns
from tulle.lab import checks, cluster, nodes, pods, state, topology

pytestmark = [pytest.mark.netns, needs_agent]


def tulle(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tulle.cli.main", *args], capture_output=True, text=True,
                          timeout=60, check=False)


def lease_files(lab: str, node: str) -> list[str]:
    d = nodes.node_dir(lab, node, "cni", "networks", nodes.NETWORK_NAME)
    return sorted(f for f in os.listdir(d) if f[0].isdigit()) if os.path.isdir(d) else []


def test_status_pods_exec_and_pod_lifecycle_on_one_node(make_lab):
    st = make_lab(nodes_count=2)
    lab = st.lab
    status = json.loads(tulle("lab", "status", "--lab", lab, "--json").stdout)
    assert [n["name"] for n in status["nodes"]] == ["n1", "n2"]
    subnets = {}
    for n in status["nodes"]:
        assert n["agent_alive"] and n["agent_pid"] > 0 and n["segment"] == "seg0"
        subnets[n["name"]] = ipaddress.IPv4Network(n["subnet"])
        assert subnets[n["name"]].subnet_of(ipaddress.IPv4Network("10.244.0.0/16"))
    assert subnets["n1"] != subnets["n2"]

    a = pods.add(lab, "n1", "a")
    out = tulle("lab", "pod", "add", "--lab", lab, "n1", "b")
    assert out.returncode == 0, out.stderr
    listed = json.loads(tulle("lab", "pods", "--lab", lab, "--json").stdout)
    assert [p["name"] for p in listed] == ["a", "b"] and {p["node"] for p in listed} == {"n1"}
    assert {p["namespace"] for p in listed} == {"default"}
    b_ip = listed[1]["ip"]
    assert ipaddress.IPv4Address(a.ip) in subnets["n1"] and ipaddress.IPv4Address(b_ip) in subnets["n1"]
    assert lease_files(lab, "n1") == sorted([a.ip, b_ip])

    shown = tulle("lab", "exec", "--lab", lab, "a", "--", "ip", "-4", "-o", "addr", "show", "eth0")
    assert shown.returncode == 0 and f"{a.ip}/" in shown.stdout
    assert checks.ping(lab, "a", b_ip).returncode == 0       # same node, through the node's bridge
    assert tulle("lab", "exec", "--lab", lab, "a", "--", "false").returncode == 1  # exit status passes through

    with pytest.raises(errors.AlreadyExists, match='pods "a" already exists'):
        pods.add(lab, "n2", "a")
    with pytest.raises(ConfigError, match="no node 'n9'"):
        pods.add(lab, "n9", "c")
    assert not netns.exists(topology.pod_netns(lab, "c"))

    out = tulle("lab", "pod", "del", "--lab", lab, "b")
    assert out.returncode == 0 and out.stdout.strip() == 'pod "b" deleted'
    assert not netns.exists(topology.pod_netns(lab, "b"))
    assert lease_files(lab, "n1") == [a.ip]                  # the address went back
    assert [p["name"] for p in cluster.status(lab)["pods"]] == ["a"]
    with pytest.raises(errors.NotFound, match='pods "b" not found'):
        pods.delete(lab, "b")
    missing = tulle("lab", "exec", "--lab", lab, "b", "--", "true")
    assert missing.returncode == 1 and "no pod 'b'" in missing.stderr
    gone = tulle("lab", "pod", "del", "--lab", lab, "b")
    assert gone.returncode == 1 and gone.stderr.strip() == 'Error from server (NotFound): pods "b" not found'

    c = pods.add(lab, "n2", "c")                             # another node: across the fabric
    assert ipaddress.IPv4Address(c.ip) in subnets["n2"]
    results = checks.all_pairs(state.load(lab))
    assert results and all(r.ok for r in results), results
