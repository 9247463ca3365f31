"""Network devices in the calling thread's namespace: veth, bridge, macvlan,
ifb, vxlan, tun; their state (up, MTU, MAC, master, promisc) and moves between
namespaces."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

from tulle.errors import NotFoundError
from tulle.kernel import rtnl
from tulle.kernel.rtnl import ipr

MACVLAN_MODES = {"private": 1, "vepa": 2, "bridge": 4, "passthru": 8, "source": 16}


@dataclass(frozen=True)
class Link:
    index: int
    name: str
    kind: str
    mac: str
    mtu: int
    up: bool
    promisc: bool
    master: int | None
    peer_index: int | None  # IFLA_LINK: a veth's peer, a macvlan's master
    allmulti: bool = False
    txqlen: int = 0
    alias: str = ""  # IFLA_IFALIAS: tulle tags host devices it owns (ifbs) with it


def _to_link(msg) -> Link:
    info = msg.get_attr("IFLA_LINKINFO")
    kind = info.get_attr("IFLA_INFO_KIND") if info is not None else ""
    flags = msg["flags"]
    return Link(
        index=msg["index"],
        name=msg.get_attr("IFLA_IFNAME"),
        kind=kind or "",
        mac=msg.get_attr("IFLA_ADDRESS") or "",
        mtu=msg.get_attr("IFLA_MTU") or 0,
        up=bool(flags & 1),
        promisc=bool(flags & 0x100),
        master=msg.get_attr("IFLA_MASTER"),
        peer_index=msg.get_attr("IFLA_LINK"),
        allmulti=bool(flags & 0x200),
        txqlen=msg.get_attr("IFLA_TXQLEN") or 0,
        alias=msg.get_attr("IFLA_IFALIAS") or "",
    )


def get(name: str) -> Link | None:
    """The link called `name` here, or None (one request: the kernel looks the name up)."""
    try:
        with rtnl.errors(f"get link {name}"):
            msgs = ipr().link("get", ifname=name)
    except NotFoundError:
        return None
    return _to_link(msgs[0]) if msgs else None


def get_by_index(index: int) -> Link | None:
    try:
        msgs = ipr().get_links(index)
    except Exception:  # ENODEV and friends: simply not there
        return None
    return _to_link(msgs[0]) if msgs else None


def require(name: str) -> Link:
    link = get(name)
    if link is None:
        raise NotFoundError(f"link {name!r} not found")
    return link


def mtu_of(name: str) -> int:
    """The MTU of `name`, or 0 when there is no such link."""
    link = get(name)
    return link.mtu if link else 0


def all_links() -> list[Link]:
    return [_to_link(m) for m in ipr().get_links()]


def find_index(name: str) -> int | None:
    """The ifindex of `name` here, or None.

    An ioctl on a socket of the calling thread's netns (if_nametoindex), not a
    netlink round trip: a link message carries ~40 attributes that pyroute2
    decodes in Python, and most callers want nothing but the index."""
    try:
        return socket.if_nametoindex(name)
    except OSError:
        return None


def index_of(name: str) -> int:
    """find_index, for callers that need the link: NotFoundError when it is absent."""
    index = find_index(name)
    if index is None:
        raise NotFoundError(f"link {name!r} not found")
    return index


def name_of(index: int) -> str | None:
    """The name of link `index` here, or None (the ioctl counterpart of index_of)."""
    try:
        return socket.if_indextoname(index)
    except OSError:
        return None


def _open_netns(path: str) -> int:
    try:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise NotFoundError(f"network namespace {path} does not exist") from None


def add_veth(name: str, peer: str, peer_netns: str | None = None, mtu: int = 0,
             mac: str = "", peer_mac: str = "") -> None:
    """A veth pair: `name` here, `peer` here or directly inside `peer_netns`."""
    peer_spec: dict = {"ifname": peer}
    if mtu:
        peer_spec["mtu"] = mtu
    if peer_mac:
        peer_spec["address"] = peer_mac
    fd = _open_netns(peer_netns) if peer_netns else None
    if fd is not None:
        peer_spec["net_ns_fd"] = fd
    spec: dict = {"ifname": name, "kind": "veth", "peer": peer_spec}
    if mtu:
        spec["mtu"] = mtu
    if mac:
        spec["address"] = mac
    try:
        with rtnl.errors(f"create veth {name}/{peer}"):
            ipr().link("add", **spec)
    finally:
        if fd is not None:
            os.close(fd)


def add_bridge(name: str, mtu: int = 0, vlan_filtering: bool = False) -> None:
    spec: dict = {"ifname": name, "kind": "bridge"}
    if mtu:
        spec["mtu"] = mtu
    if vlan_filtering:
        spec["br_vlan_filtering"] = 1
    with rtnl.errors(f"create bridge {name}"):
        ipr().link("add", **spec)


def add_macvlan(name: str, master: str, mode: str = "bridge", mtu: int = 0, mac: str = "") -> None:
    spec: dict = {"ifname": name, "kind": "macvlan", "link": index_of(master),
                  "macvlan_mode": MACVLAN_MODES[mode]}
    if mtu:
        spec["mtu"] = mtu
    if mac:
        spec["address"] = mac
    with rtnl.errors(f"create macvlan {name} on {master}"):
        ipr().link("add", **spec)


def add_ifb(name: str, mtu: int = 0, alias: str = "", txqlen: int = 0) -> None:
    spec: dict = {"ifname": name, "kind": "ifb"}
    if mtu:
        spec["mtu"] = mtu
    if txqlen:
        spec["txqlen"] = txqlen
    with rtnl.errors(f"create ifb {name}"):
        ipr().link("add", **spec)
    if alias:  # the kernel ignores IFLA_IFALIAS on creation
        set_alias(name, alias)


def add_vxlan(name: str, vni: int, port: int, local: str, dev: str | None = None,
              mtu: int = 0, learning: bool = False, mac: str = "") -> None:
    spec: dict = {"ifname": name, "kind": "vxlan", "vxlan_id": vni, "vxlan_port": port,
                  "vxlan_local": local, "vxlan_learning": int(learning)}
    if dev:
        spec["vxlan_link"] = index_of(dev)
    if mtu:
        spec["mtu"] = mtu
    if mac:
        spec["address"] = mac
    with rtnl.errors(f"create vxlan {name}"):
        ipr().link("add", **spec)


def add_tun(name: str, mtu: int = 0) -> None:
    """A persistent TUN device (no packet info header); a process attaches to it by name."""
    with rtnl.errors(f"create tun {name}"):
        ipr().link("add", ifname=name, kind="tuntap", mode="tun", iflags=0x1000)  # IFF_NO_PI
    if mtu:
        set_mtu(name, mtu)


def _set(name: str, what: str, **attrs) -> None:
    """One RTM_NEWLINK addressed by name (the kernel resolves it; a missing link is NotFoundError)."""
    with rtnl.errors(f"set {what} of {name}"):
        ipr().link("set", ifname=name, **attrs)


def set_up(name: str) -> None:
    _set(name, "state", state="up")


def set_down(name: str) -> None:
    _set(name, "state", state="down")


def set_mtu(name: str, mtu: int) -> None:
    _set(name, "MTU", mtu=mtu)


def set_mac(name: str, mac: str) -> None:
    _set(name, "MAC", address=mac)


def set_txqlen(name: str, qlen: int) -> None:
    _set(name, "txqueuelen", txqlen=qlen)


def set_alias(name: str, alias: str) -> None:
    _set(name, "alias", ifalias=alias)


def set_name(name: str, new_name: str) -> None:
    index = index_of(name)  # addressed by index: IFLA_IFNAME carries the new name
    with rtnl.errors(f"rename {name} to {new_name}"):
        ipr().link("set", index=index, ifname=new_name)


def set_master(name: str, master: str | None) -> None:
    """Enslave `name` to a bridge (None: release it)."""
    _set(name, "master", master=index_of(master) if master else 0)


def set_promisc(name: str, on: bool) -> None:
    _set(name, "promisc", flags=0x100 if on else 0, change=0x100)


def set_allmulti(name: str, on: bool) -> None:
    _set(name, "allmulticast", flags=0x200 if on else 0, change=0x200)


def move_to_netns(name: str, netns_path: str) -> None:
    fd = _open_netns(netns_path)
    try:
        _set(name, "namespace", net_ns_fd=fd)
    finally:
        os.close(fd)


def delete(name: str) -> bool:
    """Delete a link; False when it was already gone (DEL is idempotent)."""
    try:
        with rtnl.errors(f"delete link {name}"):
            ipr().link("del", ifname=name)
    except NotFoundError:
        return False
    return True


# --- bridge ports (appended for the bridge plugin) ------------------------

BRIDGE_VLAN_PVID = 0x2
BRIDGE_VLAN_UNTAGGED = 0x4


def set_bridge_port(name: str, hairpin: bool | None = None, learning: bool | None = None) -> None:
    """Per-port flags of a bridge member (None leaves a flag as it is)."""
    attrs: dict = {}
    if hairpin is not None:
        attrs["mode"] = int(hairpin)  # IFLA_BRPORT_MODE: hairpin
    if learning is not None:
        attrs["learning"] = int(learning)
    if attrs:
        with rtnl.errors(f"set bridge port flags of {name}"):
            ipr().brport("set", index=index_of(name), **attrs)


def bridge_port(name: str) -> dict | None:
    """{"hairpin": bool, "learning": bool} of a bridge member, None when not a port.

    Read from the port's own link message (IFLA_INFO_SLAVE_DATA): one request,
    not a dump of every bridge port."""
    with rtnl.errors(f"get link {name}"):
        msgs = ipr().link("get", ifname=name)
    info = msgs[0].get_attr("IFLA_LINKINFO") if msgs else None
    if info is None or info.get_attr("IFLA_INFO_SLAVE_KIND") != "bridge":
        return None
    data = info.get_attr("IFLA_INFO_SLAVE_DATA")
    if data is None:
        return None
    return {"hairpin": bool(data.get_attr("IFLA_BRPORT_MODE")),
            "learning": bool(data.get_attr("IFLA_BRPORT_LEARNING"))}


def add_bridge_vlan(name: str, vid: int, pvid: bool = False, untagged: bool = False) -> None:
    """Allow VLAN `vid` on a port of a VLAN-filtering bridge."""
    flags = (BRIDGE_VLAN_PVID if pvid else 0) | (BRIDGE_VLAN_UNTAGGED if untagged else 0)
    with rtnl.errors(f"add vlan {vid} to bridge port {name}"):
        ipr().vlan_filter("add", index=index_of(name), vlan_info={"vid": vid, "flags": flags})


def del_bridge_vlan(name: str, vid: int) -> None:
    with rtnl.errors(f"remove vlan {vid} from bridge port {name}"):
        ipr().vlan_filter("del", index=index_of(name), vlan_info={"vid": vid})


def macvlan_mode(name: str) -> str | None:
    """The mode of a macvlan ("bridge", "private", ...), None for other kinds."""
    msgs = ipr().get_links(index_of(name))
    info = msgs[0].get_attr("IFLA_LINKINFO") if msgs else None
    if info is None or info.get_attr("IFLA_INFO_KIND") != "macvlan":
        return None
    data = info.get_attr("IFLA_INFO_DATA")
    mode = data.get_attr("IFLA_MACVLAN_MODE") if data is not None else None
    if isinstance(mode, str):  # pyroute2 decodes the mode's name
        return mode
    return next((k for k, v in MACVLAN_MODES.items() if v == mode), None)
