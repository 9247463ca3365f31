"""Lab nodes' files: the runtime side of a node (CNI conflist, the agent's socket,
subnet.env, state) lives in the lab's state dir under the node's name.

Nothing here touches the kernel (the node netns is tulle.lab.fabric's), so the
pod-add path, which reads the conflist, does not import netlink.
"""

from __future__ import annotations

import json
import os

from tulle.lab import state
from tulle.lab.topology import Node, Plan

CNI_VERSION = "1.1.0"          # GC and STATUS (spec 1.1): `lab gc` collects through the conflist
NETWORK_NAME = "tulle"


def node_dir(lab: str, node: str, *parts: str) -> str:
    return state.path(lab, node, *parts)


def subnet_file(lab: str, node: str) -> str:
    return node_dir(lab, node, "subnet.env")


def agent_socket(lab: str, node: str) -> str:
    return node_dir(lab, node, "agent.sock")


def conflist_path(lab: str, node: str) -> str:
    return node_dir(lab, node, "net.d", "10-tulle.conflist")


def conflist(lab: str, node: str) -> dict:
    """What a runtime on this node finds in its net.d: the conflist `build` wrote (it depends
    on the backend: bgp nodes wire pods with tulle-routed), else the fabric default."""
    try:
        with open(conflist_path(lab, node)) as f:
            return json.load(f)
    except FileNotFoundError:
        return fabric_conflist(lab, node)


def conflist_for(plan: Plan, node: Node) -> dict:
    """The conflist a node of this plan gets: routed + block IPAM for bgp, the fabric plugin otherwise."""
    if plan.backend == "bgp":
        from tulle.lab import bgp

        return bgp.conflist(plan, node)
    return fabric_conflist(plan.lab, node.name)


def fabric_conflist(lab: str, node: str) -> dict:
    """The Flannel-style conflist (kube-flannel's cni-conf.json): the fabric plugin, whose bridge
    is every pod's default gateway (pods reach node addresses and, later, Service VIPs; the
    nodes have no default route, so nothing leaves the lab) and hairpins (a pod reaching
    itself through a Service), then portmap."""
    return {
        "cniVersion": CNI_VERSION,
        "name": NETWORK_NAME,
        "plugins": [
            {"type": "tulle", "subnetFile": subnet_file(lab, node), "agentSocket": agent_socket(lab, node),
             "dataDir": node_dir(lab, node, "cni"),
             "delegate": {"hairpinMode": True, "isDefaultGateway": True}},
            portmap(lab, node),
        ],
    }


def portmap(lab: str, node: str) -> dict:
    """Every lab conflist's last plugin. It names the node's agent socket as the first one
    does: without it the executable finds no agent at the default path and runs standalone,
    ~0.25 s of CPU per ADD or DEL (interpreter, imports, nft) instead of ~0.02 s."""
    return {"type": "portmap", "capabilities": {"portMappings": True}, "agentSocket": agent_socket(lab, node)}


def write_files(plan: Plan, node: Node) -> None:
    """The node's runtime-side files: its net.d conflist and the CNI data dir (its netns is
    tulle.lab.fabric's)."""
    os.makedirs(node_dir(plan.lab, node.name, "net.d"), exist_ok=True)
    os.makedirs(node_dir(plan.lab, node.name, "cni"), exist_ok=True)
    with open(conflist_path(plan.lab, node.name), "w") as f:
        json.dump(conflist_for(plan, node), f, indent=2)
        f.write("\n")
