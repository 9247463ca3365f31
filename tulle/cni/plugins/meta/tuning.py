"""tuning: adjusts the pod's interface (CNI_IFNAME) and its netns's network
sysctls after the main plugin made it.

Settable: `sysctl` (net.* only), `mtu`, `mac` (also CNI_ARGS `MAC=` and the
runtime's `mac` capability, which win in that order, as in the reference),
`promisc`, `allmulti`, `txQLen`. The original values are saved in
`<dataDir>/<containerID>-<ifname>.json` (dataDir defaults to the reference's
/var/lib/cni/tuning) and restored by DEL when the pod's netns still exists;
unlike the reference, changed sysctls are restored too.
"""

from __future__ import annotations

import json
import os
import re
from contextlib import ExitStack
from dataclasses import dataclass, field

from tulle.cni import chained, sandbox
from tulle.cni.skel import Call, Plugin
from tulle.cni.types import Result
from tulle.errors import CheckFailed, ConfigError, NotFoundError
from tulle.kernel import links, sysctl

DEFAULT_DATA_DIR = "/var/lib/cni/tuning"
_MAC = re.compile(r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$")


@dataclass(frozen=True)
class LinkSettings:
    """What tuning may set on the interface; None means "leave alone"."""

    mac: str | None = None
    mtu: int | None = None
    promisc: bool | None = None
    allmulti: bool | None = None
    txqlen: int | None = None

    def to_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if v is not None}


@dataclass(frozen=True)
class TuningConf:
    sysctls: dict[str, str] = field(default_factory=dict)
    link: LinkSettings = LinkSettings()
    data_dir: str = DEFAULT_DATA_DIR


def sysctl_key(key: str, where: str) -> str:
    """Validate a sysctl name (dotted or slashed); returns it in dotted form.

    Only network sysctls live in the pod's netns; anything else (or a path that
    climbs out of /proc/sys/net) would change the host, so it is refused."""
    parts = key.split("/") if "/" in key else key.split(".")
    if any(p in ("", ".", "..") for p in parts) or parts[0] != "net" or len(parts) < 2:
        raise ConfigError(f"{where}: {key!r} is not a network sysctl (want net.<...>)")
    if "/" in key and any("." in p for p in parts[:2]):
        raise ConfigError(f"{where}: invalid sysctl name {key!r}")
    return ".".join(parts) if "/" not in key else key


def parse_mac(value: str, where: str) -> str:
    if not _MAC.match(value):
        raise ConfigError(f"{where}: invalid MAC address {value!r} (want xx:xx:xx:xx:xx:xx)")
    mac = value.lower()
    if int(mac[:2], 16) & 1:
        raise ConfigError(f"{where}: {value!r} is a multicast MAC address")
    return mac


def load_conf(call: Call) -> TuningConf:
    f = call.fields
    raw = f.obj("sysctl")
    sysctls: dict[str, str] = {}
    for key, value in raw.data.items():
        name = sysctl_key(key, "sysctl")
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise ConfigError(f"sysctl.{key} must be a string, got {value!r}")
        sysctls[name] = str(value)
    mac = f.str("mac") or None
    mac_where = "mac"
    if call.env.arg("MAC"):
        mac, mac_where = call.env.arg("MAC"), "CNI_ARGS MAC"
    if call.runtime_config.str("mac"):
        mac, mac_where = call.runtime_config.str("mac"), "runtimeConfig.mac"
    settings = LinkSettings(
        mac=parse_mac(mac, mac_where) if mac else None,
        mtu=f.int("mtu", lo=68, hi=65535) if f.raw("mtu") is not None else None,
        promisc=f.bool("promisc") if f.raw("promisc") is not None else None,
        allmulti=f.bool("allmulti") if f.raw("allmulti") is not None else None,
        txqlen=f.int("txQLen", lo=0, hi=2**31 - 1) if f.raw("txQLen") is not None else None,
    )
    data_dir = f.str("dataDir", DEFAULT_DATA_DIR)
    if not os.path.isabs(data_dir):
        raise ConfigError(f"dataDir must be an absolute path, got {data_dir!r}")
    return TuningConf(sysctls=sysctls, link=settings, data_dir=data_dir)


# --- pod side (run inside the pod's netns) -------------------------------------

def read_link(ifname: str) -> LinkSettings:
    link = links.require(ifname)
    return LinkSettings(mac=link.mac, mtu=link.mtu, promisc=link.promisc,
                        allmulti=link.allmulti, txqlen=link.txqlen)


def apply_link(ifname: str, want: LinkSettings) -> None:
    if want.mac is not None:
        links.set_mac(ifname, want.mac)
    if want.mtu is not None:
        links.set_mtu(ifname, want.mtu)
    if want.promisc is not None:
        links.set_promisc(ifname, want.promisc)
    if want.allmulti is not None:
        links.set_allmulti(ifname, want.allmulti)
    if want.txqlen is not None:
        links.set_txqlen(ifname, want.txqlen)


def read_sysctls(keys: list[str]) -> dict[str, str]:
    out = {}
    for key in keys:
        try:
            out[key] = sysctl.get(key)
        except NotFoundError:
            raise ConfigError(f"sysctl {key} does not exist in the pod's network namespace") from None
    return out


def apply_sysctls(values: dict[str, str]) -> None:
    for key, value in values.items():
        sysctl.ensure(key, value)


def _snapshot(ifname: str, conf: TuningConf) -> dict:
    """The original values of exactly what this config changes."""
    current = read_link(ifname)
    link = {k: getattr(current, k) for k in conf.link.to_dict()}
    return {"link": link, "sysctl": read_sysctls(list(conf.sysctls))}


def _restore(ifname: str, saved: dict) -> None:
    if links.get(ifname) is None:
        return
    apply_link(ifname, LinkSettings(**saved.get("link", {})))
    for key, value in saved.get("sysctl", {}).items():
        try:
            sysctl.ensure(key, value)
        except NotFoundError:
            pass


# --- saved originals ------------------------------------------------------------

def state_path(conf: TuningConf, call: Call) -> str:
    return os.path.join(conf.data_dir, f"{call.env.container_id}-{call.env.ifname}.json")


def save_state(path: str, saved: dict) -> bool:
    """Write the originals unless a previous ADD already did (False then)."""
    if os.path.exists(path):
        return False
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(saved, f)
    os.replace(tmp, path)
    return True


def load_state(path: str) -> dict | None:
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        return None
    except ValueError:
        return None  # a torn file holds nothing we could restore safely


def _remove(path: str) -> None:
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


# --- verbs ----------------------------------------------------------------------

def _update_result(result: Result, ifname: str, now: LinkSettings, conf: TuningConf) -> None:
    for iface in result.interfaces:
        if iface.name == ifname and iface.sandbox:
            if conf.link.mac is not None:
                iface.mac = now.mac or iface.mac
            if conf.link.mtu is not None:
                iface.mtu = now.mtu or iface.mtu


def cmd_add(call: Call) -> Result:
    conf = load_conf(call)
    result = chained.pass_through(call)
    ns, ifname = sandbox.require_netns(call.env.netns), call.env.ifname
    saved = sandbox.run(ns, _snapshot, ifname, conf)
    path = state_path(conf, call)
    with ExitStack() as undo:
        if save_state(path, saved):
            undo.callback(_remove, path)
        undo.callback(sandbox.run, ns, _restore, ifname, saved)
        sandbox.run(ns, apply_sysctls, conf.sysctls)
        sandbox.run(ns, apply_link, ifname, conf.link)
        now = sandbox.run(ns, read_link, ifname)
        undo.pop_all()
    _update_result(result, ifname, now, conf)
    return result


def cmd_del(call: Call) -> None:
    conf = load_conf(call)
    path = state_path(conf, call)
    saved = load_state(path)
    if saved is not None and sandbox.present(call.env.netns):
        sandbox.run(call.env.netns, _restore, call.env.ifname, saved)
    _remove(path)


def _verify(ifname: str, conf: TuningConf) -> None:
    now = read_link(ifname)
    for key, want in conf.link.to_dict().items():
        got = getattr(now, key)
        if got != want:
            raise CheckFailed(f"tuning: {ifname} {key} is {got!r}, want {want!r}")
    for key, want in conf.sysctls.items():
        got = read_sysctls([key])[key]
        if got.split() != want.split():
            raise CheckFailed(f"tuning: sysctl {key} is {got!r}, want {want!r}")


def cmd_check(call: Call) -> None:
    conf = load_conf(call)
    call.require_prev_result()
    sandbox.require_netns(call.env.netns)
    sandbox.run(call.env.netns, _verify, call.env.ifname, conf)


PLUGIN = Plugin(name="tuning", add=cmd_add, delete=cmd_del, check=cmd_check, known_args=frozenset({"MAC"}))
