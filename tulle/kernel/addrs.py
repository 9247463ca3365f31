"""IP addresses on links of the calling thread's namespace."""

from __future__ import annotations

import ipaddress
import socket

from tulle.errors import ExistsError, NotFoundError
from tulle.kernel import links, rtnl
from tulle.kernel.rtnl import ipr

IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface


def list_on(name: str, family: int | None = None) -> list[IPInterface]:
    """Addresses (with prefix) on link `name`, IPv4 then IPv6, link-local v6 left out."""
    index = links.index_of(name)
    out: list[IPInterface] = []
    for msg in ipr().get_addr(index=index):
        if family and msg["family"] != family:
            continue
        iface = ipaddress.ip_interface(f"{msg.get_attr('IFA_ADDRESS')}/{msg['prefixlen']}")
        if iface.version == 6 and iface.ip.is_link_local:
            continue
        out.append(iface)
    return sorted(out, key=lambda a: (a.version, a))


def add(name: str, address: IPInterface, broadcast: bool = True) -> None:
    """Add `address` to link `name`; IPv4 gets the usual broadcast address."""
    spec: dict = {"index": links.index_of(name), "address": str(address.ip), "prefixlen": address.network.prefixlen}
    if address.version == 4 and broadcast and address.network.prefixlen < 31:
        spec["broadcast"] = str(address.network.broadcast_address)
    with rtnl.errors(f"add address {address} to {name}"):
        ipr().addr("add", **spec)


def ensure(name: str, address: IPInterface) -> None:
    """Add unless already there."""
    if address not in list_on(name):
        try:
            add(name, address)
        except ExistsError:
            pass


def delete(name: str, address: IPInterface) -> bool:
    index = links.find_index(name)
    if index is None:
        return False
    try:
        with rtnl.errors(f"delete address {address} from {name}"):
            ipr().addr("del", index=index, address=str(address.ip),
                       prefixlen=address.network.prefixlen)
    except NotFoundError:
        return False
    except Exception:
        if address not in list_on(name):
            return False
        raise
    return True


FAMILY = {4: socket.AF_INET, 6: socket.AF_INET6}


IFA_F_TENTATIVE = 0x40
IFA_F_DADFAILED = 0x08


def tentative(name: str) -> list[IPInterface]:
    """IPv6 addresses on `name` still in duplicate address detection (not usable as a source yet)."""
    out = []
    for msg in ipr().get_addr(index=links.index_of(name), family=socket.AF_INET6):
        flags = msg.get_attr("IFA_FLAGS") or msg["flags"]
        if flags & (IFA_F_TENTATIVE | IFA_F_DADFAILED) == IFA_F_TENTATIVE:
            out.append(ipaddress.ip_interface(f"{msg.get_attr('IFA_ADDRESS')}/{msg['prefixlen']}"))
    return out
