"""bridge: the pod hangs off a Linux bridge in the host netns by a veth pair.

Config and behaviour are the reference bridge's (v1.1.1): the bridge (default
`cni0`) is made on first use; with `isGateway` it carries each subnet's gateway
address and the host forwards; `ipMasq` masquerades pod traffic leaving the
subnet. Differences on purpose: a failed ADD leaves nothing (no veth, lease or
rule), ipMasq and macspoofchk rules are nftables rules tagged with the
attachment so DEL removes them without the netns or prevResult and GC collects
them, and IPAM's DNS is kept unless the config sets its own.
"""

from __future__ import annotations

import ipaddress
from contextlib import ExitStack
from dataclasses import dataclass, field
from functools import partial

from tulle.cni import attachment, check, iface, ipam, macspoof, masq, netconf, sandbox, veth
from tulle.cni.skel import Call, Plugin
from tulle.cni.types import DNS, Interface, IPConfig, IPInterface, Result, Route
from tulle.cni.undo import Steps, quietly
from tulle.errors import CheckFailed, ConfigError, ExistsError, NotFoundError
from tulle.kernel import addrs, links, sysctl

DEFAULT_BRIDGE = "cni0"
DEFAULT_ROUTE = {4: ipaddress.ip_network("0.0.0.0/0"), 6: ipaddress.ip_network("::/0")}
FORWARDING = {4: "net.ipv4.ip_forward", 6: "net.ipv6.conf.all.forwarding"}


@dataclass
class BridgeConf:
    network: str
    bridge: str = DEFAULT_BRIDGE
    is_gateway: bool = False
    is_default_gateway: bool = False
    force_address: bool = False
    ip_masq: bool = False
    mtu: int = 0
    hairpin: bool = False
    promisc: bool = False
    vlan: int = 0
    preserve_default_vlan: bool = True
    macspoofchk: bool = False
    enable_dad: bool = False
    mac: str = ""
    dns: DNS = field(default_factory=DNS)
    ipam: str | None = None


def load_conf(call: Call) -> BridgeConf:
    f = call.fields
    conf = BridgeConf(
        network=call.name,
        bridge=netconf.ifname_field(f, "bridge", DEFAULT_BRIDGE),
        is_gateway=f.bool("isGateway"),
        is_default_gateway=f.bool("isDefaultGateway"),
        force_address=f.bool("forceAddress"),
        ip_masq=f.bool("ipMasq"),
        mtu=netconf.mtu(f),
        hairpin=f.bool("hairpinMode"),
        promisc=f.bool("promiscMode"),
        vlan=f.int("vlan", 0, lo=0, hi=4094),
        preserve_default_vlan=f.bool("preserveDefaultVlan", True),
        macspoofchk=f.bool("macspoofchk"),
        enable_dad=f.bool("enabledad"),
        mac=netconf.mac(call),
        dns=netconf.dns(f),
        ipam=ipam.ipam_type(call),
    )
    if conf.is_default_gateway:
        conf.is_gateway = True
    if conf.hairpin and conf.promisc:
        raise ConfigError("hairpinMode and promiscMode cannot both be true")
    if conf.vlan and conf.is_gateway:
        raise ConfigError("vlan together with isGateway is not supported (the gateway would need "
                          "a VLAN interface on the bridge)")
    return conf


def plan_gateways(conf: BridgeConf, ips: list[IPConfig], routes: list[Route]
                  ) -> tuple[list[IPConfig], list[Route], list[IPInterface]]:
    """The reference's gateway rules, as data: (ips with gateways, routes, bridge addresses).

    isGateway fills a missing gateway with the subnet's first address and puts it
    on the bridge; isDefaultGateway adds a default route per family unless IPAM
    already routes the default through a gateway.
    """
    ips = [IPConfig(ip.address, ip.gateway, ip.interface) for ip in ips]
    routes = list(routes)
    bridge_addrs: list[IPInterface] = []
    defaults_done: set[int] = set()
    for ip in ips:
        v = ip.address.version
        if ip.gateway is None and conf.is_gateway:
            ip.gateway = ip.address.network.network_address + 1
        if conf.is_default_gateway and v not in defaults_done:
            if not any(r.dst == DEFAULT_ROUTE[v] and r.gw is not None for r in routes):
                routes.append(Route(dst=DEFAULT_ROUTE[v], gw=ip.gateway))
            defaults_done.add(v)
        if conf.is_gateway and ip.gateway is not None:
            gw = ipaddress.ip_interface(f"{ip.gateway}/{ip.address.network.prefixlen}")
            if gw not in bridge_addrs:
                bridge_addrs.append(gw)
    return ips, routes, bridge_addrs


# --- host side ---------------------------------------------------------------

def ensure_bridge(conf: BridgeConf) -> bool:
    """Create the bridge unless it exists (True when this call made it); bring it up."""
    link = links.get(conf.bridge)
    created = False
    if link is None:
        try:
            links.add_bridge(conf.bridge, mtu=conf.mtu, vlan_filtering=conf.vlan != 0)
            created = True
        except ExistsError:  # a concurrent ADD made it first
            link = links.require(conf.bridge)
    if link is not None and link.kind != "bridge":
        raise ConfigError(f"bridge: {conf.bridge!r} exists but is a {link.kind or 'plain'} device, "
                          "not a bridge")
    try:
        if conf.promisc:
            links.set_promisc(conf.bridge, True)
        try:
            sysctl.ensure(f"net/ipv6/conf/{conf.bridge}/accept_ra", 0)  # we own its routes
        except NotFoundError:
            pass
        if link is None or not link.up:
            links.set_up(conf.bridge)
    except BaseException:
        if created:
            links.delete(conf.bridge)
        raise
    return created


def remove_if_unused(bridge: str) -> None:
    """Undo of a bridge this ADD made, unless another pod joined it meanwhile."""
    br = links.get(bridge)
    if br is not None and not any(l.master == br.index for l in links.all_links()):
        links.delete(bridge)


def attach_port(conf: BridgeConf, port: str) -> None:
    links.set_master(port, conf.bridge)
    if conf.hairpin:  # a new port starts with hairpin off
        links.set_bridge_port(port, hairpin=True)
    if conf.vlan:
        links.add_bridge_vlan(port, conf.vlan, pvid=True, untagged=True)
        if not conf.preserve_default_vlan:
            links.del_bridge_vlan(port, 1)


def ensure_gateway_addr(bridge: str, gw: IPInterface, force: bool) -> None:
    """The gateway address on the bridge; a different one of the family (IPv4) or an
    overlapping one (IPv6) is replaced with forceAddress, an error without."""
    present = addrs.list_on(bridge, addrs.FAMILY[gw.version])
    if gw in present:
        return
    for other in present:
        if gw.version == 4 or other.network.overlaps(gw.network):
            if not force:
                raise ConfigError(f"bridge {bridge!r} already has address {other}, different from "
                                  f"the gateway {gw} (set forceAddress to replace it)")
            addrs.delete(bridge, other)
    addrs.ensure(bridge, gw)
    # Pin the bridge's MAC: otherwise it follows the lowest port MAC as pods come and go.
    links.set_mac(bridge, links.require(bridge).mac)


def enable_forwarding(version: int) -> None:
    sysctl.ensure(FORWARDING[version], 1)


def _configure_pod(ifname: str, ips: list[IPConfig], routes: list[Route], enable_dad: bool) -> None:
    iface.set_sysctls(ifname, enable_dad=enable_dad)
    iface.configure(ifname, ips, routes)


# --- verbs ------------------------------------------------------------------

def cmd_add(call: Call) -> Result:
    conf = load_conf(call)
    netns = sandbox.require_netns(call.env.netns)
    ifname = call.env.ifname
    tag = attachment.tag(call.name, call.env.container_id, ifname)
    result = Result(cni_version=call.version)
    with ExitStack() as undo:
        ips: list[IPConfig] = []
        routes: list[Route] = []
        bridge_addrs: list[IPInterface] = []
        if conf.ipam:
            leased = ipam.add(call)
            undo.callback(quietly(ipam.delete, call))
            if not leased.ips:
                raise ConfigError(f"IPAM plugin {conf.ipam!r} returned no IP address")
            ips, routes, bridge_addrs = plan_gateways(conf, leased.ips, leased.routes)
            result.dns = leased.dns
        if ensure_bridge(conf):
            undo.callback(quietly(remove_if_unused, conf.bridge))
        inside = partial(_configure_pod, ips=ips, routes=routes, enable_dad=conf.enable_dad) if ips else None
        pair = veth.create(netns, ifname, mtu=conf.mtu, mac=conf.mac, inside=inside)
        undo.callback(quietly(veth.remove, pair.host))
        attach_port(conf, pair.host)
        result.add_interface(Interface(name=conf.bridge))
        result.add_interface(Interface(name=pair.host, mac=pair.host_mac, mtu=pair.mtu))
        pod_idx = result.add_interface(Interface(name=ifname, mac=pair.pod_mac, mtu=pair.mtu, sandbox=netns))
        for ip in ips:
            ip.interface = pod_idx
        for gw in bridge_addrs:
            ensure_gateway_addr(conf.bridge, gw, conf.force_address)
        for version in sorted({gw.version for gw in bridge_addrs}):
            enable_forwarding(version)
        result.ips, result.routes = ips, routes
        if conf.macspoofchk:
            macspoof.setup(tag, pair.host, pair.pod_mac)
            undo.callback(quietly(macspoof.teardown, tag))
        if conf.ip_masq and result.ips:
            masq.setup(tag, [ip.address for ip in result.ips])
            undo.callback(quietly(masq.teardown, tag))
        if not conf.dns.empty():
            result.dns = conf.dns
        br = links.require(conf.bridge)  # its MAC may change as ports join or addresses land
        result.interfaces[0].mac, result.interfaces[0].mtu = br.mac, br.mtu
        undo.pop_all()
    return result


def cmd_del(call: Call) -> None:
    """Idempotent; without the netns or a prevResult it still releases the lease and rules."""
    tag = attachment.tag(call.name, call.env.container_id, call.env.ifname)
    steps = Steps()
    steps.run(masq.teardown, tag)
    steps.run(iface.remove_from_pod, call.env.netns, call.env.ifname)
    steps.run(ipam.delete, call)
    steps.run(macspoof.teardown, tag)
    steps.finish()


def _check_bridge(conf: BridgeConf, prev: Result) -> links.Link:
    _, br_if = iface.find_in_result(prev, conf.bridge, None)
    br = links.get(conf.bridge)
    if br is None or br.kind != "bridge":
        raise CheckFailed(f"bridge {conf.bridge!r} is missing")
    if br_if.mac and br.mac.lower() != br_if.mac.lower():
        raise CheckFailed(f"bridge {conf.bridge!r} has MAC {br.mac}, the result says {br_if.mac}")
    if br.promisc != conf.promisc:
        raise CheckFailed(f"bridge {conf.bridge!r} promiscuous mode is {br.promisc}, config says {conf.promisc}")
    return br


def _check_host_port(conf: BridgeConf, prev: Result, br: links.Link, pod_idx: int) -> links.Link:
    hosts = [i for n, i in enumerate(prev.interfaces) if n != pod_idx and not i.sandbox and i.name != conf.bridge]
    if not hosts:
        raise CheckFailed("prevResult has no host veth interface")
    host = links.get(hosts[0].name)
    if host is None:
        raise CheckFailed(f"host veth {hosts[0].name!r} is missing")
    if hosts[0].mac and host.mac.lower() != hosts[0].mac.lower():
        raise CheckFailed(f"host veth {host.name!r} has MAC {host.mac}, the result says {hosts[0].mac}")
    if host.master != br.index:
        raise CheckFailed(f"host veth {host.name!r} is not a port of bridge {conf.bridge!r}")
    port = links.bridge_port(host.name)
    if port is not None and port["hairpin"] != conf.hairpin:
        raise CheckFailed(f"host veth {host.name!r} hairpin mode is {port['hairpin']}, config says {conf.hairpin}")
    return host


def cmd_check(call: Call) -> None:
    conf = load_conf(call)
    found = check.pod_in_result(call, with_ipam=bool(conf.ipam))
    prev, ips = found.prev, found.ips
    br = _check_bridge(conf, prev)
    host = _check_host_port(conf, prev, br, found.index)
    pod = sandbox.run(found.netns, iface.verify, call.env.ifname, found.interface.mac, ips, prev.routes)
    if pod.peer_index != host.index:
        raise CheckFailed(f"pod interface {call.env.ifname!r} is not the peer of host veth {host.name!r}")
    if conf.is_gateway and ips:
        _, _, bridge_addrs = plan_gateways(conf, ips, [])
        present = addrs.list_on(conf.bridge)
        for gw in bridge_addrs:
            if gw not in present:
                raise CheckFailed(f"bridge {conf.bridge!r} lacks its gateway address {gw}")
    tag = attachment.tag(call.name, call.env.container_id, call.env.ifname)
    if conf.ip_masq and ips:
        masq.check(tag, [ip.address for ip in ips])
    if conf.macspoofchk:
        macspoof.check(tag, host.name, found.interface.mac)


def cmd_gc(call: Call) -> None:
    """Leases (via IPAM) and rules of attachments not in the keep-list go; keeps going past errors."""
    keep = call.valid_attachments()
    steps = Steps()
    steps.run(ipam.gc, call)
    steps.run(masq.gc, call.name, keep)
    steps.run(macspoof.gc, call.name, keep)
    steps.finish()


def cmd_status(call: Call) -> None:
    """Ready whenever the configuration is valid: the bridge is made on first ADD."""
    load_conf(call)


PLUGIN = Plugin(name="bridge", add=cmd_add, delete=cmd_del, check=cmd_check,
                status=cmd_status, gc=cmd_gc, known_args=frozenset({"MAC", "IP", "GATEWAY"}))
