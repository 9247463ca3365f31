"""loopback: brings up `lo` in the pod. The simplest plugin, and the model of
the fixed reading order every plugin follows: config, helpers, verbs, PLUGIN."""

from __future__ import annotations

import ipaddress

from tulle.cni import sandbox
from tulle.cni.skel import Call, Plugin
from tulle.cni.types import Interface, IPConfig, Result
from tulle.errors import CheckFailed
from tulle.kernel import addrs, links

LO_ADDRS = [ipaddress.ip_interface("127.0.0.1/8"), ipaddress.ip_interface("::1/128")]


def _lo_state() -> tuple[bool, list]:
    lo = links.require("lo")
    return lo.up, addrs.list_on("lo")


def cmd_add(call: Call) -> Result:
    sandbox.require_netns(call.env.netns)
    sandbox.run(call.env.netns, links.set_up, "lo")
    _, present = sandbox.run(call.env.netns, _lo_state)
    result = Result(cni_version=call.version)
    idx = result.add_interface(Interface(name="lo", mac="00:00:00:00:00:00", sandbox=call.env.netns))
    result.ips = [IPConfig(address=a, interface=idx) for a in LO_ADDRS if a in present]
    return result


def cmd_del(call: Call) -> None:
    if sandbox.present(call.env.netns):
        sandbox.run(call.env.netns, links.set_down, "lo")


def cmd_check(call: Call) -> None:
    sandbox.require_netns(call.env.netns)
    up, _ = sandbox.run(call.env.netns, _lo_state)
    if not up:
        raise CheckFailed("loopback: lo is down")


PLUGIN = Plugin(name="loopback", add=cmd_add, delete=cmd_del, check=cmd_check)
