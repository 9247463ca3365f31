"""The lab's underlay: a fabric netns with one bridge per L2 segment, and a router
netns joining the segments when there are two.

The fabric netns stands for "the network outside the cluster": it owns .254 of
segment 0 (etcd listens there with --store etcd) and reaches segment 1 through
the router. Nothing here has a default route, so no lab packet can leave the lab.
"""

from __future__ import annotations

import contextlib

from tulle.kernel import addrs, links, netns, routes, sysctl
from tulle.lab.topology import Plan, Segment


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
