"""What is left of a lab pod, and of a node's pod network, for the tests of interrupted adds,
GC and concurrent adds: every part a pod add makes, looked up by the names it derives."""

from __future__ import annotations

import os

from tests.lab.conftest import api
from tulle import procs
from tulle.kernel import netns
from tulle.lab import containers, nodes, pods, podspec, state, topology
from tulle.lab.inventory import host_veths, leases, node_view, ruleset   # noqa: F401 (the tests' names)


def servers(lab: str, namespace: str, name: str) -> list[int]:
    """Processes running from the pod's folder (its servers carry their log path there)."""
    folder = containers.pod_dir(lab, namespace, name) + "/"
    return procs.find(lambda args: any(a.startswith(folder) for a in args))


def of_pod(lab: str, namespace: str, name: str) -> list[str]:
    """Whatever exists of one pod: object, netns, state entry, servers, folder, CNI state."""
    left = []
    with api(lab) as c:
        if c.find("pods", name, namespace) is not None:
            left.append("object")
    if os.path.exists(netns.path_of(topology.pod_netns(lab, name, namespace))):
        left.append("netns")
    if podspec.key(namespace, name) in state.load(lab).pods:
        left.append("state")
    left += [f"server {pid}" for pid in servers(lab, namespace, name)]
    if os.path.exists(containers.pod_dir(lab, namespace, name)):
        left.append("folder")
    cid = pods.container_id(lab, namespace, name)
    for node in state.load(lab).nodes:
        left += [f"lease {ip} on {node}" for ip, owner in leases(lab, node).items() if owner == cid]
        for sub in ("cni", "cni-cache"):
            d = nodes.node_dir(lab, node, sub)
            left += [f"{sub}/{f} on {node}" for f in (os.listdir(d) if os.path.isdir(d) else []) if cid in f]
        if cid in ruleset(lab, node):
            left.append(f"nft rule of {cid} on {node}")
    return left


def stage(lab: str, namespace: str, name: str, node: str) -> str:
    """How far an add got: nothing, object, netns, cni (a lease), servers, running."""
    if podspec.key(namespace, name) in state.load(lab).pods:
        return "running"
    if servers(lab, namespace, name):
        return "servers"
    if pods.container_id(lab, namespace, name) in leases(lab, node).values():
        return "cni"
    if os.path.exists(netns.path_of(topology.pod_netns(lab, name, namespace))):
        return "netns"
    with api(lab) as c:
        return "object" if c.find("pods", name, namespace) is not None else "nothing"
