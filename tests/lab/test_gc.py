"""`tulle lab gc`: half-made pods are undone and whatever no pod owns is reclaimed — a pod netns
with a wired attachment and a server but no record, a lease + portmap rules whose sandbox and
result cache are gone (only CNI GC's valid-attachments can name those) — while running pods
keep everything; and a `pod add` that meets a half-made pod runs the same GC (issue 10, item 1)."""

from __future__ import annotations

import os

import pytest
import yaml

from tests.lab import pod_traces
from tests.lab.conftest import api, cli, lab_up, needs_agent
from tulle.cni.runtime import Attachment
from tulle.kernel import netns
from tulle.lab import containers, nodes, pods, podspec, topology
from tulle.lab.podspec import Container, Port

pytestmark = [pytest.mark.netns, needs_agent]

NODE = "n1"


@pytest.fixture(scope="module")
def lab():
    with lab_up(nodes_count=2, backend="host-gw") as name:
        yield name


def half_made_object(lab: str, name: str) -> None:
    """What an add killed right after its first write leaves: a Pending Pod object."""
    body = podspec.pod_manifest("default", name, NODE)
    with api(lab) as c:
        body["status"] = podspec.pending_status(c.clock())
        c.create(body)


def wired(lab: str, name: str, host_port: int = 0) -> Attachment:
    """A sandbox netns wired through the node's conflist, as a runtime that recorded nothing."""
    cid = pods.container_id(lab, "default", name)
    path = netns.create(topology.pod_netns(lab, name))
    caps = {"portMappings": [{"hostPort": host_port, "containerPort": 80, "protocol": "tcp"}]} if host_port else {}
    att = Attachment(container_id=cid, netns=path, capability_args=caps)
    node_path = netns.path_of(topology.node_netns(lab, NODE))
    netns.run_in(node_path, pods.runtime(lab, NODE).add, nodes.conflist(lab, NODE), att)
    return att


def lost(lab: str, name: str, host_port: int) -> None:
    """A lease, saved config and portmap rules whose sandbox and cache entry are gone (an ADD
    that finished after its runtime was killed, and the runtime's netns was removed)."""
    wired(lab, name, host_port)
    os.unlink(nodes.node_dir(lab, NODE, "cni-cache", f"{nodes.NETWORK_NAME}-{pods.container_id(lab, 'default', name)}-eth0"))
    netns.remove(topology.pod_netns(lab, name))


def test_gc_undoes_half_made_pods_and_reclaims_what_no_pod_owns(lab, tmp_path):
    keep = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "keep"}, "spec": {"nodeName": NODE, "containers": [
        {"name": "web", "image": "x", "ports": [{"containerPort": 8080, "hostPort": 30080}]}]}}
    (tmp_path / "keep.yaml").write_text(yaml.safe_dump(keep))
    assert cli("lab", "apply", "--lab", lab, "-f", str(tmp_path / "keep.yaml"))[0] == 0
    pods.add(lab, "n2", "client")
    before = {n: pod_traces.node_view(lab, n) for n in (NODE, "n2")}
    assert "30080" in pod_traces.ruleset(lab, NODE)

    half_made_object(lab, "half")
    wired(lab, "ghost")
    containers.start(lab, "default", "ghost", topology.pod_netns(lab, "ghost"),
                     (Container("ghost", (Port(8080, "TCP"),)),), "pod default/ghost")
    lost(lab, "lost", 30081)
    assert pod_traces.of_pod(lab, "default", "half") == ["object"]
    assert len(pod_traces.of_pod(lab, "default", "ghost")) >= 5      # netns, server, folder, lease, cni files
    assert "30081" in pod_traces.ruleset(lab, NODE)

    code, out, err = cli("lab", "gc", "--lab", lab)
    assert (code, err) == (0, ""), err
    assert out.splitlines() == ["pod default/half: half-made, undone",
                                "pod default/ghost: leftovers with no record, removed",
                                "node n1: CNI GC, 1 attachment(s) kept", "node n2: CNI GC, 1 attachment(s) kept"]
    for name in ("half", "ghost", "lost"):
        assert pod_traces.of_pod(lab, "default", name) == [], name
    assert {n: pod_traces.node_view(lab, n) for n in (NODE, "n2")} == before
    assert cli("lab", "probe", "--lab", lab, "client", "keep:8080") == (0, "default/keep (container web)\n", "")
    assert cli("lab", "gc", "--lab", lab) == (0, "node n1: CNI GC, 1 attachment(s) kept\n"
                                                 "node n2: CNI GC, 1 attachment(s) kept\n", "")


def test_an_add_that_meets_a_half_made_pod_collects_the_rest_too(lab):
    before = pod_traces.node_view(lab, NODE)
    half_made_object(lab, "again")
    lost(lab, "stray", 30082)
    code, out, err = cli("lab", "pod", "add", "--lab", lab, NODE, "again")
    assert code == 0, err
    assert pod_traces.of_pod(lab, "default", "stray") == []     # the add's GC took the lease and rules
    assert cli("lab", "pod", "del", "--lab", lab, "again")[0] == 0
    assert pod_traces.node_view(lab, NODE) == before
