"""The udp backend's pure parts: config, the routing table, and the forwarder's
per-packet and control paths driven through pipes and a fake socket (no root,
no network)."""

from __future__ import annotations

import ipaddress
import json
import os
import struct

import pytest

from tulle.agent.backends import udp, udp_forwarder as fw
from tulle.cluster.backendconf import parse_udp
from tulle.cluster.lease import Lease
from tulle.errors import ConfigError

NET = ipaddress.IPv4Network
IP = ipaddress.IPv4Address


def lease(k: int, ip: str, kind: str = "udp") -> Lease:
    return Lease(subnet=NET(f"10.244.{k}.0/24"), public_ip=IP(ip), backend_type=kind)


def packet(src: str, dst: str, payload: bytes = b"x" * 12) -> bytes:
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 0, 0, 64, 17, 0,
                         IP(src).packed, IP(dst).packed)
    return header + payload


def test_port_config():
    assert parse_udp({"Type": "udp"}).port == 8285
    assert parse_udp({"Port": 9000}).port == 9000
    with pytest.raises(ConfigError, match="Backend.Port"):
        parse_udp({"Port": "x"})


def test_routing_table_skips_own_foreign_and_overlapping():
    own = lease(1, "198.51.100.11")
    table, skipped = udp.routing_table(
        [own, lease(2, "198.51.100.12"), lease(3, "198.51.100.13", kind="vxlan"),
         Lease(NET("10.244.2.128/25"), IP("198.51.100.14"), "udp")], own)
    assert table == {NET("10.244.2.0/24"): IP("198.51.100.12")}
    assert {str(l.subnet): reason for l, reason in skipped} == {
        "10.244.3.0/24": "backend type 'vxlan' is not 'udp'", "10.244.2.128/25": "subnet overlaps another lease"}


def test_table_longest_prefix_and_peers():
    t = fw.Table([("10.244.2.0/24", "198.51.100.12"), ("10.244.2.128/25", "198.51.100.14"),
                  ("10.244.3.0/24", "203.0.113.13")], 8285)
    def look(ip):
        return t.lookup(int(IP(ip)))
    assert look("10.244.2.7") == ("198.51.100.12", 8285)
    assert look("10.244.2.200") == ("198.51.100.14", 8285)
    assert look("10.244.3.1") == ("203.0.113.13", 8285)
    assert look("10.244.9.1") is None
    assert t.size == 3 and t.peers == {"198.51.100.12", "198.51.100.14", "203.0.113.13"}


class FakeSock:
    def __init__(self, incoming: list[tuple[bytes, tuple[str, int]]] = ()) -> None:
        self.sent: list[tuple[bytes, tuple[str, int]]] = []
        self.incoming = list(incoming)

    def sendto(self, data, addr):
        self.sent.append((bytes(data), addr))

    def recvfrom_into(self, buf, nbytes=0, flags=0):
        if not self.incoming:
            raise BlockingIOError
        data, addr = self.incoming.pop(0)
        buf[:len(data)] = data
        return len(data), addr


def _pipe():
    r, w = os.pipe()
    os.set_blocking(r, False)
    return r, w


def test_forwarder_paths_and_control():
    tun_r, tun_w = _pipe()          # the "tun": packets the kernel would route into it
    ctl_r, ctl_w = _pipe()
    rep_r, rep_w = os.pipe()
    f = fw.Forwarder(tun_r, FakeSock(), ctl_r, rep_w)  # type: ignore[arg-type]
    try:
        os.write(ctl_w, json.dumps({"routes": [["10.244.2.0/24", "198.51.100.12"]], "port": 8285}).encode() + b"\n")
        assert f._control() is True
        assert json.loads(os.read(rep_r, 4096))["routes"] == 1

        pkt = packet("10.244.1.2", "10.244.2.2")
        os.write(tun_w, pkt)
        f._tun_to_udp()
        os.write(tun_w, packet("10.244.1.2", "10.244.77.2"))   # no lease for it: dropped
        f._tun_to_udp()
        assert f.sock.sent == [(pkt, ("198.51.100.12", 8285))]
        assert f.stats["tx"] == 1 and f.stats["no_route"] == 1

        # UDP → TUN: only datagrams from known peers reach the TUN.
        out_r, out_w = _pipe()
        g = fw.Forwarder(out_w, FakeSock([(pkt, ("198.51.100.12", 8285)), (pkt, ("198.51.100.99", 8285))]),
                         ctl_r, rep_w)  # type: ignore[arg-type]
        g.table = f.table
        g._udp_to_tun()
        assert os.read(out_r, 4096) == pkt
        assert g.stats["rx"] == 1 and g.stats["unknown_peer"] == 1
        os.close(out_r), os.close(out_w)

        os.write(ctl_w, b"{not json}\n")
        assert f._control() is True
        assert "error" in json.loads(os.read(rep_r, 4096))
        os.close(ctl_w)
        ctl_w = -1
        assert f._control() is False   # EOF: the parent wants the loop gone
    finally:
        for fd in (tun_r, tun_w, ctl_r, rep_r, rep_w, ctl_w):
            if fd >= 0:
                os.close(fd)
