"""bandwidth: shapes a pod's traffic with tbf qdiscs on the host side.

Ingress to the pod: a tbf on the host veth (packets leaving the host towards
the pod). Egress from the pod: the host veth's ingress qdisc redirects every
packet to an ifb device, whose own tbf shapes it. The tbf numbers are the
reference's (tulle.kernel.tc.tbf_params).

Unlike the reference, the ifb carries the attachment's tag as its alias, so DEL
(which needs neither netns nor prevResult) and GC always find and remove it.
`unshapedSubnets`/`shapedSubnets` need the reference's newer htb layout and are
refused (code 2) rather than silently ignored.
"""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass

from tulle.cni import attachment, chained, sandbox
from tulle.cni.conf import Fields
from tulle.cni.errors import UNSUPPORTED_FIELD, CNIError
from tulle.cni.skel import Call, Plugin
from tulle.cni.types import Interface, Result
from tulle.errors import CheckFailed, ConfigError, NotFoundError
from tulle.kernel import links, tc

IFB_PREFIX = "bwp"
MAX_BURST_BITS = (2**32 - 1) * 8
KEYS = ("ingressRate", "ingressBurst", "egressRate", "egressBurst")


@dataclass(frozen=True)
class Shape:
    rate: int   # bit/s
    burst: int  # bits


@dataclass(frozen=True)
class BandwidthConf:
    ingress: Shape | None
    egress: Shape | None


def _shape(f: Fields, direction: str) -> Shape | None:
    rate_key, burst_key = f"{direction}Rate", f"{direction}Burst"
    rate = f.int(rate_key, 0, lo=0, hi=tc.max_rate_bits())
    burst = f.int(burst_key, 0, lo=0, hi=MAX_BURST_BITS)
    where = f"{f.where}." if f.where else ""
    if rate and not burst:
        raise ConfigError(f"{where}{burst_key} must be set when {where}{rate_key} is")
    if burst and not rate:
        raise ConfigError(f"{where}{rate_key} must be set when {where}{burst_key} is")
    if not rate:
        return None
    if rate < 8 or burst < 8:
        raise ConfigError(f"{where}{rate_key} and {where}{burst_key} must be at least 8 (bits)")
    return Shape(rate, burst)


def load_conf(call: Call) -> BandwidthConf:
    """Top-level limits win; otherwise the runtime's `bandwidth` capability."""
    top = call.fields
    f = top if any(top.raw(k) is not None for k in KEYS) else call.runtime_config.obj("bandwidth")
    for key in ("unshapedSubnets", "shapedSubnets"):
        if f.list(key):
            raise CNIError(UNSUPPORTED_FIELD, f"bandwidth: {key} is not supported by tulle's tbf shaping")
    return BandwidthConf(ingress=_shape(f, "ingress"), egress=_shape(f, "egress"))


def ifb_name(call: Call) -> str:
    return attachment.device_name(IFB_PREFIX, call.env.container_id, call.env.ifname)


def ifb_alias(call: Call) -> str:
    return attachment.tag(call.name, call.env.container_id, call.env.ifname)


def _peer_index(ifname: str) -> int | None:
    return links.require(ifname).peer_index


def host_interface(call: Call, prev: Result) -> str:
    """The host end of the pod's veth, as listed (without sandbox) in prevResult."""
    sandbox.require_netns(call.env.netns)
    peer = sandbox.run(call.env.netns, _peer_index, call.env.ifname)
    link = links.get_by_index(peer) if peer else None
    if link is None:
        raise NotFoundError(f"bandwidth: {call.env.ifname} in the pod has no veth peer in this namespace")
    for iface in prev.interfaces:
        if not iface.sandbox and iface.name == link.name:
            return link.name
    raise NotFoundError(f"bandwidth: the pod's veth peer {link.name} is not among prevResult's host interfaces")


def setup_ingress(host: str, shape: Shape, undo: ExitStack) -> None:
    tc.add_tbf(host, shape.rate, shape.burst)
    undo.callback(tc.delete_root, host)


def setup_egress(call: Call, host: str, shape: Shape, undo: ExitStack) -> Interface:
    name = ifb_name(call)
    hl = links.require(host)
    links.add_ifb(name, mtu=hl.mtu, alias=ifb_alias(call), txqlen=hl.txqlen)
    undo.callback(links.delete, name)
    links.set_up(name)
    tc.add_ingress(host)
    undo.callback(tc.delete_ingress, host)
    tc.add_redirect(host, name)
    tc.add_tbf(name, shape.rate, shape.burst)
    return Interface(name=name, mac=links.require(name).mac)


def teardown(call: Call, host: str | None) -> None:
    """Remove the ifb (always findable by name) and, when known, the host veth's qdiscs."""
    links.delete(ifb_name(call))
    if host and links.get(host) is not None:
        tc.delete_root(host)
        tc.delete_ingress(host)


def cmd_add(call: Call) -> Result:
    conf = load_conf(call)
    result = chained.pass_through(call)
    prev = call.require_prev_result()
    if conf.ingress is None and conf.egress is None:
        return result
    host = host_interface(call, prev)
    with ExitStack() as undo:
        if conf.ingress:
            setup_ingress(host, conf.ingress, undo)
        if conf.egress:
            result.add_interface(setup_egress(call, host, conf.egress, undo))
        undo.pop_all()
    return result


def cmd_del(call: Call) -> None:
    """Needs only the attachment's names: the limits are not read, so even a
    config that no longer validates can be torn down."""
    host = None
    prev = call.prev_result
    if prev is not None and sandbox.present(call.env.netns):
        try:
            host = host_interface(call, prev)
        except NotFoundError:
            host = None
    teardown(call, host)


def _check_tbf(dev: str, shape: Shape) -> None:
    want = tc.tbf_params(shape.rate, shape.burst)
    got = tc.root_tbf(dev)
    if got is None:
        raise CheckFailed(f"bandwidth: no tbf qdisc on {dev}")
    if got != want:
        raise CheckFailed(f"bandwidth: tbf on {dev} is {got}, want {want}")


def cmd_check(call: Call) -> None:
    conf = load_conf(call)
    prev = call.require_prev_result()
    if conf.ingress is None and conf.egress is None:
        return
    host = host_interface(call, prev)
    if conf.ingress:
        _check_tbf(host, conf.ingress)
    if conf.egress:
        ifb = links.get(ifb_name(call))
        if ifb is None:
            raise CheckFailed(f"bandwidth: ifb {ifb_name(call)} is missing")
        _check_tbf(ifb.name, conf.egress)
        if not any(r.target_index == ifb.index for r in tc.redirects(host)):
            raise CheckFailed(f"bandwidth: {host} does not redirect its ingress to {ifb.name}")


def cmd_gc(call: Call) -> None:
    """Delete ifbs of this network whose attachment is not in the keep-list."""
    keep = {attachment.tag(call.name, cid, ifname) for cid, ifname in call.valid_attachments()}
    mine = attachment.network_tag(call.name)
    for link in links.all_links():
        if link.kind != "ifb" or not link.name.startswith(IFB_PREFIX):
            continue
        parsed = attachment.parse_tag(link.alias)
        if parsed is None or parsed[0] != mine or link.alias in keep:
            continue
        links.delete(link.name)


PLUGIN = Plugin(name="bandwidth", add=cmd_add, delete=cmd_del, check=cmd_check, gc=cmd_gc)
