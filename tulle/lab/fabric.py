"""The lab's underlay: a fabric netns with one bridge per L2 segment, a router
netns joining the segments when there are two, and the nodes plugged into them.

A node netns is what a cluster machine would be: an underlay NIC (`eth0`) with
its address, a route to the other segment via the router, forwarding on, and
no default route.

The fabric netns stands for "the network outside the cluster": it owns .254 of
segment 0 (etcd listens there with --store etcd) and reaches segment 1 through
the router. Nothing here has a default route, so no lab packet can leave the lab.
"""

from __future__ import annotations

import contextlib

from tulle.kernel import addrs, links, netns, routes, sysctl
from tulle.lab.topology import UNDERLAY_DEV, Node, Plan, Segment


def _setup_fabric(plan: Plan) -> None:
    links.set_up("lo")
    for seg in plan.segments:
        links.add_bridge(seg.bridge)
        links.set_up(seg.bridge)
    addrs.add(plan.segments[0].bridge, plan.fabric_ip)
    for seg in plan.segments[1:]:
        routes.add(routes.Route(dst=seg.cidr, gw=plan.segments[0].router_ip.ip))


def _router_leg(seg: Segment, router_path: str) -> None:
    """In the fabric netns: a veth from the segment bridge to the router's leg."""
    fabric_end = f"r-{seg.bridge}"
    links.add_veth(fabric_end, seg.router_leg, peer_netns=router_path)
    links.set_master(fabric_end, seg.bridge)
    links.set_up(fabric_end)


def _setup_router(plan: Plan) -> None:
    links.set_up("lo")
    sysctl.set("net.ipv4.ip_forward", 1)
    for seg in plan.segments:
        addrs.add(seg.router_leg, seg.router_ip)
        links.set_up(seg.router_leg)


def build(plan: Plan, undo: contextlib.ExitStack) -> None:
    """Create fabric (and router); their removal is pushed on `undo` as each appears."""
    fabric = netns.create(plan.fabric_netns)
    undo.callback(netns.remove, plan.fabric_netns)
    netns.run_in(fabric, _setup_fabric, plan)
    if plan.router_netns:
        router = netns.create(plan.router_netns)
        undo.callback(netns.remove, plan.router_netns)
        for seg in plan.segments:
            netns.run_in(fabric, _router_leg, seg, router)
        netns.run_in(router, _setup_router, plan)


def teardown(plan: Plan) -> None:
    """Remove router and fabric (their veths and bridges go with them); missing is fine."""
    if plan.router_netns:
        netns.remove(plan.router_netns)
    netns.remove(plan.fabric_netns)


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


def add_node(plan: Plan, node: Node, undo: contextlib.ExitStack) -> None:
    """Create the node netns and wire it to its segment."""
    path = netns.create(node.netns)
    undo.callback(netns.remove, node.netns)
    fabric = netns.path_of(plan.fabric_netns)
    # The fabric end dies with the node netns (deleting one end of a veth deletes both).
    netns.run_in(fabric, _plug, node, plan.segments[node.segment].bridge, path)
    netns.run_in(path, _setup_node, plan, node)


def remove_node(node: Node) -> None:
    netns.remove(node.netns)
