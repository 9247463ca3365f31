"""Routes in the calling thread's namespace."""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass

from tulle.errors import ExistsError, NotFoundError
from tulle.kernel import links, rtnl
from tulle.kernel.rtnl import ipr

SCOPES = {"universe": 0, "site": 200, "link": 253, "host": 254, "nowhere": 255}
RTN_UNICAST = 1
RTN_BLACKHOLE = 6
MAIN_TABLE = 254


@dataclass(frozen=True)
class Route:
    dst: ipaddress.IPv4Network | ipaddress.IPv6Network
    gw: ipaddress.IPv4Address | ipaddress.IPv6Address | None = None
    dev: str | None = None
    scope: int = 0
    table: int = MAIN_TABLE
    metric: int = 0
    mtu: int = 0
    advmss: int = 0
    onlink: bool = False
    blackhole: bool = False
    proto: int = 0
    src: ipaddress.IPv4Address | ipaddress.IPv6Address | None = None


def _spec(route: Route) -> dict:
    spec: dict = {
        "dst": str(route.dst),
        "family": socket.AF_INET if route.dst.version == 4 else socket.AF_INET6,
        "table": route.table,
    }
    if route.blackhole:
        spec["type"] = RTN_BLACKHOLE
    if route.gw is not None:
        spec["gateway"] = str(route.gw)
    if route.dev:
        spec["oif"] = links.index_of(route.dev)
    if route.scope:
        spec["scope"] = route.scope
    if route.metric:
        spec["priority"] = route.metric
    if route.proto:
        spec["proto"] = route.proto
    if route.src is not None:
        spec["prefsrc"] = str(route.src)
    if route.onlink:
        spec["flags"] = 4  # RTNH_F_ONLINK
    metrics = {}
    if route.mtu:
        metrics["RTAX_MTU"] = route.mtu
    if route.advmss:
        metrics["RTAX_ADVMSS"] = route.advmss
    if metrics:
        spec["metrics"] = metrics
    return spec


def add(route: Route) -> None:
    with rtnl.errors(f"add route {route.dst}" + (f" via {route.gw}" if route.gw else "")):
        ipr().route("add", **_spec(route))


def replace(route: Route) -> None:
    with rtnl.errors(f"replace route {route.dst}"):
        ipr().route("replace", **_spec(route))


def ensure(route: Route) -> None:
    try:
        add(route)
    except ExistsError:
        pass


def delete(route: Route) -> bool:
    try:
        with rtnl.errors(f"delete route {route.dst}"):
            ipr().route("del", **_spec(route))
    except NotFoundError:
        return False
    except Exception as exc:  # ESRCH arrives as NotFound; anything else is real
        if getattr(exc, "errno", 0) == 3:
            return False
        raise
    return True


def _name(cache: dict[int, str | None], index: int | None) -> str | None:
    if index is None:
        return None
    if index not in cache:
        cache[index] = links.name_of(index)
    return cache[index]


def list_routes(family: int = 4, table: int = MAIN_TABLE, dev: str | None = None) -> list[Route]:
    """Routes of one family and table (optionally on one device), in tulle's type."""
    fam = socket.AF_INET if family == 4 else socket.AF_INET6
    query: dict = {"family": fam, "table": table}
    if dev is not None:
        index = links.find_index(dev)
        if index is None:
            return []
        query["oif"] = index
    names: dict[int, str | None] = {}  # looked up per device seen, not by dumping every link
    out = []
    for msg in ipr().get_routes(**query):
        if msg.get_attr("RTA_TABLE", msg["table"]) != table:
            continue
        dst = msg.get_attr("RTA_DST")
        net = ipaddress.ip_network(f"{dst or ('0.0.0.0' if family == 4 else '::')}/{msg['dst_len']}")
        gw = msg.get_attr("RTA_GATEWAY")
        src = msg.get_attr("RTA_PREFSRC")
        metrics = msg.get_attr("RTA_METRICS")
        mtu = metrics.get_attr("RTAX_MTU") if metrics is not None else 0
        advmss = metrics.get_attr("RTAX_ADVMSS") if metrics is not None else 0
        out.append(Route(
            dst=net,
            gw=ipaddress.ip_address(gw) if gw else None,
            dev=_name(names, msg.get_attr("RTA_OIF")),
            scope=msg["scope"],
            table=table,
            metric=msg.get_attr("RTA_PRIORITY") or 0,
            mtu=mtu or 0,
            advmss=advmss or 0,
            onlink=bool(msg["flags"] & 4),
            blackhole=msg["type"] == RTN_BLACKHOLE,
            proto=msg["proto"],
            src=ipaddress.ip_address(src) if src else None,
        ))
    return out
