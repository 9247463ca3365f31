"""BIRD configuration generation: golden text, and every variant passes `bird -p`."""

from __future__ import annotations

import ipaddress as ip
import shutil
import subprocess
from pathlib import Path

import pytest

from tulle.agent.backends.bgp.birdconf import BirdConfig, Peer, protocol_name, render, validate_asn, validate_pools
from tulle.errors import ConfigError

GOLDEN = Path(__file__).parent / "golden"
A = ip.ip_address


def mesh(node: int, nodes: int = 3, blocks=("10.244.1.0/26",)) -> BirdConfig:
    me = A(f"198.51.100.{10 + node}")
    peers = tuple(Peer(protocol_name("Mesh", A(f"198.51.100.{10 + k}")), A(f"198.51.100.{10 + k}"), 64512)
                  for k in range(1, nodes + 1) if k != node)
    return BirdConfig(router_id=me, asn=64512, pools=(ip.ip_network("10.244.0.0/16"),),
                      blocks=tuple(ip.ip_network(b) for b in blocks),
                      underlay=(ip.ip_network("198.51.100.0/24"),), underlay_dev="eth0", peers=peers)


def reflector() -> BirdConfig:
    base = mesh(1, blocks=())
    clients = tuple(Peer(protocol_name("Client", A(f"198.51.100.{10 + k}")), A(f"198.51.100.{10 + k}"), 64512,
                         rr_client=True) for k in (3, 4))
    other_rr = (Peer(protocol_name("RR", A("198.51.100.12")), A("198.51.100.12"), 64512),)
    return BirdConfig(**{**base.__dict__, "peers": other_rr + clients, "rr_cluster_id": A("198.51.100.250")})


def tor_peer() -> BirdConfig:
    base = mesh(2)
    return BirdConfig(**{**base.__dict__, "peers": (Peer("ToR", A("198.51.100.1"), 64513),)})


CASES = {"mesh": mesh(1), "no-blocks": mesh(2, blocks=()), "reflector": reflector(), "tor": tor_peer()}


def test_mesh_matches_golden():
    assert render(mesh(1)) == (GOLDEN / "bird_mesh.conf").read_text()


@pytest.mark.skipif(not shutil.which("bird"), reason="bird2 not installed")
@pytest.mark.parametrize("name", sorted(CASES))
def test_bird_accepts_every_variant(name, tmp_path):
    conf = tmp_path / "bird.conf"
    conf.write_text(render(CASES[name]))
    proc = subprocess.run(["bird", "-p", "-c", str(conf)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("asn", [0, -1, 4294967296, "64512", True])
def test_asn_out_of_range(asn):
    with pytest.raises(ConfigError, match="AS number"):
        validate_asn(asn)


def test_overlapping_pools():
    with pytest.raises(ConfigError, match="overlap"):
        validate_pools([ip.ip_network("10.244.0.0/16"), ip.ip_network("10.244.128.0/17")])


def test_reflector_marks_clients():
    text = render(reflector())
    assert text.count("rr client;") == 2 and "rr cluster id 198.51.100.250;" in text
