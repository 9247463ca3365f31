"""Network config validation (pure) and its store round trip."""

from __future__ import annotations

import ipaddress
import subprocess
import sys

import pytest

from tulle.cluster import backendconf, netconfig
from tulle.errors import ConfigError, NotFoundError
from tulle.store import open_store


def test_defaults_follow_flannel_with_vxlan_backend():
    cfg = netconfig.parse('{"Network": "10.244.0.0/16"}')
    assert cfg.subnet_len == 24
    assert str(cfg.subnet_min) == "10.244.1.0/24"      # the first subnet is skipped
    assert str(cfg.subnet_max) == "10.244.255.0/24"
    assert cfg.backend == {"Type": "vxlan", "VNI": 1, "Port": 8472, "DirectRouting": False}
    assert len(list(cfg.subnets())) == 255


@pytest.mark.parametrize("backend, expected", [
    ({"Type": "udp"}, {"Type": "udp", "Port": 8285}),
    ({"Type": "host-gw"}, {"Type": "host-gw"}),
    ({"Type": "vxlan", "VNI": 42, "DirectRouting": True},
     {"Type": "vxlan", "VNI": 42, "Port": 8472, "DirectRouting": True}),
])
def test_backend_defaults(backend, expected):
    assert netconfig.parse({"Network": "10.244.0.0/16", "Backend": backend}).backend == expected


def test_small_network_gets_prefix_plus_one():
    cfg = netconfig.parse({"Network": "10.244.0.0/24"})
    assert cfg.subnet_len == 25
    assert [str(s) for s in cfg.subnets()] == ["10.244.0.128/25"]


def test_explicit_bounds():
    cfg = netconfig.parse({"Network": "10.244.0.0/16", "SubnetMin": "10.244.10.0", "SubnetMax": "10.244.12.0"})
    assert [str(s) for s in cfg.subnets()] == ["10.244.10.0/24", "10.244.11.0/24", "10.244.12.0/24"]
    assert cfg.contains(ipaddress.IPv4Network("10.244.11.0/24"))
    assert not cfg.contains(ipaddress.IPv4Network("10.244.13.0/24"))
    assert not cfg.contains(ipaddress.IPv4Network("10.244.11.0/25"))


@pytest.mark.parametrize("config, message", [
    ("not json", "not valid JSON"),
    ([], "must be a JSON object"),
    ({}, "Network: required"),
    ({"Network": "10.244.0.0"}, "is not a CIDR"),
    ({"Network": "banana/16"}, "not a valid IPv4 CIDR"),
    ({"Network": "fd00::/64"}, "not a valid IPv4 CIDR"),
    ({"Network": "10.244.0.1/16"}, "has host bits set (did you mean 10.244.0.0/16?)"),
    ({"Network": "10.244.0.0/29"}, "too small"),
    ({"Network": "10.244.0.0/16", "SubnetLen": 16}, "SubnetLen /16 is larger than the network allows"),
    ({"Network": "10.244.0.0/16", "SubnetLen": 8}, "larger than the network allows"),
    ({"Network": "10.244.0.0/16", "SubnetLen": 31}, "SubnetLen /31 is too long"),
    ({"Network": "10.244.0.0/16", "SubnetLen": "24"}, "SubnetLen: expected an integer"),
    ({"Network": "10.244.0.0/16", "SubnetMin": "10.245.0.0"}, "SubnetMin 10.245.0.0 is outside Network"),
    ({"Network": "10.244.0.0/16", "SubnetMax": "10.244.3.7"}, "SubnetMax 10.244.3.7 is not aligned"),
    ({"Network": "10.244.0.0/16", "SubnetMin": "x"}, "SubnetMin 'x' is not an IPv4 address"),
    ({"Network": "10.244.0.0/16", "SubnetMin": "10.244.9.0", "SubnetMax": "10.244.3.0"}, "is above SubnetMax"),
    ({"Network": "10.244.0.0/16", "Backend": {"Type": "geneve"}},
     "unknown backend 'geneve'; known backends: bgp, host-gw, udp, vxlan"),
    ({"Network": "10.244.0.0/16", "Backend": "vxlan"}, "Backend: expected an object"),
    ({"Network": "10.244.0.0/16", "Backend": {"Type": "vxlan", "VNI": 0}}, "Backend.VNI 0 is out of range"),
    ({"Network": "10.244.0.0/16", "Backend": {"Type": "vxlan", "VNI": 1 << 24}}, "out of range"),
    ({"Network": "10.244.0.0/16", "Backend": {"Type": "udp", "Port": 70000}}, "Backend.Port 70000 is out of range"),
    ({"Network": "10.244.0.0/16", "Backend": {"Type": "vxlan", "DirectRouting": "yes"}},
     "Backend.DirectRouting: expected true or false"),
])
def test_bad_configs_are_clear_errors(config, message):
    with pytest.raises(ConfigError) as exc:
        netconfig.parse(config)
    assert message in exc.value.msg


def test_backend_config_is_the_typed_view_of_backend():
    cfg = netconfig.parse({"Network": "10.244.0.0/16", "Backend": {"Type": "vxlan", "VNI": 42}})
    assert cfg.backend_config == backendconf.VxlanConfig(vni=42)
    assert netconfig.build("10.244.0.0/16", backend="udp").backend_config == backendconf.UdpConfig(8285)
    with pytest.raises(ConfigError, match="Backend.VNI 0 is out of range"):   # Flannel's fields, under any type
        netconfig.parse({"Network": "10.244.0.0/16", "Backend": {"Type": "host-gw", "VNI": 0}})


def test_netconfig_imports_nothing_of_the_agent():
    """The network config sits below the agent: validating it must not import tulle.agent."""
    code = "import sys, tulle.cluster.netconfig; print(sorted(m for m in sys.modules if m.startswith('tulle.agent')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_build_validates_like_parse():
    cfg = netconfig.build("10.244.0.0/16", subnet_len=26, backend="udp", port=9000)
    assert cfg.subnet_len == 26 and cfg.backend == {"Type": "udp", "Port": 9000}
    with pytest.raises(ConfigError, match="unknown backend"):
        netconfig.build("10.244.0.0/16", backend="nope")
    assert netconfig.parse(cfg.to_json()) == cfg


def test_overlaps_with_underlay():
    underlay = ["198.51.100.0/24", "203.0.113.0/24"]
    assert netconfig.overlaps("10.244.0.0/16", underlay) == []
    assert netconfig.overlaps("198.51.0.0/16", underlay) == ["198.51.100.0/24"]
    assert netconfig.overlaps("203.0.113.128/25", ["203.0.113.5/24", "fd00::/8"]) == ["203.0.113.5/24"]
    netconfig.check_no_overlap("10.244.0.0/16", underlay)
    with pytest.raises(ConfigError, match="overlaps the underlay range"):
        netconfig.check_no_overlap("198.51.100.0/25", underlay)


def test_write_and_read_through_the_store():
    store = open_store("sqlite://:memory:")
    with pytest.raises(NotFoundError, match="tulle agent init-network"):
        netconfig.read_config(store, "/x")
    cfg = netconfig.build("10.244.0.0/16", backend="host-gw")
    netconfig.write_config(store, "/x/", cfg)
    assert store.get("/x/config") is not None
    assert netconfig.read_config(store, "/x") == cfg
    store.put("/x/config", '{"Network": "10.244.0.0/16", "SubnetLen": 12}')
    with pytest.raises(ConfigError, match="network config at /x/config: SubnetLen /12"):
        netconfig.read_config(store, "/x")
