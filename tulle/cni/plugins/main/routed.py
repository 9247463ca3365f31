"""tulle-routed: Calico-style pure L3 wiring of a pod, for the BGP routed mode.

A veth per pod, no bridge and no host address: the host end is named from the
attachment (`tul` + 12 hex, Calico uses `cali` + 11) with MAC ee:ee:ee:ee:ee:ee,
and answers ARP for the pod's gateway 169.254.1.1 by proxy ARP. The pod gets its
address as a /32, `169.254.1.1 dev eth0 scope link` and `default via 169.254.1.1`;
the pod also holds a permanent neighbour entry 169.254.1.1 → ee:ee:ee:ee:ee:ee
(the host's MAC is fixed, so no ARP is needed at all); the host gets
`<pod>/32 dev tulXXXX scope link`, which BIRD learns from the kernel
(that is how a borrowed address gets announced). IPv4 only.
"""

from __future__ import annotations

import ipaddress
from contextlib import ExitStack
from dataclasses import dataclass
from functools import partial

from tulle.cni import attachment, check, iface, ipam, netconf, sandbox, veth
from tulle.cni.skel import Call, Plugin
from tulle.cni.types import IPConfig, Interface, Result, Route
from tulle.cni.undo import Steps, quietly
from tulle.errors import CheckFailed, ConfigError, ExistsError
from tulle.kernel import addrs, links, neigh, routes, sysctl

GATEWAY = ipaddress.IPv4Address("169.254.1.1")
HOST_MAC = "ee:ee:ee:ee:ee:ee"
DEFAULT = ipaddress.IPv4Network("0.0.0.0/0")
LINK = routes.SCOPES["link"]


@dataclass
class RoutedConf:
    network: str
    mtu: int = 0


def load_conf(call: Call) -> RoutedConf:
    if ipam.ipam_type(call) is None:
        raise ConfigError("ipam.type is required: routed mode routes each pod address")
    return RoutedConf(network=call.name, mtu=netconf.mtu(call.fields))


def host_ifname(container_id: str, ifname: str) -> str:
    """Derived from the attachment, so DEL finds it without the netns or prevResult."""
    return attachment.device_name("tul", container_id, ifname)


def pod_ips(leased: Result) -> list[ipaddress.IPv4Interface]:
    out = []
    for ip in leased.ips:
        if ip.address.version != 4:
            raise ConfigError(f"routed mode is IPv4 only; IPAM returned {ip.address}")
        out.append(ipaddress.IPv4Interface(f"{ip.address.ip}/32"))
    if not out:
        raise ConfigError("IPAM returned no IPv4 address")
    return out


# --- inside the pod -------------------------------------------------------------

def _setup_pod(ifname: str, ips: list[ipaddress.IPv4Interface]) -> None:
    for ip in ips:
        addrs.add(ifname, ip)
    links.set_up(ifname)  # before the routes: the kernel refuses a nexthop on a down device
    routes.add(routes.Route(dst=ipaddress.IPv4Network(f"{GATEWAY}/32"), dev=ifname, scope=LINK))
    routes.add(routes.Route(dst=DEFAULT, gw=GATEWAY, dev=ifname))
    # The host end's MAC is fixed, so the pod needs no ARP answer at all: proxy ARP
    # (below) only answers when the host has a route towards 169.254.1.1, which a
    # node without a default route (the lab's) does not.
    neigh.replace(ifname, GATEWAY, HOST_MAC)


def _verify_pod(ifname: str, mac: str, ips: list[ipaddress.IPv4Interface]) -> links.Link:
    link = iface.verify(ifname, mac, [], [])
    have = addrs.list_on(ifname)
    for ip in ips:
        if ip not in have:
            raise CheckFailed(f"pod interface {ifname!r} lacks {ip}")
    rts = routes.list_routes(4, dev=ifname)
    if not any(r.dst == DEFAULT and r.gw == GATEWAY for r in rts):
        raise CheckFailed(f"the pod has no default route via {GATEWAY}")
    return link


# --- host side ------------------------------------------------------------------

def setup_host(host: str, ips: list[ipaddress.IPv4Interface]) -> None:
    sysctl.ensure(f"net/ipv4/conf/{host}/proxy_arp", 1)
    sysctl.ensure(f"net/ipv4/neigh/{host}/proxy_delay", 0)
    sysctl.ensure(f"net/ipv4/conf/{host}/forwarding", 1)
    sysctl.ensure("net.ipv4.ip_forward", 1)
    for ip in ips:
        try:
            routes.add(routes.Route(dst=ip.network, dev=host, scope=LINK, proto=iface.RTPROT_BOOT))
        except ExistsError:
            raise ExistsError(f"the host already routes {ip.network} elsewhere; is the address in use?") from None


# --- verbs ----------------------------------------------------------------------

def cmd_add(call: Call) -> Result:
    conf = load_conf(call)
    netns = sandbox.require_netns(call.env.netns)
    ifname = call.env.ifname
    with ExitStack() as undo:
        leased = ipam.add(call)
        undo.callback(quietly(ipam.delete, call))
        ips = pod_ips(leased)
        pair = veth.create(netns, ifname, mtu=conf.mtu, name=host_ifname(call.env.container_id, ifname),
                           host_mac=HOST_MAC, inside=partial(_setup_pod, ips=ips))
        undo.callback(quietly(veth.remove, pair.host))
        setup_host(pair.host, ips)
        mtu = pair.mtu
        result = Result(cni_version=call.version, dns=leased.dns,
                        routes=[Route(dst=DEFAULT, gw=GATEWAY)])
        result.add_interface(Interface(name=pair.host, mac=pair.host_mac, mtu=mtu))
        idx = result.add_interface(Interface(name=ifname, mac=pair.pod_mac, mtu=mtu, sandbox=netns))
        result.ips = [IPConfig(address=ip, gateway=GATEWAY, interface=idx) for ip in ips]
        undo.pop_all()
    return result


def cmd_del(call: Call) -> None:
    """Idempotent; the host veth and its route vanish with the pod end."""
    steps = Steps()
    steps.run(iface.remove_from_pod, call.env.netns, call.env.ifname)
    steps.run(veth.remove, host_ifname(call.env.container_id, call.env.ifname))
    steps.run(ipam.delete, call)
    steps.finish()


def cmd_check(call: Call) -> None:
    load_conf(call)
    found = check.pod_in_result(call)
    ifname = call.env.ifname
    ips = [ipaddress.IPv4Interface(f"{ip.address.ip}/32") for ip in found.ips]
    pod = sandbox.run(found.netns, _verify_pod, ifname, found.interface.mac, ips)
    host = links.get(host_ifname(call.env.container_id, ifname))
    if host is None or pod.peer_index != host.index:
        raise CheckFailed(f"host veth {host_ifname(call.env.container_id, ifname)!r} is missing")
    have = {r.dst for r in routes.list_routes(4, dev=host.name)}
    for ip in ips:
        if ip.network not in have:
            raise CheckFailed(f"the host has no route to {ip.network} dev {host.name}")
    if sysctl.get(f"net/ipv4/conf/{host.name}/proxy_arp") != "1":
        raise CheckFailed(f"proxy ARP is off on {host.name}")


def cmd_gc(call: Call) -> None:
    call.valid_attachments()
    ipam.gc(call)


def cmd_status(call: Call) -> None:
    load_conf(call)


PLUGIN = Plugin(name="tulle-routed", add=cmd_add, delete=cmd_del, check=cmd_check,
                status=cmd_status, gc=cmd_gc, known_args=frozenset({"IP"}))
