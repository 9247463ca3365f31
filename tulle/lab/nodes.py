"""Lab nodes: a netns per node on its segment's bridge, and the node's files.

A node netns is what a cluster machine would be: an underlay NIC (`eth0`) with
its address, a route to the other segment via the router, forwarding on, and
no default route. Its runtime-side files (CNI conflist, the agent's socket,
subnet.env, state) live in the lab's state dir under the node's name.
"""

from __future__ import annotations

import contextlib
import json
import os

from tulle.kernel import addrs, links, netns, routes, sysctl
from tulle.lab import state
from tulle.lab.topology import UNDERLAY_DEV, Node, Plan

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


def _setup_node(plan: Plan, node: Node) -> None:
    links.set_up("lo")
    addrs.add(UNDERLAY_DEV, node.ip)
    links.set_up(UNDERLAY_DEV)
    for dst, via in plan.routes_of(node):
        routes.add(routes.Route(dst=dst, gw=via))
    # A node forwards between its pods and the underlay, like any cluster machine.
    sysctl.set("net.ipv4.ip_forward", 1)


def _plug(node: Node, bridge: str, node_path: str) -> None:
    """In the fabric netns: the node's veth, its far end created as eth0 inside the node netns."""
    links.add_veth(node.fabric_port, UNDERLAY_DEV, peer_netns=node_path)
    links.set_master(node.fabric_port, bridge)
    links.set_up(node.fabric_port)


def build(plan: Plan, node: Node, undo: contextlib.ExitStack) -> None:
    """Create the node netns, wire it to its segment and write its files."""
    path = netns.create(node.netns)
    undo.callback(netns.remove, node.netns)
    fabric = netns.path_of(plan.fabric_netns)
    # The fabric end dies with the node netns (deleting one end of a veth deletes both).
    netns.run_in(fabric, _plug, node, plan.segments[node.segment].bridge, path)
    netns.run_in(path, _setup_node, plan, node)
    os.makedirs(node_dir(plan.lab, node.name, "net.d"), exist_ok=True)
    os.makedirs(node_dir(plan.lab, node.name, "cni"), exist_ok=True)
    with open(conflist_path(plan.lab, node.name), "w") as f:
        json.dump(conflist_for(plan, node), f, indent=2)
        f.write("\n")


def remove(plan: Plan, node: Node) -> None:
    netns.remove(node.netns)
