"""Neighbour (ARP/NDP) entries and bridge/VXLAN forwarding-database entries in the
calling thread's namespace. The overlay backends program these per remote node."""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass

from tulle.errors import NotFoundError
from tulle.kernel import links, rtnl
from tulle.kernel.rtnl import ipr

NUD_PERMANENT = 0x80
NTF_SELF = 0x02


@dataclass(frozen=True)
class Neighbour:
    dev: str
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address
    mac: str
    permanent: bool


@dataclass(frozen=True)
class FdbEntry:
    dev: str
    mac: str
    dst: ipaddress.IPv4Address | ipaddress.IPv6Address | None


def replace(dev: str, ip: ipaddress.IPv4Address | ipaddress.IPv6Address, mac: str) -> None:
    """A permanent neighbour entry ip → mac on dev (create or update)."""
    idx = links.index_of(dev)
    family = socket.AF_INET if ip.version == 4 else socket.AF_INET6
    with rtnl.errors(f"set neighbour {ip} on {dev}"):
        ipr().neigh("replace", ifindex=idx, dst=str(ip), lladdr=mac, state=NUD_PERMANENT, family=family)


def delete(dev: str, ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    index = links.find_index(dev)
    if index is None:
        return False
    family = socket.AF_INET if ip.version == 4 else socket.AF_INET6
    try:
        with rtnl.errors(f"delete neighbour {ip} on {dev}"):
            ipr().neigh("del", ifindex=index, dst=str(ip), family=family)
    except NotFoundError:
        return False
    return True


def list_on(dev: str, permanent_only: bool = True) -> list[Neighbour]:
    index = links.find_index(dev)
    if index is None:
        return []
    out = []
    for msg in ipr().get_neighbours(ifindex=index):
        dst, mac = msg.get_attr("NDA_DST"), msg.get_attr("NDA_LLADDR")
        permanent = bool(msg["state"] & NUD_PERMANENT)
        if dst is None or mac is None or (permanent_only and not permanent):
            continue
        out.append(Neighbour(dev=dev, ip=ipaddress.ip_address(dst), mac=mac, permanent=permanent))
    return out


def fdb_append(dev: str, mac: str, dst: ipaddress.IPv4Address | ipaddress.IPv6Address) -> None:
    """A VXLAN FDB entry: frames for `mac` go to the remote VTEP `dst`."""
    idx = links.index_of(dev)
    with rtnl.errors(f"add fdb {mac} → {dst} on {dev}"):
        ipr().fdb("replace", ifindex=idx, lladdr=mac, dst=str(dst), state=NUD_PERMANENT,
                  flags=NTF_SELF)


def fdb_delete(dev: str, mac: str, dst: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    index = links.find_index(dev)
    if index is None:
        return False
    try:
        with rtnl.errors(f"delete fdb {mac} on {dev}"):
            ipr().fdb("del", ifindex=index, lladdr=mac, dst=str(dst), flags=NTF_SELF)
    except NotFoundError:
        return False
    return True


def fdb_list(dev: str) -> list[FdbEntry]:
    index = links.find_index(dev)
    if index is None:
        return []
    out = []
    for msg in ipr().fdb("dump", ifindex=index):
        if msg["ifindex"] != index:
            continue
        dst = msg.get_attr("NDA_DST")
        out.append(FdbEntry(dev=dev, mac=msg.get_attr("NDA_LLADDR"),
                            dst=ipaddress.ip_address(dst) if dst else None))
    return out
