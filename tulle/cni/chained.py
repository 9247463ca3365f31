"""Helpers shared by chained (meta) plugins: they read the main plugin's result
and print it back, possibly amended."""

from __future__ import annotations

import copy

from tulle.cni.skel import Call
from tulle.cni.types import IPConfig, Result


def pass_through(call: Call) -> Result:
    """A copy of the required prevResult, to be amended and printed in the call's version."""
    result = copy.deepcopy(call.require_prev_result())
    result.cni_version = call.version
    return result


def pod_ips(result: Result, sandbox_only: bool = True) -> list[IPConfig]:
    """The IPs that belong to the pod: those whose interface is inside a sandbox
    (or that name no interface at all, as some IPAM-only results do)."""
    out = []
    for ip in result.ips:
        idx = ip.interface
        if idx is None or not sandbox_only:
            out.append(ip)
        elif 0 <= idx < len(result.interfaces) and result.interfaces[idx].sandbox:
            out.append(ip)
    return out
