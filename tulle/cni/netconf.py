"""Config fields the main plugins share: mtu, mac (with its three sources) and dns."""

from __future__ import annotations

import re

from tulle.cni.conf import Fields
from tulle.cni.skel import Call
from tulle.cni.types import DNS
from tulle.errors import ConfigError

_MAC = re.compile(r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$")


def mtu(fields: Fields, key: str = "mtu") -> int:
    """0 = the kernel's default; otherwise what an Ethernet device accepts."""
    value = fields.int(key, 0, lo=0, hi=65535)
    if 0 < value < 68:
        raise ConfigError(f"{key} must be 0 (default) or at least 68, got {value}")
    return value


def parse_mac(value: str, where: str) -> str:
    if not _MAC.match(value):
        raise ConfigError(f"{where}: invalid MAC address {value!r} (want xx:xx:xx:xx:xx:xx)")
    if int(value[:2], 16) & 1:
        raise ConfigError(f"{where}: {value} is a multicast MAC address; a pod needs a unicast one")
    return value.lower()


def mac(call: Call, conf_key: str | None = None) -> str:
    """The pod MAC asked for, by rising precedence: the config field (macvlan's
    `mac`), CNI_ARGS MAC=, args.cni.mac, the `mac` runtimeConfig capability."""
    chosen, where = "", ""
    if conf_key:
        chosen, where = call.fields.str(conf_key), conf_key
    arg = call.env.arg("MAC")
    if arg:
        chosen, where = arg, "CNI_ARGS MAC"
    from_args = call.fields.obj("args").obj("cni").str("mac")
    if from_args:
        chosen, where = from_args, "args.cni.mac"
    runtime = call.runtime_config.str("mac")
    if runtime:
        chosen, where = runtime, "runtimeConfig.mac"
    return parse_mac(chosen, where) if chosen else ""


def dns(fields: Fields) -> DNS:
    """The config's own dns object, typed field by field (a nameserver of 5 is an error)."""
    return DNS.from_dict(fields.raw("dns"), f"{fields.where}.dns" if fields.where else "dns")


def ifname_field(fields: Fields, key: str, default: str) -> str:
    from tulle.cni.env import validate_ifname

    value = fields.str(key, default) or default
    why = validate_ifname(value)
    if why:
        raise ConfigError(f"{key}: interface name {why}")
    return value
