"""The udp backend's pure parts: config, the routing table, the forwarder's
per-packet paths driven through pipes and a fake socket, and its control socket
(a unix socket in a temp dir) with the agent's adoption checks (no root, no network)."""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import struct
import threading

import pytest

from tulle.agent.backends import base, udp, udp_forwarder as fw
from tulle.cluster.backendconf import UdpConfig, parse_udp
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
    def __init__(self, incoming: list[tuple[bytes, tuple[str, int]]] = (),
                 local: tuple[str, int] = ("198.51.100.11", 8285), fileno: int = -1) -> None:
        self.sent: list[tuple[bytes, tuple[str, int]]] = []
        self.incoming = list(incoming)
        self.local = local
        self._fileno = fileno

    def fileno(self) -> int:
        return self._fileno

    def getsockname(self):
        return self.local

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


def test_forwarder_paths_and_commands():
    tun_r, tun_w = _pipe()          # the "tun": packets the kernel would route into it
    f = fw.Forwarder(tun_r, FakeSock())  # type: ignore[arg-type]
    try:
        reply = f.command({"op": "table", "routes": [["10.244.2.0/24", "198.51.100.12"]], "port": 8285})
        assert reply["routes"] == 1 and reply["version"] == fw.PROTOCOL and reply["pid"] == os.getpid()
        assert reply["listen"] == ["198.51.100.11", 8285]

        pkt = packet("10.244.1.2", "10.244.2.2")
        os.write(tun_w, pkt)
        f._tun_to_udp()
        os.write(tun_w, packet("10.244.1.2", "10.244.77.2"))   # no lease for it: dropped
        f._tun_to_udp()
        assert f.sock.sent == [(pkt, ("198.51.100.12", 8285))]
        assert f.stats["tx"] == 1 and f.stats["no_route"] == 1
        assert f.command({"op": "status"})["stats"]["tx"] == 1   # status changes nothing
        assert f.table.size == 1

        # UDP → TUN: only datagrams from known peers reach the TUN.
        out_r, out_w = _pipe()
        g = fw.Forwarder(out_w, FakeSock([(pkt, ("198.51.100.12", 8285)), (pkt, ("198.51.100.99", 8285))]))  # type: ignore[arg-type]
        g.table = f.table
        g._udp_to_tun()
        assert os.read(out_r, 4096) == pkt
        assert g.stats["rx"] == 1 and g.stats["unknown_peer"] == 1
        os.close(out_r), os.close(out_w)

        with pytest.raises(ValueError, match="unknown op"):
            f.command({"op": "reboot"})
        with pytest.raises(KeyError):
            f.command({"op": "table", "routes": []})   # no port
        assert f.table.size == 1   # a refused table leaves the last one in force
    finally:
        for fd in (tun_r, tun_w):
            os.close(fd)


class Running:
    """A Forwarder's loop on a thread, its control socket at `path` (as the agent makes it)."""

    def __init__(self, path: str, local: tuple[str, int] = ("198.51.100.11", 8285)) -> None:
        self.idle = [os.pipe(), os.pipe()]        # stand in for the TUN and the UDP socket
        self.path = path
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(path)
        self.listener.listen(16)
        self.fwd = fw.Forwarder(self.idle[0][0], FakeSock(local=local, fileno=self.idle[1][0]),  # type: ignore[arg-type]
                                self.listener, path)
        self.code: int | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        self.code = self.fwd.run(check_interval=0.05)

    def join(self, timeout: float = 5.0) -> int | None:
        self.thread.join(timeout)
        return self.code

    def close(self) -> None:
        if os.path.exists(self.path):
            os.unlink(self.path)   # the loop's signal to return
        self.join()
        self.listener.close()
        for fd in (fd for pair in self.idle for fd in pair):
            os.close(fd)


@pytest.fixture
def running(tmp_path):
    made: list[Running] = []

    def start(**kw) -> Running:
        r = Running(str(tmp_path / "udp.ctl"), **kw)
        made.append(r)
        return r
    yield start
    for r in made:
        r.close()


def test_control_socket_requests_errors_and_stuck_clients(running, monkeypatch):
    r = running()
    assert fw.request(r.path, {"op": "status"}, 2.0)["routes"] == 0
    msg = {"op": "table", "routes": [["10.244.2.0/24", "198.51.100.12"], ["10.244.3.0/24", "203.0.113.13"]],
           "port": 8285}
    assert fw.request(r.path, msg, 2.0)["routes"] == 2
    assert r.fwd.table.peers == {"198.51.100.12", "203.0.113.13"}
    assert "bad request" in fw.request(r.path, {"op": "nope"}, 2.0)["error"]
    assert "bad request" in fw.request(r.path, [1, 2], 2.0)["error"]     # type: ignore[arg-type]

    # A client that connects and says nothing (or half a line) holds nobody up.
    stuck = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stuck.connect(r.path)
    stuck.sendall(b'{"op": "sta')
    assert fw.request(r.path, {"op": "status"}, 2.0)["routes"] == 2
    # Several requests on one connection are answered in order.
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as c:
        c.settimeout(2.0)
        c.connect(r.path)
        c.sendall(b'{"op": "status"}\n{"op": "x"}\n')
        data = b""
        while data.count(b"\n") < 2:
            data += c.recv(4096)
        first, second = (json.loads(line) for line in data.splitlines())
        assert first["routes"] == 2 and "error" in second
    # An endless line is cut off, not buffered without bound.
    monkeypatch.setattr(fw, "CONTROL_LIMIT", 1024)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as c:
        c.settimeout(2.0)
        c.connect(r.path)
        try:
            for _ in range(100):
                c.sendall(b"x" * 4096)
            closed = c.recv(10) == b""
        except (BrokenPipeError, ConnectionResetError):
            closed = True
        assert closed                  # by the forwarder, not a timeout here
    stuck.close()
    assert r.thread.is_alive()
    assert fw.request(r.path, {"op": "status"}, 2.0)["routes"] == 2


def test_loop_ends_when_its_control_path_goes_or_is_taken_over(running, tmp_path):
    r = running()
    os.unlink(r.path)                      # the state dir removed (a node gone, a lab down)
    assert r.join() == 0

    r = running()
    os.unlink(r.path)
    other = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    other.bind(r.path)                     # another forwarder's socket now at the path
    try:
        assert r.join() == 0
    finally:
        other.close()
    with pytest.raises(OSError):           # nothing answers there
        fw.request(r.path, {"op": "status"}, 0.5)


def backend(state_dir: str, port: int = 8285) -> udp.UdpBackend:
    node = base.NodeInfo(name="n1", public_ip=IP("198.51.100.11"), underlay_dev="eth0", underlay_mtu=1500,
                         network=NET("10.244.0.0/16"), state_dir=state_dir)
    return udp.UdpBackend(node, UdpConfig(port=port))


def test_adoption_checks_what_answers(running, tmp_path):
    """The agent adopts a forwarder only when the process answering is the one it was told
    of, speaks its protocol and serves its address and port."""
    running()
    me = os.getpid()                       # the forwarder's loop runs in this process
    assert udp.control_path(str(tmp_path)) == str(tmp_path / "udp.ctl")
    assert backend(str(tmp_path))._adoptable(me) is None
    assert "not 4242" in backend(str(tmp_path))._adoptable(4242)
    assert "listens on" in backend(str(tmp_path), port=9000)._adoptable(me)
    assert "not answering" in backend(str(tmp_path / "elsewhere"))._adoptable(me)


def test_adoption_refuses_another_protocol(running, tmp_path, monkeypatch):
    running()
    monkeypatch.setattr(fw, "PROTOCOL", fw.PROTOCOL + 1)   # the agent is newer than the forwarder
    real = fw.Forwarder.status

    def old_status(self):
        return {**real(self), "version": fw.PROTOCOL - 1}
    monkeypatch.setattr(fw.Forwarder, "status", old_status)
    assert "control protocol" in backend(str(tmp_path))._adoptable(os.getpid())


def test_pidfile_needs_our_marker_in_argv(tmp_path):
    b = backend(str(tmp_path))
    assert b._recorded_pid() is None                       # none written
    (tmp_path / udp.PIDFILE).write_text(f"{os.getpid()}\n")
    assert b._recorded_pid() is None                       # alive, but its argv lacks our path
    (tmp_path / udp.PIDFILE).write_text("garbage")
    assert b._recorded_pid() is None
