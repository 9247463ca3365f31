"""static IPAM through its executable: config addresses, CNI_ARGS, args and
runtimeConfig precedence, errors. No netns is touched, so no root is needed."""

from __future__ import annotations

import pytest

from tulle.cni import version as cniver

NETNS = "/run/netns/unused"


def conf(version: str = "1.0.0", **ipam) -> dict:
    return {"cniVersion": version, "name": "net", "type": "bridge",
            "ipam": {"type": "static", **ipam}}


ADDRS = [{"address": "10.10.0.5/24", "gateway": "10.10.0.1"}, {"address": "fd00:10::5/64"}]


@pytest.mark.parametrize("version", cniver.SUPPORTED)
def test_add_returns_configured_addresses(cni, version):
    c = conf(version, addresses=ADDRS, routes=[{"dst": "0.0.0.0/0"}],
             dns={"nameservers": ["10.10.0.53"], "search": ["example.org"]})
    out = cni("static", "ADD", c, netns=NETNS)
    assert out.ok, out
    tag = cniver.ips_carry_version(version)
    v4 = {"address": "10.10.0.5/24", "gateway": "10.10.0.1"}
    v6 = {"address": "fd00:10::5/64"}
    if tag:
        v4, v6 = {"version": "4", **v4}, {"version": "6", **v6}
    assert out.out == {
        "cniVersion": version,
        "ips": [v4, v6],
        "routes": [{"dst": "0.0.0.0/0"}],
        "dns": {"nameservers": ["10.10.0.53"], "search": ["example.org"]},
    }


def test_cni_args_add_addresses_and_gateways(cni):
    out = cni("static", "ADD", conf(addresses=ADDRS[:1]), netns=NETNS,
              args="IP=10.20.0.7/16, fd00:20::7/64;GATEWAY=10.20.0.1,fd00:20::1")
    assert out.ok, out
    assert [(i["address"], i.get("gateway")) for i in out.out["ips"]] == [
        ("10.10.0.5/24", "10.10.0.1"), ("10.20.0.7/16", "10.20.0.1"), ("fd00:20::7/64", "fd00:20::1")]


def test_args_then_runtime_config_replace(cni):
    c = conf(addresses=ADDRS)
    c["args"] = {"cni": {"ips": ["10.30.0.3/24"]}}
    out = cni("static", "ADD", c, netns=NETNS, args="IP=10.20.0.7/16")
    assert [i["address"] for i in out.out["ips"]] == ["10.30.0.3/24"]
    c["runtimeConfig"] = {"ips": ["10.40.0.4/24", "fd00:40::4/64"]}
    out = cni("static", "ADD", c, netns=NETNS)
    assert [i["address"] for i in out.out["ips"]] == ["10.40.0.4/24", "fd00:40::4/64"]


@pytest.mark.parametrize("ipam,args,field", [
    ({"addresses": [{"address": "10.10.0.5"}]}, "", "ipam.addresses[0].address"),
    ({"addresses": [{"address": "nope/24"}]}, "", "ipam.addresses[0].address"),
    ({"addresses": [{"address": "10.10.0.5/24", "gateway": "10.10.0.x"}]}, "", "ipam.addresses[0].gateway"),
    ({"addresses": [{"gateway": "10.10.0.1"}]}, "", "ipam.addresses[0].address"),
    ({}, "", "addresses"),
    ({}, "IP=10.1.1.1", "CNI_ARGS IP"),
    ({"addresses": ADDRS}, "GATEWAY=bad", "CNI_ARGS GATEWAY"),
    ({"addresses": ADDRS, "routes": [{"dst": "x"}]}, "", "ipam.routes[0].dst"),
])
def test_config_errors_name_the_field(cni, ipam, args, field):
    out = cni("static", "ADD", conf(**ipam), netns=NETNS, args=args)
    assert out.error_code == 7, out
    assert field in out.out["msg"]


def test_bad_runtime_config_ip(cni):
    c = conf(addresses=ADDRS)
    c["runtimeConfig"] = {"ips": ["10.1.1.1"]}
    out = cni("static", "ADD", c, netns=NETNS)
    assert out.error_code == 7 and "runtimeConfig.ips" in out.out["msg"]


def test_unknown_cni_args_rejected(cni):
    out = cni("static", "ADD", conf(addresses=ADDRS), netns=NETNS, args="FOO=1")
    assert out.error_code == 4
    assert cni("static", "ADD", conf(addresses=ADDRS), netns=NETNS, args="IgnoreUnknown=1;FOO=1").ok


def test_del_check_gc_succeed(cni):
    assert cni("static", "DEL", conf(addresses=ADDRS)).ok
    assert cni("static", "DEL", conf()).ok            # even a config with nothing in it
    c = conf(addresses=ADDRS)
    added = cni("static", "ADD", c, netns=NETNS).out
    assert cni("static", "CHECK", {**c, "prevResult": added}, netns=NETNS).ok
    gc = {**c, "cniVersion": "1.1.0", "cni.dev/valid-attachments": []}
    assert cni("static", "GC", gc, container_id="", ifname="").ok


def test_check_detects_missing_address(cni):
    c = conf(addresses=ADDRS)
    prev = {"cniVersion": "1.0.0", "ips": [{"address": "10.10.0.6/24", "gateway": "10.10.0.1"}]}
    out = cni("static", "CHECK", {**c, "prevResult": prev}, netns=NETNS)
    assert out.error_code == 103
