"""What a node's pod network holds, looked up the way a careful operator would: the CNI
leases on disk, the host-side veths, the nft rules tagged with a pod's container id, the
saved CNI configs and result cache. The chaos run's invariants and the tests of
interrupted adds, GC and concurrent adds compare these with the pods the lab knows."""

from __future__ import annotations

import os
import subprocess

from tulle.kernel import links, netns
from tulle.lab import nodes, topology


def lease_dir(lab: str, node: str) -> str:
    return nodes.node_dir(lab, node, "cni", "networks", nodes.NETWORK_NAME)


def leases(lab: str, node: str) -> dict[str, str]:
    """host-local's lease files on `node`: address -> container id."""
    d = lease_dir(lab, node)
    out = {}
    for name in sorted(os.listdir(d)) if os.path.isdir(d) else []:
        if name[0].isdigit():
            with open(os.path.join(d, name)) as f:
                out[name] = (f.read().splitlines() or [""])[0].strip()
    return out


def host_veths(lab: str, node: str) -> list[str]:
    """The pods' host-side veths in the node netns (its own underlay eth0 is a veth too)."""
    path = netns.path_of(topology.node_netns(lab, node))
    return sorted(link.name for link in netns.run_in(path, links.all_links)
                  if link.kind == "veth" and link.name != topology.UNDERLAY_DEV)


def ruleset(lab: str, node: str) -> str:
    path = netns.path_of(topology.node_netns(lab, node))
    return subprocess.run(["nsenter", f"--net={path}", "nft", "list", "ruleset"], capture_output=True, text=True,
                          check=True, timeout=30).stdout


def files(lab: str, node: str, *parts: str) -> list[str]:
    d = nodes.node_dir(lab, node, *parts)
    return sorted(f for f in os.listdir(d) if os.path.isfile(os.path.join(d, f))) if os.path.isdir(d) else []


def node_view(lab: str, node: str) -> dict:
    """A node's pod network, to compare before and after: leases, host veths, the nft rules
    tagged with a pod's container id, saved CNI configs and result cache entries."""
    tagged = [line.strip() for line in ruleset(lab, node).splitlines() if f"{lab}_" in line]   # container ids
    return {"leases": leases(lab, node), "veths": len(host_veths(lab, node)), "nft rules of pods": tagged,
            "saved configs": files(lab, node, "cni"), "cni cache": files(lab, node, "cni-cache")}
