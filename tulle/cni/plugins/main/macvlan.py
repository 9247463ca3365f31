"""macvlan: the pod gets its own MAC on a host device (`master`).

As the reference macvlan (v1.1.1): `master` defaults to the device of the host's
default route; `mode` is bridge (default), private, vepa or passthru; `mtu` may
not exceed the master's. The device is made in the host netns under a
temporary name, moved into the pod and renamed there, so it never clashes
with a host device called like the pod's interface. Differences on purpose:
DEL needs neither the master nor the netns (the reference's DEL fails when the
master is gone), and a failed ADD leaves neither device nor lease.
"""

from __future__ import annotations

import secrets
from contextlib import ExitStack
from dataclasses import dataclass, field

from tulle.cni import check, iface, ipam, netconf, sandbox
from tulle.cni.skel import Call, Plugin
from tulle.cni.types import DNS, Interface, IPConfig, Result, Route
from tulle.cni.undo import Steps, quietly
from tulle.errors import CheckFailed, ConfigError, NotFoundError
from tulle.kernel import links, routes, sysctl

MODES = ("bridge", "private", "vepa", "passthru")


@dataclass
class MacvlanConf:
    network: str
    master: str = ""  # "" = the default route's device, resolved on the host side
    mode: str = "bridge"
    mtu: int = 0
    mac: str = ""
    dns: DNS = field(default_factory=DNS)
    ipam: str | None = None


def load_conf(call: Call) -> MacvlanConf:
    f = call.fields
    mode = f.str("mode", "bridge") or "bridge"
    if mode not in MODES:
        raise ConfigError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    master = f.str("master")
    if master:
        master = netconf.ifname_field(f, "master", "")
    return MacvlanConf(network=call.name, master=master, mode=mode, mtu=netconf.mtu(f),
                       mac=netconf.mac(call, conf_key="mac"), dns=netconf.dns(f),
                       ipam=ipam.ipam_type(call))


# --- host side -------------------------------------------------------------------

def default_route_device() -> str:
    for version in (4, 6):
        for r in routes.list_routes(version):
            if r.dst.prefixlen == 0 and r.dev:
                return r.dev
    raise NotFoundError("master is not set and the host netns has no default route to take "
                        "its device from; set \"master\" in the config")


def resolve_master(conf: MacvlanConf) -> links.Link:
    name = conf.master or default_route_device()
    master = links.get(name)
    if master is None:
        raise NotFoundError(f"master device {name!r} does not exist in the host netns")
    if conf.mtu > master.mtu:
        raise ConfigError(f"mtu {conf.mtu} is larger than the MTU {master.mtu} of master {name!r}")
    return master


def create_in_pod(conf: MacvlanConf, master: str, netns: str, ifname: str) -> links.Link:
    """Make the macvlan on `master`, move it into the pod, rename it to `ifname`."""
    tmp = f"mv{secrets.token_hex(4)}"
    links.add_macvlan(tmp, master, mode=conf.mode, mtu=conf.mtu, mac=conf.mac)
    try:
        links.move_to_netns(tmp, netns)
    except BaseException:
        links.delete(tmp)
        raise
    try:
        return sandbox.run(netns, _rename, tmp, ifname)
    except BaseException:
        sandbox.run(netns, links.delete, tmp)
        raise


def _rename(tmp: str, ifname: str) -> links.Link:
    iface.require_absent(ifname)
    links.set_name(tmp, ifname)
    return links.require(ifname)


def _setup_l3(ifname: str, ips: list[IPConfig], result_routes: list[Route]) -> None:
    # Like the reference: only arp_notify (DAD stays as the kernel has it).
    try:
        sysctl.ensure(f"net/ipv4/conf/{ifname}/arp_notify", 1)
    except NotFoundError:
        pass
    iface.configure(ifname, ips, result_routes)


# --- verbs -----------------------------------------------------------------------

def cmd_add(call: Call) -> Result:
    conf = load_conf(call)
    netns = sandbox.require_netns(call.env.netns)
    ifname = call.env.ifname
    sandbox.run(netns, iface.require_absent, ifname)
    master = resolve_master(conf)
    result = Result(cni_version=call.version)
    with ExitStack() as undo:
        leased = None
        if conf.ipam:
            leased = ipam.add(call)
            undo.callback(quietly(ipam.delete, call))
            if not leased.ips:
                raise ConfigError(f"IPAM plugin {conf.ipam!r} returned no IP address")
        link = create_in_pod(conf, master.name, netns, ifname)
        undo.callback(quietly(sandbox.run, netns, links.delete, ifname))
        idx = result.add_interface(Interface(name=ifname, mac=link.mac, mtu=link.mtu, sandbox=netns))
        if leased is not None:
            result.ips = [IPConfig(ip.address, ip.gateway, idx) for ip in leased.ips]
            result.routes, result.dns = list(leased.routes), leased.dns
            sandbox.run(netns, _setup_l3, ifname, result.ips, result.routes)
        else:
            sandbox.run(netns, links.set_up, ifname)
        if not conf.dns.empty():
            result.dns = conf.dns
        undo.pop_all()
    return result


def cmd_del(call: Call) -> None:
    """Idempotent; needs neither the master nor the netns."""
    steps = Steps()
    steps.run(iface.remove_from_pod, call.env.netns, call.env.ifname)
    steps.run(ipam.delete, call)
    steps.finish()


def _check_pod(ifname: str, mac: str, ips: list[IPConfig], result_routes: list[Route], mode: str) -> links.Link:
    link = iface.verify(ifname, mac, ips, result_routes)
    if link.kind != "macvlan":
        raise CheckFailed(f"pod interface {ifname!r} is a {link.kind or 'plain'} device, not a macvlan")
    have = links.macvlan_mode(ifname)
    if have != mode:
        raise CheckFailed(f"pod interface {ifname!r} is in macvlan mode {have}, config says {mode}")
    return link


def cmd_check(call: Call) -> None:
    conf = load_conf(call)
    found = check.pod_in_result(call, with_ipam=bool(conf.ipam))
    ifname = call.env.ifname
    link = sandbox.run(found.netns, _check_pod, ifname, found.interface.mac, found.ips, found.prev.routes, conf.mode)
    master = resolve_master(conf)
    if link.peer_index != master.index:
        raise CheckFailed(f"pod interface {ifname!r} does not sit on master {master.name!r}")


def cmd_gc(call: Call) -> None:
    """Only leases can leak (the device dies with the netns): forward to IPAM."""
    call.valid_attachments()
    ipam.gc(call)


def cmd_status(call: Call) -> None:
    load_conf(call)


PLUGIN = Plugin(name="macvlan", add=cmd_add, delete=cmd_del, check=cmd_check,
                status=cmd_status, gc=cmd_gc, known_args=frozenset({"MAC", "IP", "GATEWAY"}))
