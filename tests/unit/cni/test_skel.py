"""The CNI dispatcher without root: env validation, versions, error codes."""

from __future__ import annotations

import json

import pytest

from tulle.cni import version as cniver
from tulle.cni.skel import Call, Plugin, handle
from tulle.cni.types import IPConfig, Interface, Result, Route, parse_cidr, parse_ip, parse_net
from tulle.errors import ConfigError

ENV = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c1", "CNI_NETNS": "/run/netns/x", "CNI_IFNAME": "eth0"}


def _add(call: Call) -> Result:
    r = Result(cni_version=call.version)
    idx = r.add_interface(Interface(name="eth0", mac="aa:bb:cc:dd:ee:ff", mtu=1400, sandbox=call.env.netns))
    r.ips.append(IPConfig(parse_cidr("10.1.0.2/24", "x"), parse_ip("10.1.0.1", "x"), idx))
    r.routes.append(Route(parse_net("0.0.0.0/0", "x"), mtu=1300))
    return r


def _boom(call: Call) -> None:
    raise ConfigError("bridge.mtu must be an integer, got 'x'")


ECHO = Plugin(name="echo", add=_add, delete=lambda c: None, check=lambda c: None, known_args=frozenset({"IP"}))
BROKEN = Plugin(name="broken", add=_boom, delete=_boom, check=_boom)


def conf(version: str = "1.0.0", **extra) -> bytes:
    return json.dumps({"cniVersion": version, "name": "net", "type": "echo", **extra}).encode()


def run(plugin=ECHO, env=None, stdin=None):
    out, code = handle(plugin, env or ENV, conf() if stdin is None else stdin)
    return code, (json.loads(out) if out else None)


@pytest.mark.parametrize("version", cniver.SUPPORTED)
def test_add_result_in_requested_version(version):
    code, out = run(stdin=conf(version))
    assert code == 0
    assert out["cniVersion"] == version
    ip = out["ips"][0]
    assert ip["address"] == "10.1.0.2/24" and ip["gateway"] == "10.1.0.1" and ip["interface"] == 0
    if cniver.ips_carry_version(version):
        assert ip["version"] == "4"
    else:
        assert "version" not in ip
    iface = out["interfaces"][0]
    assert ("mtu" in iface) == (version == "1.1.0")
    assert ("mtu" in out["routes"][0]) == (version == "1.1.0")


def test_version_verb_lists_supported():
    code, out = run(env={"CNI_COMMAND": "VERSION"}, stdin=b'{"cniVersion":"0.4.0"}')
    assert code == 0
    assert out == {"cniVersion": "0.4.0", "supportedVersions": list(cniver.SUPPORTED)}


@pytest.mark.parametrize("stdin,code", [
    (b"{not json", 6),
    (b"[1,2]", 6),
    (conf("0.2.0"), 1),
    (conf("9.9.9"), 1),
    (json.dumps({"name": "n", "type": "echo"}).encode(), 1),
    (json.dumps({"cniVersion": "1.0.0", "type": "echo"}).encode(), 7),
])
def test_bad_config_codes(stdin, code):
    got, out = run(stdin=stdin)
    assert got != 0
    assert out["code"] == code and out["msg"]


@pytest.mark.parametrize("env,names", [
    ({"CNI_COMMAND": "ADD"}, ["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"]),
    ({"CNI_COMMAND": "DEL", "CNI_CONTAINERID": "x"}, ["CNI_IFNAME"]),
    ({"CNI_COMMAND": "GC"}, ["CNI_PATH"]),
    ({"CNI_COMMAND": "FROB"}, ["CNI_COMMAND"]),
    ({**ENV, "CNI_CONTAINERID": "-bad"}, ["CNI_CONTAINERID"]),
    ({**ENV, "CNI_IFNAME": "a/b"}, ["CNI_IFNAME"]),
    ({**ENV, "CNI_IFNAME": "x" * 16}, ["CNI_IFNAME"]),
    ({**ENV, "CNI_ARGS": "K8S_POD_NAME=p"}, ["CNI_ARGS"]),
    ({**ENV, "CNI_ARGS": "garbage"}, ["CNI_ARGS"]),
])
def test_env_errors_name_the_variable(env, names):
    code, out = run(env=env)
    assert code != 0 and out["code"] == 4
    for name in names:
        assert name in out["msg"]


def test_cni_args_known_and_ignore_unknown():
    assert run(env={**ENV, "CNI_ARGS": "IP=10.1.0.9"})[0] == 0
    assert run(env={**ENV, "CNI_ARGS": "IgnoreUnknown=1;K8S_POD_NAME=p;IP=10.1.0.9"})[0] == 0


def test_del_needs_no_netns():
    assert run(env={"CNI_COMMAND": "DEL", "CNI_CONTAINERID": "c", "CNI_IFNAME": "eth0"})[0] == 0


@pytest.mark.parametrize("verb,version,ok", [
    ("CHECK", "0.3.1", False), ("CHECK", "0.4.0", True),
    ("STATUS", "1.0.0", False), ("STATUS", "1.1.0", True),
    ("GC", "1.0.0", False), ("GC", "1.1.0", True),
])
def test_verbs_gated_by_version(verb, version, ok):
    env = {**ENV, "CNI_COMMAND": verb, "CNI_PATH": "/x"}
    extra = {"cni.dev/valid-attachments": []} if verb == "GC" else {}
    code, out = run(env=env, stdin=conf(version, **extra))
    assert (code == 0) == ok
    if not ok:
        assert out["code"] == 1


def test_gc_accepts_older_attachments_key():
    env = {"CNI_COMMAND": "GC", "CNI_PATH": "/x"}
    assert run(env=env, stdin=conf("1.1.0", **{"cni.dev/attachments": []}))[0] == 0
    code, out = run(env=env, stdin=conf("1.1.0"))
    assert code != 0 and out["code"] == 7


def test_config_error_is_code_7_with_field_name():
    code, out = run(plugin=BROKEN)
    assert code != 0 and out["code"] == 7 and "bridge.mtu" in out["msg"]


def test_result_roundtrip_from_old_version():
    old = {"cniVersion": "0.3.1", "interfaces": [{"name": "eth0", "sandbox": "/x"}],
           "ips": [{"version": "4", "address": "10.0.0.2/24", "gateway": "10.0.0.1", "interface": 0}],
           "routes": [{"dst": "0.0.0.0/0"}], "dns": {"nameservers": ["10.0.0.53"]}}
    r = Result.from_dict(old)
    assert r.to_dict("1.0.0") == {
        "cniVersion": "1.0.0", "interfaces": [{"name": "eth0", "sandbox": "/x"}],
        "ips": [{"interface": 0, "address": "10.0.0.2/24", "gateway": "10.0.0.1"}],
        "routes": [{"dst": "0.0.0.0/0"}], "dns": {"nameservers": ["10.0.0.53"]}}
