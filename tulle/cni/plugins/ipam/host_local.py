"""host-local: hands out addresses from configured ranges and records the
leases in files on this host, exactly where and how the reference plugin does
(see disk.py), so either plugin can take over the other's state.

Range parsing lives in ranges.py, the allocation logic in allocator.py; this
module reads the config, holds the lock and speaks the CNI verbs. Unlike the
reference it also answers GC (spec 1.1.0), which reclaims leases that crashes
and reboots leaked.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from tulle.cni.errors import IO_FAILURE, CNIError
from tulle.cni.plugins.ipam import allocator, disk
from tulle.cni.plugins.ipam.ranges import RangeSet, parse_range_sets, parse_requested
from tulle.cni.skel import Call, Plugin
from tulle.cni.types import DNS, IPConfig, IPInterface, Result, Route
from tulle.errors import CheckFailed, ConfigError


@dataclass
class HostLocalConf:
    network: str
    range_sets: list[RangeSet]
    routes: list[Route] = field(default_factory=list)
    data_dir: str = disk.DEFAULT_DATA_DIR
    resolv_conf: str = ""


def requested_ips(call: Call) -> list[allocator.Requested]:
    """Addresses asked for by CNI_ARGS IP=, args.cni.ips and runtimeConfig.ips
    (deduplicated). Only ADD reads them, so a bad one never blocks a DEL."""
    asked: list[allocator.Requested] = []
    for item in (call.env.arg("IP") or "").split(","):
        if item.strip():
            asked.append((parse_requested(item, "CNI_ARGS IP"), "CNI_ARGS IP"))
    for where, values in (("args.cni.ips", call.fields.obj("args").obj("cni").list("ips")),
                          ("runtimeConfig.ips", call.runtime_config.list("ips"))):
        for i, value in enumerate(values):
            asked.append((parse_requested(value, f"{where}[{i}]"), f"{where}[{i}]"))
    seen, out = set(), []
    for ip, where in asked:
        if ip not in seen:
            seen.add(ip)
            out.append((ip, where))
    return out


def _network_name(call: Call) -> str:
    name = call.name
    if not name or name in (".", "..") or "/" in name or "\0" in name:
        raise ConfigError(f"name {name!r} cannot name host-local's state directory")
    return name


def load_conf(call: Call) -> HostLocalConf:
    if not isinstance(call.fields.raw("ipam"), dict):
        raise ConfigError("host-local: the ipam object is missing")
    ipam = call.fields.obj("ipam")
    return HostLocalConf(
        network=_network_name(call),
        range_sets=parse_range_sets(ipam, call.runtime_config.list("ipRanges")),
        routes=[Route.from_dict(r, f"ipam.routes[{i}]") for i, r in enumerate(ipam.list("routes"))],
        data_dir=ipam.str("dataDir") or disk.DEFAULT_DATA_DIR,
        resolv_conf=ipam.str("resolvConf"),
    )


def read_resolv_conf(path: str) -> DNS:
    """nameserver/domain/search/options of a resolv.conf, read as the reference does."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError as exc:
        raise CNIError(IO_FAILURE, f"ipam.resolvConf: cannot read {path}: {exc.strerror}") from None
    dns = DNS()
    for line in lines:
        words = line.split()
        if len(words) < 2 or words[0][0] in "#;":
            continue
        key, rest = words[0], words[1:]
        if key == "nameserver":
            dns.nameservers.append(rest[0])
        elif key == "domain":
            dns.domain = rest[0]
        elif key == "search":
            dns.search.extend(rest)
        elif key == "options":
            dns.options.extend(rest)
    return dns


def cmd_add(call: Call) -> Result:
    conf = load_conf(call)
    result = Result(cni_version=call.version, routes=conf.routes)
    if conf.resolv_conf:
        result.dns = read_resolv_conf(conf.resolv_conf)
    requested = requested_ips(call)
    with disk.locked(conf.data_dir, conf.network) as store:
        leases = allocator.allocate(store, conf.range_sets, call.env.container_id, call.env.ifname,
                                    requested, conf.network)
    result.ips = [IPConfig(address=_with_prefix(lease), gateway=lease.range.gateway) for lease in leases]
    return result


def _with_prefix(lease: allocator.Lease) -> IPInterface:
    return ipaddress.ip_interface(f"{lease.ip}/{lease.range.subnet.prefixlen}")


def cmd_del(call: Call) -> None:
    """Release whatever (containerID, ifname) holds; nothing held is success."""
    conf = load_conf(call)
    with disk.locked(conf.data_dir, conf.network) as store:
        allocator.release(store, call.env.container_id, call.env.ifname)


def cmd_check(call: Call) -> None:
    conf = load_conf(call)
    held = []
    if disk.exists(conf.data_dir, conf.network):
        with disk.locked(conf.data_dir, conf.network) as store:
            held = allocator.owned_by(store.allocations(), call.env.container_id, call.env.ifname)
    if not held:
        raise CheckFailed(f"host-local: no address is reserved for container {call.env.container_id} "
                          f"({call.env.ifname}) in network {conf.network!r}")


def cmd_gc(call: Call) -> None:
    conf = load_conf(call)
    if not disk.exists(conf.data_dir, conf.network):
        return
    with disk.locked(conf.data_dir, conf.network) as store:
        _, failures = allocator.collect(store, call.valid_attachments())
    if failures:
        raise CNIError(IO_FAILURE, f"host-local GC: could not release {len(failures)} address(es)",
                       "; ".join(failures))


PLUGIN = Plugin(name="host-local", add=cmd_add, delete=cmd_del, check=cmd_check, gc=cmd_gc,
                known_args=frozenset({"IP"}))
