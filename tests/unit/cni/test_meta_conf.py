"""Pure parts of the meta plugins: tbf arithmetic, config validation."""

from __future__ import annotations

import json

import pytest

from tulle.cni.plugins.meta import bandwidth, portmap, tuning
from tulle.cni.skel import Plugin, handle
from tulle.errors import ConfigError
from tulle.kernel import tc
from tulle.kernel.routes import Route
import ipaddress


def test_tbf_params_match_reference_arithmetic():
    # rate 8 Mbit/s = 1e6 B/s, burst 400 kbit = 50 kB: 50 ms = 50000 us * 15.625 ticks/us
    assert tc.tbf_params(8_000_000, 400_000, ticks_per_usec=15.625) == tc.Tbf(
        rate=1_000_000, buffer=781_250, limit=25_000 + 50_000)
    p = tc.tbf_params(10_000_000, 123_456, ticks_per_usec=15.625)
    assert p.rate == 1_250_000 and p.limit == 31_250 + 15_432
    assert p.buffer == int(int(15_432 * 1e6 / 1_250_000) * 15.625)


@pytest.mark.parametrize("key", ["net.ipv4.ip_forward", "net/ipv4/conf/eth0.100/rp_filter",
                                 "net.ipv6.conf.eth0.accept_ra"])
def test_sysctl_key_ok(key):
    assert tuning.sysctl_key(key, "sysctl") == key


@pytest.mark.parametrize("key", ["net/../../kernel/x", "kernel.hostname", "net", "net..x", "net/./x",
                                 "net/ipv4/../../../etc", "/net/ipv4/ip_forward", "net.ipv4/x"])
def test_sysctl_key_refused(key):
    with pytest.raises(ConfigError):
        tuning.sysctl_key(key, "sysctl")


def test_route_interface_longest_prefix():
    table = [Route(dst=ipaddress.ip_network("0.0.0.0/0"), dev="eth0"),
             Route(dst=ipaddress.ip_network("10.77.0.0/16"), dev="br0"),
             Route(dst=ipaddress.ip_network("10.77.0.0/24"), dev="cni0"),
             Route(dst=ipaddress.ip_network("10.77.0.2/32"), blackhole=True)]
    assert portmap.route_interface(ipaddress.ip_address("10.77.0.2"), table) == "cni0"
    assert portmap.route_interface(ipaddress.ip_address("10.77.5.2"), table) == "br0"


ENV = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c1", "CNI_NETNS": "/run/netns/none", "CNI_IFNAME": "eth0"}


def _run(plugin: Plugin, **conf) -> dict:
    stdin = json.dumps({"cniVersion": "1.0.0", "name": "n", **conf}).encode()
    out, _ = handle(plugin, ENV, stdin)
    return json.loads(out)


@pytest.mark.parametrize("fields", [
    {"ingressRate": 1000},
    {"egressBurst": 1000},
    {"ingressRate": 1000, "ingressBurst": True},
    {"ingressRate": 4, "ingressBurst": 4},
    {"runtimeConfig": {"bandwidth": {"egressRate": -5, "egressBurst": 100}}},
])
def test_bandwidth_bad_config(fields):
    assert _run(bandwidth.PLUGIN, type="bandwidth", prevResult={"cniVersion": "1.0.0"}, **fields)["code"] == 7


def test_bandwidth_top_level_wins_over_runtime_config():
    from tulle.cni.skel import Call
    from tulle.cni.env import parse_env
    conf = {"cniVersion": "1.0.0", "name": "n", "ingressRate": 800, "ingressBurst": 80,
            "runtimeConfig": {"bandwidth": {"egressRate": 800, "egressBurst": 80}}}
    c = bandwidth.load_conf(Call(parse_env(ENV), conf, b"", "1.0.0"))
    assert c.ingress == bandwidth.Shape(800, 80) and c.egress is None


@pytest.mark.parametrize("fields", [
    {"sysctl": {"kernel.x": "1"}}, {"mac": "zz"}, {"mtu": 1}, {"allmulti": 1},
])
def test_tuning_bad_config(fields):
    assert _run(tuning.PLUGIN, type="tuning", prevResult={"cniVersion": "1.0.0"}, **fields)["code"] == 7
