"""The opening every CHECK of a plugin that makes a pod interface shares (bridge, ptp,
macvlan, tulle-routed): the pod's netns exists, a prevResult is given, IPAM confirms
its lease, and the pod interface with its addresses is found in the prevResult."""

from __future__ import annotations

from dataclasses import dataclass

from tulle.cni import iface, ipam, sandbox
from tulle.cni.skel import Call
from tulle.cni.types import Interface, IPConfig, Result


@dataclass(frozen=True)
class PodInResult:
    netns: str
    prev: Result
    index: int            # the pod interface's position in prev.interfaces
    interface: Interface
    ips: list[IPConfig]   # prev's addresses on that interface (or on none)


def pod_in_result(call: Call, with_ipam: bool = True) -> PodInResult:
    """Each step raises the spec's error (no netns, no prevResult, lease or interface missing)."""
    netns = sandbox.require_netns(call.env.netns)
    prev = call.require_prev_result()
    if with_ipam:
        ipam.check(call)
    index, interface = iface.find_in_result(prev, call.env.ifname, netns)
    return PodInResult(netns, prev, index, interface, [ip for ip in prev.ips if ip.interface in (None, index)])
