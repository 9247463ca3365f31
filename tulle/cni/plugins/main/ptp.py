"""ptp: a routed point-to-point veth per pod, no bridge.

As the reference ptp (v1.1.1): the pod keeps its IPAM address and prefix, but
the subnet route is replaced by "gateway/32 dev eth0" + "subnet via gateway",
so every packet goes through the host; the host end carries the gateway as a
/32 (/128) and a route to each pod address. The same gateway address sits on
every pod's host veth. Differences on purpose: the host route to the pod is
`scope link` (the reference uses `scope host`; both forward, link is what the
route means), a failed ADD leaves nothing, ipMasq rules are tagged nftables
rules that DEL and GC remove without the netns.
"""

from __future__ import annotations

import ipaddress
from contextlib import ExitStack
from dataclasses import dataclass, field
from functools import partial

from tulle.cni import attachment, check, iface, ipam, masq, netconf, sandbox, veth
from tulle.cni.skel import Call, Plugin
from tulle.cni.types import DNS, Interface, IPConfig, Result, Route
from tulle.cni.undo import Steps, quietly
from tulle.errors import CheckFailed, ConfigError, ExistsError
from tulle.kernel import addrs, links, routes, sysctl

FORWARDING = {4: "net.ipv4.ip_forward", 6: "net.ipv6.conf.all.forwarding"}


@dataclass
class PtpConf:
    network: str
    ip_masq: bool = False
    mtu: int = 0
    dns: DNS = field(default_factory=DNS)
    ipam: str | None = None


def load_conf(call: Call) -> PtpConf:
    f = call.fields
    conf = PtpConf(network=call.name, ip_masq=f.bool("ipMasq"), mtu=netconf.mtu(f),
                   dns=netconf.dns(f), ipam=ipam.ipam_type(call))
    if conf.ipam is None:
        raise ConfigError("ipam.type is required: ptp routes each pod address and cannot be L2-only")
    return conf


def host_len(version: int) -> int:
    return 32 if version == 4 else 128


def require_gateways(ips: list[IPConfig]) -> None:
    for ip in ips:
        if ip.gateway is None:
            raise ConfigError(f"the IPAM result gives {ip.address} no gateway; ptp routes the pod "
                              "through it (set a gateway in the ipam config)")


def pod_routes(ifname: str, ip: IPConfig) -> list[routes.Route]:
    """The point-to-point routes replacing the subnet route (pure)."""
    assert ip.gateway is not None
    gw_net = ipaddress.ip_network(f"{ip.gateway}/{host_len(ip.gateway.version)}")
    out = [routes.Route(dst=gw_net, dev=ifname, scope=routes.SCOPES["link"], src=ip.address.ip,
                        proto=iface.RTPROT_BOOT)]
    if ip.address.network.prefixlen < host_len(ip.address.version):
        out.append(routes.Route(dst=ip.address.network, gw=ip.gateway, dev=ifname, src=ip.address.ip,
                                proto=iface.RTPROT_BOOT))
    return out


# --- inside the pod ------------------------------------------------------------

def _setup_pod(ifname: str, ips: list[IPConfig], result_routes: list[Route]) -> None:
    iface.configure(ifname, ips, [])
    for ip in ips:
        routes.delete(routes.Route(dst=ip.address.network, dev=ifname, scope=routes.SCOPES["nowhere"]))
        for r in pod_routes(ifname, ip):
            routes.add(r)
    iface.configure_routes(ifname, ips, result_routes)


# --- host side -----------------------------------------------------------------

def setup_host(host: str, ips: list[IPConfig]) -> None:
    for ip in ips:
        assert ip.gateway is not None
        addrs.ensure(host, ipaddress.ip_interface(f"{ip.gateway}/{host_len(ip.gateway.version)}"))
        pod = ipaddress.ip_network(f"{ip.address.ip}/{host_len(ip.address.version)}")
        try:
            routes.add(routes.Route(dst=pod, dev=host, scope=routes.SCOPES["link"], proto=iface.RTPROT_BOOT))
        except ExistsError:
            raise ExistsError(f"the host already routes {pod} elsewhere; is the address in use?") from None
        sysctl.ensure(FORWARDING[ip.address.version], 1)


# --- verbs ---------------------------------------------------------------------

def cmd_add(call: Call) -> Result:
    conf = load_conf(call)
    netns = sandbox.require_netns(call.env.netns)
    ifname = call.env.ifname
    tag = attachment.tag(call.name, call.env.container_id, ifname)
    with ExitStack() as undo:
        leased = ipam.add(call)
        undo.callback(quietly(ipam.delete, call))
        if not leased.ips:
            raise ConfigError(f"IPAM plugin {conf.ipam!r} returned no IP address")
        require_gateways(leased.ips)
        ips = [IPConfig(ip.address, ip.gateway) for ip in leased.ips]
        result_routes = list(leased.routes)
        pair = veth.create(netns, ifname, mtu=conf.mtu,
                           inside=partial(_setup_pod, ips=ips, result_routes=result_routes))
        undo.callback(quietly(veth.remove, pair.host))
        result = Result(cni_version=call.version, routes=result_routes,
                        dns=leased.dns if conf.dns.empty() else conf.dns)
        result.add_interface(Interface(name=pair.host, mac=pair.host_mac, mtu=pair.mtu))
        pod_idx = result.add_interface(Interface(name=ifname, mac=pair.pod_mac, mtu=pair.mtu, sandbox=netns))
        for ip in ips:
            ip.interface = pod_idx
        result.ips = ips
        setup_host(pair.host, result.ips)
        if conf.ip_masq:
            masq.setup(tag, [ip.address for ip in result.ips])
            undo.callback(quietly(masq.teardown, tag))
        undo.pop_all()
    return result


def cmd_del(call: Call) -> None:
    """Idempotent; without the netns or a prevResult it still releases the lease and rules."""
    tag = attachment.tag(call.name, call.env.container_id, call.env.ifname)
    steps = Steps()
    steps.run(iface.remove_from_pod, call.env.netns, call.env.ifname)
    steps.run(ipam.delete, call)
    steps.run(masq.teardown, tag)
    steps.finish()


def _check_pod(ifname: str, mac: str, ips: list[IPConfig], result_routes: list[Route]) -> links.Link:
    link = iface.verify(ifname, mac, ips, [])
    for ip in ips:
        for want in pod_routes(ifname, ip):
            have = routes.list_routes(want.dst.version, dev=ifname)
            if not any(r.dst == want.dst and r.gw == want.gw for r in have):
                raise CheckFailed(f"route {want.dst} dev {ifname} is missing in the pod's netns")
    iface.verify(ifname, "", ips, result_routes)
    return link


def cmd_check(call: Call) -> None:
    conf = load_conf(call)
    found = check.pod_in_result(call)
    prev, ips, ifname = found.prev, found.ips, call.env.ifname
    host_if = next((x for i, x in enumerate(prev.interfaces) if i != found.index and not x.sandbox), None)
    if host_if is None:
        raise CheckFailed("prevResult has no host veth interface")
    host = links.get(host_if.name)
    if host is None:
        raise CheckFailed(f"host veth {host_if.name!r} is missing")
    require_gateways(ips)
    pod = sandbox.run(found.netns, _check_pod, ifname, found.interface.mac, ips, prev.routes)
    if pod.peer_index != host.index:
        raise CheckFailed(f"pod interface {ifname!r} is not the peer of host veth {host.name!r}")
    present = addrs.list_on(host.name)
    have = {r.dst for v in (4, 6) for r in routes.list_routes(v, dev=host.name)}
    for ip in ips:
        gw = ipaddress.ip_interface(f"{ip.gateway}/{host_len(ip.address.version)}")
        if gw not in present:
            raise CheckFailed(f"host veth {host.name!r} lacks the gateway address {gw}")
        pod_net = ipaddress.ip_network(f"{ip.address.ip}/{host_len(ip.address.version)}")
        if pod_net not in have:
            raise CheckFailed(f"the host has no route to {pod_net} dev {host.name}")
    if conf.ip_masq:
        masq.check(attachment.tag(call.name, call.env.container_id, ifname), [ip.address for ip in ips])


def cmd_gc(call: Call) -> None:
    keep = call.valid_attachments()
    steps = Steps()
    steps.run(ipam.gc, call)
    steps.run(masq.gc, call.name, keep)
    steps.finish()


def cmd_status(call: Call) -> None:
    load_conf(call)


PLUGIN = Plugin(name="ptp", add=cmd_add, delete=cmd_del, check=cmd_check,
                status=cmd_status, gc=cmd_gc, known_args=frozenset({"IP", "GATEWAY"}))
