"""The bgp backend's config fields, BIRD output parsing and the config check (pure)."""

from __future__ import annotations

import ipaddress as ip
import shutil

import pytest

from tulle.cluster import netconfig
from tulle.cluster.backendconf import parse_bgp
from tulle.agent.backends.bgp.bird import check_config, parse_protocols, parse_routes
from tulle.errors import ConfigError

NET = ip.IPv4Network("10.244.0.0/16")


def test_defaults():
    cfg = parse_bgp({"Type": "bgp"}, NET)
    assert (cfg.asn, cfg.block_size, cfg.cross_subnet, cfg.vni, cfg.port, cfg.tor) == \
        (64512, 26, True, 4096, 4789, None)
    tor = parse_bgp({"ToR": {"ASNumber": 65000, "Peers": {"198.51.100.0/24": "198.51.100.1"}}}, NET).tor
    assert tor is not None and tor.asn == 65000
    assert parse_bgp({"ToR": True}, NET).tor.asn == 64513


@pytest.mark.parametrize("backend,message", [
    ({"ASNumber": 0}, "Backend.ASNumber must be within"),
    ({"ASNumber": 4294967296}, "Backend.ASNumber must be within"),
    ({"ASNumber": "64512"}, "Backend.ASNumber must be within"),
    ({"Pools": ["10.244.0.0/17", "10.244.64.0/18"]}, "Backend.Pools: IP pools 10.244.0.0/17 and 10.244.64.0/18 overlap"),
    ({"Pools": ["10.0.0.0/16"]}, "Backend.Pools[0]: 10.0.0.0/16 is not inside Network"),
    ({"Pools": ["bogus"]}, "Backend.Pools[0]: 'bogus' is not an IPv4 CIDR"),
    ({"BlockSize": 8}, "Backend.BlockSize: block size /8 does not fit pool"),
    ({"RouteReflectors": "n1"}, "Backend.RouteReflectors: must be a list of node names"),
    ({"CrossSubnet": "yes"}, "Backend.CrossSubnet: expected true or false"),
    ({"ToR": {"ASNumber": 64512}}, "Backend.ToR.ASNumber 64512 must differ"),
    ({"ToR": {"Peers": {"198.51.100.0/24": "203.0.113.1"}}}, "not on its segment"),
    ({"RRClusterID": "x"}, "Backend.RRClusterID"),
])
def test_bad_config_is_a_clear_error_in_netconfig(backend, message):
    with pytest.raises(ConfigError) as exc:
        netconfig.parse({"Network": str(NET), "Backend": {"Type": "bgp", **backend}})
    assert message in exc.value.msg


def test_netconfig_fills_bgp_defaults():
    cfg = netconfig.build(str(NET), backend="bgp", extra={"RouteReflectors": ["n1"]})
    assert cfg.backend == {"Type": "bgp", "ASNumber": 64512, "BlockSize": 26, "CrossSubnet": True,
                           "VNI": 4096, "Port": 4789, "RouteReflectors": ["n1"]}


PROTOCOLS = """BIRD 2.0.12 ready.
Name       Proto      Table      State  Since         Info
device1    Device     ---        up     17:47:18.571  
kernel1    Kernel     master4    up     17:47:18.571  
tulle_blocks Static     master4    up     17:47:18.571  
ToR        BGP        ---        start  17:47:18.571  Idle          
Mesh_198_51_100_12 BGP        ---        up     17:50:01.722  Established   
Mesh_198_51_100_13 BGP        ---        start  17:47:18.571  Active        Socket: Connection closed
"""

ROUTES = """BIRD 2.0.12 ready.
Table master4:
10.244.13.64/26      blackhole [tulle_blocks 17:50:02.133] * (200)
10.244.4.128/26      unicast [Mesh_198_51_100_12 17:50:02.518] * (100) [i]
\tvia 198.51.100.12 on eth0
                     unicast [ToR 17:50:03.000 from 198.51.100.1] (100) [AS64513i]
\tvia 198.51.100.1 on eth0
10.244.13.64/32      unicast [kernel1 17:50:02.144] * (10)
\tdev tule7f7d8058f50
"""


def test_parse_protocols():
    got = {p.name: p for p in parse_protocols(PROTOCOLS)}
    assert set(got) == {"device1", "kernel1", "tulle_blocks", "ToR", "Mesh_198_51_100_12", "Mesh_198_51_100_13"}
    assert got["Mesh_198_51_100_12"].established and not got["Mesh_198_51_100_13"].established
    assert got["Mesh_198_51_100_13"].info == "Active        Socket: Connection closed"
    assert got["kernel1"].table == "master4" and got["kernel1"].info == ""


def test_parse_routes():
    got = parse_routes(ROUTES)
    assert [(r.prefix, r.kind, r.protocol, r.primary, r.via, r.dev) for r in got] == [
        ("10.244.13.64/26", "blackhole", "tulle_blocks", True, (), ""),
        ("10.244.4.128/26", "unicast", "Mesh_198_51_100_12", True, ("198.51.100.12",), "eth0"),
        ("10.244.4.128/26", "unicast", "ToR", False, ("198.51.100.1",), "eth0"),
        ("10.244.13.64/32", "unicast", "kernel1", True, (), "tule7f7d8058f50"),
    ]


@pytest.mark.skipif(not shutil.which("bird"), reason="bird2 not installed")
def test_check_config_reports_birds_message(tmp_path):
    check_config("router id 198.51.100.11;\nprotocol device {}\n", str(tmp_path / "ok.conf"))
    with pytest.raises(ConfigError, match="rejected by `bird -p`"):
        check_config("router id 198.51.100.11;\nprotocol bogus {}\n", str(tmp_path / "bad.conf"))
