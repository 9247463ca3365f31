"""What an existing VXLAN device is configured with, so a backend can decide to
keep it (and its MAC, which other nodes know from the lease) or rebuild it."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from tulle.kernel import links
from tulle.kernel.rtnl import ipr


@dataclass(frozen=True)
class VxlanInfo:
    vni: int
    port: int
    local: ipaddress.IPv4Address | None
    link_index: int | None     # the underlay device (IFLA_VXLAN_LINK)
    learning: bool


def info(name: str) -> VxlanInfo | None:
    """The VXLAN settings of link `name`; None when it is missing or not a vxlan."""
    link = links.get(name)
    if link is None or link.kind != "vxlan":
        return None
    msgs = ipr().get_links(link.index)
    linkinfo = msgs[0].get_attr("IFLA_LINKINFO") if msgs else None
    data = linkinfo.get_attr("IFLA_INFO_DATA") if linkinfo is not None else None
    if data is None:
        return None
    local = data.get_attr("IFLA_VXLAN_LOCAL")
    return VxlanInfo(
        vni=data.get_attr("IFLA_VXLAN_ID") or 0,
        port=data.get_attr("IFLA_VXLAN_PORT") or 0,
        local=ipaddress.IPv4Address(local) if local else None,
        link_index=data.get_attr("IFLA_VXLAN_LINK"),
        learning=bool(data.get_attr("IFLA_VXLAN_LEARNING")),
    )
