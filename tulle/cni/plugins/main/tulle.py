"""tulle: the fabric plugin — Flannel's CNI plugin role.

The node agent leases this node a subnet of the cluster network and writes it
to subnet.env (FLANNEL_NETWORK, FLANNEL_SUBNET, FLANNEL_MTU, FLANNEL_IPMASQ).
This plugin turns that into a `bridge` + `host-local` configuration (the pod
gets an address of the node's subnet, a route to the whole cluster network via
the bridge, the backend's MTU) and runs it in-process through
tulle.cni.delegate. Like Flannel it saves each attachment's generated config in
`dataDir/<containerID>-<ifname>`, so DEL and CHECK act on what ADD did even
after subnet.env changed (or vanished). Fields in `delegate` override the
generated ones, as Flannel's `delegate` does.

Differences from Flannel on purpose: host-local keeps its leases under
`dataDir/networks` (Flannel leaves the default /var/lib/cni/networks), a
missing subnet.env is error 11 "try again later" (the agent may not hold its
lease yet), a failed ADD also removes the saved config, DEL without a saved
config rebuilds it from subnet.env so the lease is still released, and the
plugin answers GC and STATUS.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import tempfile
from contextlib import ExitStack
from dataclasses import dataclass

from tulle import node_defaults
from tulle.cni import delegate, keys
from tulle.cni.errors import NOT_AVAILABLE, CNIError
from tulle.cni.skel import Call, Plugin
from tulle.cni.types import Result
from tulle.cni.undo import Steps, quietly
from tulle.errors import CheckFailed, ConfigError, TryAgain, TulleError

log = logging.getLogger("tulle.cni")

DEFAULT_SUBNET_FILE = node_defaults.SUBNET_ENV
DEFAULT_DATA_DIR = "/var/lib/tulle/cni"
DEFAULT_BRIDGE = "tulle0"
IPAM_SUBDIR = "networks"
SUBNET_KEYS = ("FLANNEL_NETWORK", "FLANNEL_SUBNET", "FLANNEL_MTU", "FLANNEL_IPMASQ")


@dataclass
class TulleConf:
    network: str
    subnet_file: str = DEFAULT_SUBNET_FILE
    data_dir: str = DEFAULT_DATA_DIR
    delegate: dict | None = None


@dataclass(frozen=True)
class SubnetEnv:
    """What the agent published about this node's lease."""

    network: ipaddress.IPv4Network | ipaddress.IPv6Network
    subnet: ipaddress.IPv4Interface | ipaddress.IPv6Interface
    mtu: int
    ipmasq: bool


def load_conf(call: Call) -> TulleConf:
    f = call.fields
    overrides = f.obj("delegate")  # validates that it is an object
    kind = overrides.str("type", "bridge")
    if not kind:
        raise ConfigError("delegate.type must be a non-empty string")
    overrides.obj("ipam")
    return TulleConf(
        network=call.name,
        subnet_file=f.str("subnetFile", DEFAULT_SUBNET_FILE) or DEFAULT_SUBNET_FILE,
        data_dir=f.str("dataDir", DEFAULT_DATA_DIR) or DEFAULT_DATA_DIR,
        delegate=dict(overrides.data),
    )


# --- subnet.env ----------------------------------------------------------------

def parse_subnet_env(text: str, where: str = "subnet.env") -> SubnetEnv:
    """Parse KEY=VALUE lines; a missing key or bad value is a ConfigError naming it."""
    values: dict[str, str] = {}
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{where}: line {n} is not KEY=VALUE: {line!r}")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        values[key.strip()] = value
    missing = [k for k in SUBNET_KEYS if not values.get(k)]
    if missing:
        raise ConfigError(f"{where}: missing {', '.join(missing)}")
    try:
        network = ipaddress.ip_network(values["FLANNEL_NETWORK"], strict=False)
    except ValueError:
        raise ConfigError(f"{where}: FLANNEL_NETWORK {values['FLANNEL_NETWORK']!r} is not a CIDR") from None
    try:
        subnet = ipaddress.ip_interface(values["FLANNEL_SUBNET"])
    except ValueError:
        raise ConfigError(f"{where}: FLANNEL_SUBNET {values['FLANNEL_SUBNET']!r} is not an address/len") from None
    if subnet.version != network.version or not subnet.network.subnet_of(network):  # type: ignore[arg-type]
        raise ConfigError(f"{where}: FLANNEL_SUBNET {subnet} is not inside FLANNEL_NETWORK {network}")
    try:
        mtu = int(values["FLANNEL_MTU"])
    except ValueError:
        mtu = -1
    if not 68 <= mtu <= 65535:
        raise ConfigError(f"{where}: FLANNEL_MTU {values['FLANNEL_MTU']!r} is not an MTU (68..65535)")
    ipmasq = values["FLANNEL_IPMASQ"].lower()
    if ipmasq not in ("true", "false"):
        raise ConfigError(f"{where}: FLANNEL_IPMASQ {values['FLANNEL_IPMASQ']!r} must be true or false")
    return SubnetEnv(network=network, subnet=subnet, mtu=mtu, ipmasq=ipmasq == "true")


def read_subnet_env(path: str) -> SubnetEnv:
    """The node's lease; missing is TryAgain (code 11): the agent may not have it yet."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        raise TryAgain(f"subnetFile {path} does not exist yet: is the tulle agent running "
                       "and holding a subnet lease?") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"subnetFile {path} cannot be read: {exc}") from None
    return parse_subnet_env(text, f"subnetFile {path}")


# --- the delegate's configuration -------------------------------------------------

def build_delegate(conf: TulleConf, senv: SubnetEnv, call: Call) -> dict:
    """The bridge + host-local config for this node's subnet; `delegate` fields win
    (in any spelling of their names: each replaces the generated field it names)."""
    overrides = dict(conf.delegate or {})
    out: dict = {"type": "bridge"}
    if keys.get(overrides, "type", "bridge") == "bridge":
        out.update({"bridge": DEFAULT_BRIDGE, "isGateway": True})
    out.update({"mtu": senv.mtu, "ipMasq": not senv.ipmasq})
    ipam: dict = {"type": "host-local",
                  "ranges": [[{"subnet": str(senv.subnet.network)}]],
                  "routes": [{"dst": str(senv.network)}]}
    keys.update(ipam, keys.pop(overrides, "ipam") or {})
    if keys.get(ipam, "type") == "host-local" and keys.get(ipam, "dataDir") is None:
        ipam["dataDir"] = os.path.join(conf.data_dir, IPAM_SUBDIR)
    keys.update(out, overrides)
    keys.update(out, {"ipam": ipam, "name": conf.network, "cniVersion": call.version})
    for key in ("runtimeConfig", "args"):  # capabilities and args reach the plugin that uses them
        value = keys.get(call.conf, key)
        if value is not None:
            keys.put(out, key, value)
    return out


def for_call(saved: dict, call: Call) -> dict:
    """A saved config made current: the call's version and prevResult."""
    out = without_prev_result(saved)
    keys.put(out, "cniVersion", call.version)
    prev = keys.get(call.conf, "prevResult")
    if prev is not None:
        out["prevResult"] = prev
    return out


def without_prev_result(dconf: dict) -> dict:
    """A copy without prevResult (in any spelling): it belongs to one call, not to the attachment."""
    out = dict(dconf)
    keys.pop(out, "prevResult")
    return out


def _encode(dconf: dict) -> bytes:
    return json.dumps(dconf).encode()


# --- saved configs (one file per attachment) --------------------------------------

def saved_path(conf: TulleConf, container_id: str, ifname: str) -> str:
    # CNI_CONTAINERID and CNI_IFNAME are validated by skel: no '/', no leading '.'.
    return os.path.join(conf.data_dir, f"{container_id}-{ifname}")


def load_saved(path: str) -> dict | None:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"saved delegate config {path} is unreadable: {exc}") from None
    if not isinstance(data, dict) or not isinstance(keys.get(data, "type"), str):
        raise ConfigError(f"saved delegate config {path} is not a plugin config")
    return data


def save(path: str, dconf: dict) -> None:
    """Atomic write (temp file + rename): a crash never leaves half a config."""
    directory = os.path.dirname(path)
    os.makedirs(directory, mode=0o700, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-")  # dot: never a container's name
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(without_prev_result(dconf), f)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def remove_saved(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _restore(path: str, previous: dict | None) -> None:
    if previous is None:
        remove_saved(path)
    else:
        save(path, previous)


def saved_of_network(conf: TulleConf) -> dict[str, dict]:
    """Saved configs of this network, by file name (other networks may share dataDir)."""
    out: dict[str, dict] = {}
    try:
        names = os.listdir(conf.data_dir)
    except FileNotFoundError:
        return out
    for name in names:
        path = os.path.join(conf.data_dir, name)
        if name.startswith(".") or not os.path.isfile(path):
            continue
        try:
            data = load_saved(path)
        except ConfigError as exc:
            log.warning("skipping %s", exc.msg)
            continue
        if data is not None and keys.get(data, "name") == conf.network:
            out[name] = data
    return out


# --- verbs -------------------------------------------------------------------------

def cmd_add(call: Call) -> Result:
    conf = load_conf(call)
    senv = read_subnet_env(conf.subnet_file)
    dconf = build_delegate(conf, senv, call)
    path = saved_path(conf, call.env.container_id, call.env.ifname)
    with ExitStack() as undo:
        previous = load_saved(path) if os.path.exists(path) else None
        save(path, dconf)
        undo.callback(quietly(_restore, path, previous))
        result = delegate.invoke(call, keys.get(dconf, "type"), "ADD", _encode(dconf))
        assert result is not None
        undo.pop_all()
    return result


def cmd_del(call: Call) -> None:
    """Idempotent; uses the saved config, else today's subnet.env, else there is nothing to do."""
    conf = load_conf(call)
    path = saved_path(conf, call.env.container_id, call.env.ifname)
    try:
        dconf = load_saved(path)
    except ConfigError as exc:
        log.warning("%s; rebuilding it from the subnet file", exc.msg)
        dconf = None
    if dconf is None:
        try:
            dconf = build_delegate(conf, read_subnet_env(conf.subnet_file), call)
        except TulleError as exc:
            log.info("DEL %s/%s: no saved config and no usable subnet file (%s): nothing to do",
                     call.env.container_id, call.env.ifname, exc.msg)
            remove_saved(path)
            return
    delegate.invoke(call, keys.get(dconf, "type"), "DEL", _encode(for_call(dconf, call)))
    remove_saved(path)


def cmd_check(call: Call) -> None:
    conf = load_conf(call)
    call.require_prev_result()
    path = saved_path(conf, call.env.container_id, call.env.ifname)
    saved = load_saved(path)
    if saved is None:
        raise CheckFailed(f"no saved delegate config {path}: this attachment was not added by tulle")
    delegate.invoke(call, keys.get(saved, "type"), "CHECK", _encode(for_call(saved, call)))


def cmd_gc(call: Call) -> None:
    """The delegate collects leases and rules; saved configs of gone attachments are removed."""
    conf = load_conf(call)
    keep = {f"{cid}-{ifname}" for cid, ifname in call.valid_attachments()}
    saved = saved_of_network(conf)
    try:
        dconf: dict | None = build_delegate(conf, read_subnet_env(conf.subnet_file), call)
    except TulleError:
        dconf = next(iter(saved.values()), None)  # same ipam dataDir and network name
    steps = Steps()
    if dconf is not None:
        valid = [{"containerID": cid, "ifname": ifname} for cid, ifname in sorted(call.valid_attachments())]
        gc_conf = {**for_call(dconf, call), "cni.dev/valid-attachments": valid}
        steps.run(delegate.invoke, call, keys.get(gc_conf, "type"), "GC", _encode(gc_conf))
    for name in saved:
        if name not in keep:
            steps.run(remove_saved, os.path.join(conf.data_dir, name))
    steps.finish()


def cmd_status(call: Call) -> None:
    """Available once the agent has published this node's lease."""
    conf = load_conf(call)
    try:
        senv = read_subnet_env(conf.subnet_file)
    except TulleError as exc:
        raise CNIError(NOT_AVAILABLE, f"tulle is not ready: {exc.msg}") from None
    dconf = build_delegate(conf, senv, call)
    delegate.invoke(call, keys.get(dconf, "type"), "STATUS", _encode(dconf))


PLUGIN = Plugin(name="tulle", add=cmd_add, delete=cmd_del, check=cmd_check, status=cmd_status,
                gc=cmd_gc, known_args=frozenset({"MAC", "IP", "GATEWAY"}))
