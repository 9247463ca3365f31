"""static: hands out exactly the addresses the configuration names.

Addresses come from `ipam.addresses`, then CNI_ARGS `IP=`/`GATEWAY=` add to
them; `args.cni.ips` and then the `ips` runtimeConfig capability replace them
(the reference's order of precedence). Nothing is allocated, so DEL and GC
have nothing to do.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tulle.cni.conf import Fields
from tulle.cni.skel import Call, Plugin
from tulle.cni.types import DNS, IPAddress, IPConfig, IPInterface, Result, Route, parse_cidr, parse_ip
from tulle.errors import CheckFailed, ConfigError


@dataclass
class Address:
    address: IPInterface
    gateway: IPAddress | None = None


@dataclass
class StaticConf:
    addresses: list[Address] = field(default_factory=list)
    routes: list[Route] = field(default_factory=list)
    dns: DNS = field(default_factory=DNS)


def _split(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def _cidr_list(values: list, where: str) -> list[Address]:
    return [Address(parse_cidr(v, f"{where}[{i}]")) for i, v in enumerate(values)]


def _config_addresses(ipam: Fields) -> list[Address]:
    out = []
    for i, raw in enumerate(ipam.list("addresses")):
        item = Fields(raw, f"ipam.addresses[{i}]")
        out.append(Address(item.cidr("address", required=True), item.ip("gateway")))
    return out


def _args_addresses(call: Call, addresses: list[Address]) -> list[Address]:
    """CNI_ARGS IP= appends addresses; GATEWAY= sets the gateway of those containing it."""
    ip_arg = call.env.arg("IP")
    if ip_arg:
        addresses = addresses + _cidr_list(_split(ip_arg), "CNI_ARGS IP")
    gw_arg = call.env.arg("GATEWAY")
    if gw_arg:
        for raw in _split(gw_arg):
            gw = parse_ip(raw, "CNI_ARGS GATEWAY")
            for addr in addresses:
                if gw.version == addr.address.version and gw in addr.address.network:
                    addr.gateway = gw
    return addresses


def load_conf(call: Call) -> StaticConf:
    if not isinstance(call.fields.raw("ipam"), dict):
        raise ConfigError("static: the ipam object is missing")
    ipam = call.fields.obj("ipam")
    addresses = _args_addresses(call, _config_addresses(ipam))
    args_ips = call.fields.obj("args").obj("cni").list("ips")
    if args_ips:
        addresses = _cidr_list(args_ips, "args.cni.ips")
    runtime_ips = call.runtime_config.list("ips")
    if runtime_ips:
        addresses = _cidr_list(runtime_ips, "runtimeConfig.ips")
    if not addresses:
        raise ConfigError("static: no addresses: set ipam.addresses, CNI_ARGS IP=, args.cni.ips or runtimeConfig.ips")
    routes = [Route.from_dict(r, f"ipam.routes[{i}]") for i, r in enumerate(ipam.list("routes"))]
    return StaticConf(addresses=addresses, routes=routes, dns=DNS.from_dict(ipam.raw("dns"), "ipam.dns"))


def cmd_add(call: Call) -> Result:
    conf = load_conf(call)
    result = Result(cni_version=call.version, routes=conf.routes, dns=conf.dns)
    result.ips = [IPConfig(address=a.address, gateway=a.gateway) for a in conf.addresses]
    return result


def cmd_del(call: Call) -> None:
    """Nothing was allocated; still succeed on any config (DEL must not fail)."""


def cmd_check(call: Call) -> None:
    """The config must parse, and a prevResult (when given) must carry every address."""
    conf = load_conf(call)
    prev = call.prev_result
    if prev is None:
        return
    for addr in conf.addresses:
        found = [ip for ip in prev.ips if ip.address.ip == addr.address.ip]
        if not found:
            raise CheckFailed(f"static: address {addr.address} is missing from prevResult")
        if addr.gateway is not None and found[0].gateway != addr.gateway:
            raise CheckFailed(
                f"static: address {addr.address} has gateway {found[0].gateway}, want {addr.gateway}")


def cmd_gc(call: Call) -> None:
    """Nothing to collect."""


PLUGIN = Plugin(name="static", add=cmd_add, delete=cmd_del, check=cmd_check, gc=cmd_gc,
                known_args=frozenset({"IP", "GATEWAY"}))
