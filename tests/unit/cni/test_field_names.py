"""The reference's rule for field names (Go's encoding/json): a key names a field whatever
its case, the last matching key wins, and map-typed fields keep their keys exact.

First the rule itself (tulle.cni.keys), then every plugin: its whole configuration
respelled — as a Go struct without JSON tags writes it, in capitals, and with the two
non-ASCII letters Go folds to ASCII — must load exactly like the canonical one."""

from __future__ import annotations

import json
from typing import Any, Callable

import pytest

from tulle.cni import forward, keys, netconf, runtime
from tulle.cni.conf import Fields
from tulle.cni.env import Env
from tulle.cni.errors import from_exception
from tulle.cni.plugins.ipam import blocks, host_local, static
from tulle.cni.plugins.main import bridge, macvlan, ptp, routed, tulle
from tulle.cni.plugins.meta import bandwidth, firewall, portmap, tuning
from tulle.cni.skel import Call, handle
from tulle.cni.plugins import load

# --- the rule ------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["hostPort", "HostPort", "HOSTPORT", "hostport", "ho\u017ftPort"])
def test_every_case_of_a_name_is_the_field(key):
    assert keys.get({key: 8080}, "hostPort") == 8080
    assert Fields({key: 8080}, "m").int("hostPort") == 8080


@pytest.mark.parametrize("key", ["hostPorts", "host_port", "hostPor", "h\u00f6stPort", "hostPort "])
def test_other_names_are_not_the_field(key):
    assert keys.get({key: 8080}, "hostPort") is None
    with pytest.raises(Exception, match="m.hostPort is required"):
        Fields({key: 8080}, "m").int("hostPort", required=True)


def test_kelvin_sign_is_k():
    assert keys.get({"mas\u212a": 1}, "mask") == 1          # U+212A KELVIN SIGN


def test_the_last_matching_key_wins_and_null_is_absent():
    assert keys.get({"hostPort": 1, "HostPort": 2}, "hostPort") == 2
    assert keys.get({"HostPort": 2, "hostPort": 1}, "hostPort") == 1
    # Go resets a slice to nil on a later null (the reference: "no IP ranges specified")
    assert keys.get({"ranges": [1], "Ranges": None}, "ranges", "absent") == "absent"


def test_put_and_update_replace_every_spelling():
    d = {"MTU": 1400, "name": "a", "Mtu": 1300}
    keys.put(d, "mtu", 1500)
    assert d == {"name": "a", "mtu": 1500}
    keys.update(d, {"NAME": "b", "bridge": "br0"})
    assert d == {"mtu": 1500, "NAME": "b", "bridge": "br0"}
    assert keys.pop(d, "Name") == "b" and d == {"mtu": 1500, "bridge": "br0"}


# --- every plugin's configuration, respelled ------------------------------------------------

SPELLINGS: dict[str, Callable[[str], str]] = {
    "Go field": lambda k: k[:1].upper() + k[1:],           # containerd's untagged Go structs
    "capitals": str.upper,
    "Unicode folds": lambda k: k.replace("s", "\u017f").replace("k", "\u212a"),
}
# Map-typed fields: their keys are data (a sysctl's name, a capability's name), not field names.
MAPS = ("sysctl", "capabilities")


def respell(value: Any, spell: Callable[[str], str]) -> Any:
    if isinstance(value, dict):
        return {spell(k): (v if k in MAPS else respell(v, spell)) for k, v in value.items()}
    if isinstance(value, list):
        return [respell(v, spell) for v in value]
    return value


def call(conf: dict, command: str = "ADD") -> Call:
    env = Env(command=command, container_id="c1", netns="/run/netns/x", ifname="eth0", args=[])
    return Call(env=env, conf=conf, stdin=json.dumps(conf).encode(), version="1.0.0")


DNS = {"nameservers": ["10.96.0.10"], "domain": "cluster.local", "search": ["svc.cluster.local"],
       "options": ["ndots:5"]}
HOST_LOCAL = {"type": "host-local", "dataDir": "/var/lib/x", "resolvConf": "/etc/r.conf",
              "ranges": [[{"subnet": "10.1.0.0/24", "rangeStart": "10.1.0.10", "rangeEnd": "10.1.0.20",
                           "gateway": "10.1.0.254"}]],
              "routes": [{"dst": "0.0.0.0/0", "gw": "10.1.0.254", "mtu": 1400, "advmss": 1360,
                          "priority": 5, "table": 100, "scope": 0}]}
PREV = {"cniVersion": "1.0.0",
        "interfaces": [{"name": "cni0", "mac": "02:00:00:00:00:01"},
                       {"name": "eth0", "mac": "02:00:00:00:00:02", "sandbox": "/run/netns/x"}],
        "ips": [{"address": "10.1.0.10/24", "gateway": "10.1.0.254", "interface": 1}],
        "routes": [{"dst": "0.0.0.0/0"}], "dns": DNS}
TOP = {"cniVersion": "1.0.0", "name": "net"}


def _tulle_delegate(c: Call) -> tuple:
    """What the fabric plugin hands its delegates, as they read it."""
    senv = tulle.parse_subnet_env("FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24\n"
                                  "FLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n")
    d = {**tulle.build_delegate(tulle.load_conf(c), senv, c), "cniVersion": "1.0.0"}
    return bridge.load_conf(call(d)), host_local.load_conf(call(d))


# plugin -> (canonical config, what its configuration loads to)
PLUGINS: dict[str, tuple[dict, Callable[[Call], Any]]] = {
    "bridge": ({"type": "bridge", "bridge": "br9", "isGateway": True, "forceAddress": True, "ipMasq": True,
                "mtu": 1400, "hairpinMode": True, "preserveDefaultVlan": False, "macspoofchk": True,
                "enabledad": True, "dns": DNS, "ipam": HOST_LOCAL,
                "args": {"cni": {"mac": "02:00:00:00:00:0a"}}, "runtimeConfig": {"mac": "02:00:00:00:00:0b"}},
               bridge.load_conf),
    "bridge (vlan)": ({"type": "bridge", "vlan": 7, "promiscMode": True, "ipam": {}}, bridge.load_conf),
    "ptp": ({"type": "ptp", "ipMasq": True, "mtu": 1400, "dns": DNS, "ipam": HOST_LOCAL}, ptp.load_conf),
    "macvlan": ({"type": "macvlan", "master": "eth1", "mode": "vepa", "mtu": 1400, "mac": "02:00:00:00:00:0c",
                 "dns": DNS, "ipam": HOST_LOCAL}, macvlan.load_conf),
    "tulle-routed": ({"type": "tulle-routed", "mtu": 1400, "ipam": {"type": "tulle-blocks"}}, routed.load_conf),
    "tulle": ({"type": "tulle", "subnetFile": "/run/x.env", "dataDir": "/var/lib/t",
               "delegate": {"bridge": "br7", "hairpinMode": True, "ipam": {"dataDir": "/d", "routes": []}},
               "runtimeConfig": {"mac": "02:00:00:00:00:0d"}}, _tulle_delegate),
    "host-local": ({"type": "bridge", "ipam": HOST_LOCAL, "args": {"cni": {"ips": ["10.1.0.11"]}},
                    "runtimeConfig": {"ips": ["10.1.0.12"],
                                      "ipRanges": [[{"subnet": "10.2.0.0/24", "rangeStart": "10.2.0.5"}]]}},
                   lambda c: (host_local.load_conf(c), host_local.requested_ips(c))),
    "host-local (legacy range)": ({"type": "bridge", "ipam": {"type": "host-local", "subnet": "10.3.0.0/24",
                                                             "rangeStart": "10.3.0.9", "gateway": "10.3.0.1"}},
                                  host_local.load_conf),
    "static": ({"type": "bridge", "ipam": {"type": "static", "routes": HOST_LOCAL["routes"], "dns": DNS,
                                           "addresses": [{"address": "10.4.0.5/24", "gateway": "10.4.0.1"}]}},
               static.load_conf),
    "static (args)": ({"type": "bridge", "ipam": {"type": "static"}, "args": {"cni": {"ips": ["10.4.0.6/24"]}}},
                      static.load_conf),
    "static (runtimeConfig)": ({"type": "bridge", "ipam": {"type": "static"},
                                "runtimeConfig": {"ips": ["10.4.0.7/24"]}}, static.load_conf),
    "tulle-blocks": ({"type": "tulle-routed", "ipam": {"type": "tulle-blocks", "store": "sqlite:///s.db",
                                                      "node": "n1", "prefix": "/p", "pools": ["10.5.0.0/16"],
                                                      "blockSize": 27, "routes": [{"dst": "0.0.0.0/0"}]}},
                     lambda c: blocks.load_conf(c, store=None)),
    "portmap": ({"type": "portmap", "snat": False, "markMasqBit": 9, "prevResult": PREV,
                 "runtimeConfig": {"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "udp",
                                                     "hostIP": "198.51.100.1"}]}},
                lambda c: portmap.load_conf(c, c.prev_result)),
    "portmap (refused field)": ({"type": "portmap", "externalSetMarkChain": "KUBE-MARK"},
                                lambda c: portmap.load_conf(c, None)),
    "bandwidth": ({"type": "bandwidth", "ingressRate": 8000, "ingressBurst": 800, "egressRate": 16000,
                   "egressBurst": 1600}, bandwidth.load_conf),
    "bandwidth (runtimeConfig)": ({"type": "bandwidth", "runtimeConfig": {"bandwidth": {
                                      "ingressRate": 8000, "ingressBurst": 800}}}, bandwidth.load_conf),
    "bandwidth (refused field)": ({"type": "bandwidth", "ingressRate": 8000, "ingressBurst": 800,
                                   "shapedSubnets": ["10.0.0.0/8"]}, bandwidth.load_conf),
    "firewall (refused field)": ({"type": "firewall", "backend": "firewalld"}, firewall.load_conf),
    "firewall (refused policy)": ({"type": "firewall", "ingressPolicy": "same-bridge",
                                   "iptablesAdminChainName": "X"}, firewall.load_conf),
    "tuning": ({"type": "tuning", "sysctl": {"net.ipv4.conf.eth0.rp_filter": "1"}, "mac": "02:00:00:00:00:0e",
                "mtu": 1300, "promisc": True, "allmulti": True, "txQLen": 500, "dataDir": "/var/lib/tn"},
               tuning.load_conf),
    "netconf.mac": ({"type": "bridge", "args": {"cni": {"mac": "02:00:00:00:00:0f"}}}, netconf.mac),
}


def outcome(fn: Callable[[Call], Any], conf: dict) -> Any:
    """What loading gives: the value, or the error's kind and CNI code."""
    try:
        return fn(call(conf))
    except Exception as exc:  # noqa: BLE001 - the error is the outcome being compared
        return (type(exc).__name__, from_exception(exc).code)


@pytest.mark.parametrize("spelling", SPELLINGS)
@pytest.mark.parametrize("plugin", PLUGINS)
def test_every_field_of_every_plugin_in_any_case(plugin, spelling):
    conf, load_fn = PLUGINS[plugin]
    canonical = outcome(load_fn, {**TOP, **conf})
    assert outcome(load_fn, {**TOP, **respell(conf, SPELLINGS[spelling])}) == canonical


@pytest.mark.parametrize("plugin", PLUGINS)
def test_the_fields_compared_are_read(plugin):
    """Not vacuous: under names that are *not* theirs, the same fields load differently."""
    conf, load_fn = PLUGINS[plugin]
    assert outcome(load_fn, {**TOP, **respell(conf, lambda k: "x" + k)}) != outcome(load_fn, {**TOP, **conf})


@pytest.mark.parametrize("spelling", SPELLINGS)
def test_the_dispatcher_reads_version_name_and_attachments_in_any_case(spelling):
    """cniVersion, name, prevResult (and its fields) and GC's keep-list, through skel.handle."""
    spell = SPELLINGS[spelling]
    env = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c1", "CNI_NETNS": "/run/netns/x", "CNI_IFNAME": "eth0"}
    conf = {**TOP, "cniVersion": "0.4.0", "type": "static", "ipam": {"type": "static", "addresses": [
        {"address": "10.4.0.5/24", "gateway": "10.4.0.1"}]}}
    want = handle(load("static"), env, json.dumps(conf).encode())
    assert json.loads(want[0])["ips"][0]["version"] == "4"                  # 0.4.0 was read
    assert handle(load("static"), env, json.dumps(respell(conf, spell)).encode()) == want

    gc = {**TOP, "cniVersion": "1.1.0", "type": "static",
          "cni.dev/valid-attachments": [{"containerID": "c1", "ifname": "eth0"}]}
    assert call(respell(gc, spell), "GC").valid_attachments() == {("c1", "eth0")}
    chained = call(respell({**TOP, "type": "portmap", "prevResult": PREV}, spell))
    assert chained.prev_result == call({**TOP, "prevResult": PREV}).prev_result


@pytest.mark.parametrize("stdin", [b'{"AgentSocket": "/x.sock"}', b'{"AGENTSOCKET": "/x.sock"}',
                                   '{"agent\u017focket": "/x.sock"}'.encode(), b'{"agent\\u0053ocket": "/x.sock"}'])
def test_the_exec_path_finds_the_agent_socket_in_any_case(stdin):
    assert forward.socket_path(stdin) == "/x.sock"


def test_the_runtime_reads_a_plugins_type_and_capabilities_as_libcni_does():
    """A plugin's own fields fold (libcni decodes PluginConf as a struct); the capability
    names are a map's keys, matched exactly; injected fields replace every spelling."""
    conflist = {"cniVersion": "1.0.0", "name": "net", "plugins": [
        {"Type": "portmap", "Name": "stale", "Capabilities": {"portMappings": True, "Bandwidth": True}}]}
    runtime.validate_conflist(conflist)
    att = runtime.Attachment("c1", "/run/netns/x", capability_args={"portMappings": [], "bandwidth": {}})
    conf = runtime.Runtime.plugin_conf(conflist, conflist["plugins"][0], att, None)
    assert keys.get(conf, "type") == "portmap" and "Name" not in conf and conf["name"] == "net"
    assert conf["runtimeConfig"] == {"portMappings": []}
