"""portmap: forwards host ports to a pod (the runtime's `portMappings`
capability) with nftables; the ruleset itself is tulle.cni.hostports.

Reference semantics: DNAT for packets to any local address (or `hostIP`) from
outside (prerouting) and from the host itself (output); with `snat` (default
true) hairpin and localhost connections are masqueraded, and the host
interface towards the pod gets `route_localnet=1` so 127.0.0.1:hostPort works.
Differences: one atomic nft transaction per verb, no iptables lock; CHECK never
fails because IPv6 is unused; DEL and GC work without netns or prevResult.
`conditionsV4`/`conditionsV6` are iptables match strings and are ignored;
`externalSetMarkChain` names an iptables chain and is refused (code 2).
`route_localnet` is left on at DEL: the interface may serve other pods.
"""

from __future__ import annotations

import ipaddress

from tulle.cni import chained, hostports
from tulle.cni.conf import Fields
from tulle.cni.errors import UNSUPPORTED_FIELD, CNIError
from tulle.cni.hostports import Attachment, PortMapping
from tulle.cni.skel import Call, Plugin
from tulle.cni.types import Result
from tulle.errors import CheckFailed, ConfigError
from tulle.kernel import nft, routes, sysctl

PROTOCOLS = ("tcp", "udp", "sctp")


def parse_mapping(item: object, where: str) -> PortMapping:
    f = Fields(item, where)
    proto = f.str("protocol", "tcp").lower()
    if proto not in PROTOCOLS:
        raise ConfigError(f"{where}.protocol must be one of {', '.join(PROTOCOLS)}, got {proto!r}")
    host_ip = f.ip("hostIP")
    if host_ip is not None and host_ip.is_unspecified:
        host_ip = None
    return PortMapping(
        host_port=f.int("hostPort", lo=1, hi=65535, required=True),
        container_port=f.int("containerPort", lo=1, hi=65535, required=True),
        protocol=proto,
        host_ip=host_ip,
    )


def load_mappings(call: Call) -> tuple[PortMapping, ...]:
    raw = call.runtime_config.list("portMappings")
    return tuple(parse_mapping(item, f"runtimeConfig.portMappings[{i}]") for i, item in enumerate(raw))


def load_conf(call: Call, prev: Result | None) -> Attachment:
    f = call.fields
    if f.raw("externalSetMarkChain"):
        raise CNIError(UNSUPPORTED_FIELD, "portmap: externalSetMarkChain (an iptables chain) is not supported")
    snat = f.bool("snat", True)
    bit = f.int("markMasqBit", 13, lo=0, hi=31)
    ips = tuple(ip.address.ip for ip in chained.pod_ips(prev)) if prev is not None else ()
    return Attachment(network=call.name, container_id=call.env.container_id, ifname=call.env.ifname,
                      pod_ips=ips, mappings=load_mappings(call), snat=snat, masq_bit=bit)


def route_interface(dst: ipaddress.IPv4Address, table: list[routes.Route]) -> str | None:
    """The device of the most specific route to `dst` (pure, over a route list)."""
    best = None
    for r in table:
        if r.dev and not r.blackhole and dst in r.dst and (best is None or r.dst.prefixlen > best.dst.prefixlen):
            best = r
    return best.dev if best else None


def ensure_localnet(att: Attachment) -> None:
    """route_localnet=1 on the host interfaces towards the pod's IPv4 addresses,
    so DNATed 127.0.0.1 connections may leave them (IPv6 has no such thing)."""
    v4 = [ip for ip in att.pod_ips if ip.version == 4]
    if not v4 or not att.snat:
        return
    table = routes.list_routes(4)
    for ip in v4:
        dev = route_interface(ip, table)
        if dev:
            sysctl.ensure(f"net/ipv4/conf/{dev}/route_localnet", 1)


def cmd_add(call: Call) -> Result:
    prev = call.require_prev_result()
    att = load_conf(call, prev)
    result = chained.pass_through(call)
    if not att.mappings:
        return result
    if not att.pod_ips:
        raise ConfigError("portmap: prevResult has no IP addresses for the pod")
    ensure_localnet(att)
    listing = nft.list_table(hostports.FAMILY, hostports.TABLE)
    nft.run(hostports.add(listing, att))
    return result


def cmd_del(call: Call) -> None:
    """Finds the attachment's objects by name: no config, netns or prevResult needed."""
    listing = nft.list_table(hostports.FAMILY, hostports.TABLE)
    nft.run(hostports.delete(listing, call.name, call.env.container_id, call.env.ifname))


def cmd_check(call: Call) -> None:
    prev = call.require_prev_result()
    att = load_conf(call, prev)
    if not att.mappings:
        return
    why = hostports.drift(nft.list_table(hostports.FAMILY, hostports.TABLE), att)
    if why:
        raise CheckFailed(f"portmap: {why}")


def cmd_gc(call: Call) -> None:
    listing = nft.list_table(hostports.FAMILY, hostports.TABLE)
    nft.run(hostports.collect(listing, call.name, call.valid_attachments()))


PLUGIN = Plugin(name="portmap", add=cmd_add, delete=cmd_del, check=cmd_check, gc=cmd_gc)
