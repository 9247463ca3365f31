"""The pod's interface, configured from an IPAM result and verified for CHECK.

Shared by bridge, ptp and macvlan. What goes on the interface is planned by
pure functions (`gateways`, `plan_routes`); the kernel functions here run
*inside* the pod's netns (callers wrap them in `sandbox.run`).
"""

from __future__ import annotations

import time

from tulle.cni import sandbox
from tulle.cni.types import Interface, IPAddress, IPConfig, Result, Route
from tulle.errors import CheckFailed, ExistsError, NotFoundError
from tulle.kernel import addrs, links, routes, sysctl
from tulle.kernel.links import Link

SETTLE_TIMEOUT = 10.0
RTPROT_BOOT = 3  # what the reference's routes carry (`ip route` prints no "proto")


def gateways(ips: list[IPConfig]) -> dict[int, IPAddress]:
    """The first gateway of each IP family: routes without `gw` go through it."""
    out: dict[int, IPAddress] = {}
    for ip in ips:
        if ip.gateway is not None:
            out.setdefault(ip.gateway.version, ip.gateway)
    return out


def plan_routes(ifname: str, ips: list[IPConfig], result_routes: list[Route]) -> list[routes.Route]:
    """The kernel routes for the result's routes (a missing gw is the family's gateway)."""
    gws = gateways(ips)
    out = []
    for r in result_routes:
        gw = r.gw if r.gw is not None else gws.get(r.dst.version)
        out.append(routes.Route(
            dst=r.dst, gw=gw, dev=ifname, metric=r.priority, mtu=r.mtu, advmss=r.advmss,
            table=r.table if r.table is not None else routes.MAIN_TABLE,
            scope=r.scope if r.scope is not None else 0, proto=RTPROT_BOOT,
        ))
    return out


# --- inside the pod's netns ---------------------------------------------------

def _ensure_sysctl(key: str, value: int) -> None:
    """Best effort, as the reference: IPv6 may be disabled in the pod."""
    try:
        sysctl.ensure(key, value)
    except NotFoundError:
        pass


def set_sysctls(ifname: str, enable_dad: bool = False, arp_notify: bool = True) -> None:
    """accept_dad=0 (addresses usable at once; we own their uniqueness) and
    arp_notify=1 (peers learn a reused IP's new MAC by gratuitous ARP)."""
    _ensure_sysctl(f"net/ipv6/conf/{ifname}/accept_dad", 1 if enable_dad else 0)
    if arp_notify:
        _ensure_sysctl(f"net/ipv4/conf/{ifname}/arp_notify", 1)


def configure(ifname: str, ips: list[IPConfig], result_routes: list[Route]) -> None:
    """Addresses, link up, then routes (an already present route is fine)."""
    if any(ip.address.version == 6 for ip in ips):
        for dev in ("lo", ifname):
            _ensure_sysctl(f"net/ipv6/conf/{dev}/disable_ipv6", 0)
    for ip in ips:
        addrs.add(ifname, ip.address)
    links.set_up(ifname)
    if 6 in gateways(ips):
        settle(ifname)
    configure_routes(ifname, ips, result_routes)


def settle(ifname: str, timeout: float = SETTLE_TIMEOUT) -> None:
    """Wait out IPv6 DAD (when accept_dad is on): a tentative address cannot be a
    route's source yet. Gives up quietly after `timeout`, like the reference."""
    deadline = time.monotonic() + timeout
    while addrs.tentative(ifname) and time.monotonic() < deadline:
        time.sleep(0.05)


def configure_routes(ifname: str, ips: list[IPConfig], result_routes: list[Route]) -> None:
    for route in plan_routes(ifname, ips, result_routes):
        try:
            routes.add(route)
        except ExistsError:
            pass  # as the reference: the first route wins


def require_absent(ifname: str) -> None:
    if links.get(ifname) is not None:
        raise ExistsError(f"interface {ifname!r} already exists in the pod's netns")


def delete(ifname: str) -> bool:
    return links.delete(ifname)


def verify(ifname: str, mac: str, ips: list[IPConfig], result_routes: list[Route]) -> Link:
    """CHECK: the interface has the result's MAC, addresses and routes."""
    link = links.get(ifname)
    if link is None:
        raise CheckFailed(f"interface {ifname!r} is missing from the pod's netns")
    if mac and link.mac.lower() != mac.lower():
        raise CheckFailed(f"interface {ifname!r} has MAC {link.mac}, the result says {mac}")
    present = addrs.list_on(ifname)
    for ip in ips:
        if ip.address not in present:
            raise CheckFailed(f"interface {ifname!r} lacks address {ip.address}")
    for want in plan_routes(ifname, ips, result_routes):
        have = routes.list_routes(want.dst.version, table=want.table, dev=ifname)
        if not any(r.dst == want.dst and r.gw == want.gw for r in have):
            via = f" via {want.gw}" if want.gw else ""
            raise CheckFailed(f"route {want.dst}{via} dev {ifname} is missing in the pod's netns")
    return link


# --- from the host side ------------------------------------------------------

def remove_from_pod(netns: str, ifname: str) -> None:
    """DEL: delete the pod's interface when its netns still exists."""
    if sandbox.present(netns):
        sandbox.run(netns, delete, ifname)


def find_in_result(result: Result, name: str, sandbox_path: str | None) -> tuple[int, Interface]:
    """CHECK: the index and entry of interface `name` (inside `sandbox_path`, when given)."""
    for idx, intf in enumerate(result.interfaces):
        if intf.name == name and (sandbox_path is None or intf.sandbox == sandbox_path):
            return idx, intf
    where = f" in sandbox {sandbox_path}" if sandbox_path else ""
    raise CheckFailed(f"prevResult has no interface {name!r}{where}")
