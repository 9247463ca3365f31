"""The udp backend's data plane: a loop that moves IP packets between a TUN and a
UDP socket (Flannel's udp "proxy").

  TUN → UDP   read one packet from the TUN, look its destination up in the table
              of remote subnets, send it whole as one datagram to PublicIP:port
  UDP → TUN   receive a datagram from a known peer, write it to the TUN

It runs as its own process (`python -m tulle.agent.backends.udp_forwarder TUNFD
SOCKFD`), started by udp.UdpBackend with both descriptors already open:

- a per-packet loop in the agent would hold the agent's GIL all the time it has
  traffic, starving the watch, reconcile and CNI-socket threads (and being starved
  by them); a process gets a CPU of its own;
- stop() ends it for certain, by pid, and a crash in the loop cannot take the
  agent down (sync() notices and restarts it);
- the descriptors were opened by a thread entered into the node's netns, so the
  TUN and the socket belong to that netns whatever the process's own netns is
  (it is the node's too: the process is forked from that thread).

Control: the parent writes one JSON line per table update on stdin
({"routes": [[subnet, public_ip], ...], "port": N}) and reads one JSON line back
({"routes": n, "stats": {...}}) once the table is in force. EOF on stdin is the
signal to exit. The loop polls the TUN, the socket and stdin together, so it
reacts to a stop within one poll round.

Per packet it avoids what it can: one preallocated buffer (readv / recvfrom_into,
no bytes objects), os.write on the raw fd, locals bound outside the loop, a
destination cache in front of the prefix lookup, and up to BATCH packets per
readiness event.
"""

from __future__ import annotations

import ipaddress
import json
import os
import select
import socket
import struct
import sys
from typing import Any, Iterable

BATCH = 64
BUFSIZE = 65536
CACHE_LIMIT = 4096
_DST = struct.Struct("!I")


class Table:
    """Remote subnets → (PublicIP, port), longest prefix first (pure)."""

    def __init__(self, routes: Iterable[tuple[str, str]], port: int) -> None:
        by_len: dict[int, dict[int, tuple[str, int]]] = {}
        self.peers: set[str] = set()
        for subnet, public_ip in routes:
            net = ipaddress.IPv4Network(subnet)
            ip = str(ipaddress.IPv4Address(public_ip))
            by_len.setdefault(net.prefixlen, {})[int(net.network_address)] = (ip, port)
            self.peers.add(ip)
        self.levels = [((0xFFFFFFFF << (32 - plen)) & 0xFFFFFFFF, nets)
                       for plen, nets in sorted(by_len.items(), reverse=True)]
        self.size = sum(len(nets) for nets in by_len.values())

    @classmethod
    def from_message(cls, msg: dict[str, Any]) -> "Table":
        return cls(((str(s), str(ip)) for s, ip in msg.get("routes", [])), int(msg["port"]))

    def lookup(self, dst: int) -> tuple[str, int] | None:
        for mask, nets in self.levels:
            peer = nets.get(dst & mask)
            if peer is not None:
                return peer
        return None


class Forwarder:
    def __init__(self, tun_fd: int, sock: socket.socket, ctl_in: int, ctl_out: int) -> None:
        self.tun_fd = tun_fd
        self.sock = sock
        self.ctl_in = ctl_in
        self.ctl_out = ctl_out
        self.table = Table([], 0)
        self.cache: dict[int, tuple[str, int] | None] = {}
        self.stats = {"tx": 0, "rx": 0, "no_route": 0, "unknown_peer": 0, "errors": 0}
        self.buf = bytearray(BUFSIZE)
        self.ctl_buf = b""

    # control --------------------------------------------------------------------

    def _control(self) -> bool:
        """Apply table updates; False on EOF (the parent wants us gone)."""
        chunk = os.read(self.ctl_in, 1 << 20)
        if not chunk:
            return False
        self.ctl_buf += chunk
        while b"\n" in self.ctl_buf:
            line, self.ctl_buf = self.ctl_buf.split(b"\n", 1)
            try:
                self.table = Table.from_message(json.loads(line))
                self.cache = {}
                reply: dict[str, Any] = {"routes": self.table.size, "stats": self.stats}
            except (ValueError, KeyError, TypeError) as exc:
                reply = {"error": f"bad table: {exc}"}
            os.write(self.ctl_out, json.dumps(reply).encode() + b"\n")
        return True

    # data -----------------------------------------------------------------------

    def _tun_to_udp(self) -> None:
        buf, mv, bufs, fd = self.buf, memoryview(self.buf), [self.buf], self.tun_fd
        readv, sendto, unpack_from = os.readv, self.sock.sendto, _DST.unpack_from
        cache, lookup, stats = self.cache, self.table.lookup, self.stats
        sent = 0
        for _ in range(BATCH):
            try:
                n = readv(fd, bufs)
            except BlockingIOError:
                break
            if n < 20 or buf[0] >> 4 != 4:
                continue   # not IPv4 (the TUN has no IPv6 route; stray frames are dropped)
            dst = unpack_from(buf, 16)[0]
            try:
                peer = cache[dst]
            except KeyError:
                if len(cache) >= CACHE_LIMIT:
                    cache.clear()
                peer = cache[dst] = lookup(dst)
            if peer is None:
                stats["no_route"] += 1
                continue
            try:
                sendto(mv[:n], peer)
                sent += 1
            except OSError:
                stats["errors"] += 1
        stats["tx"] += sent

    def _udp_to_tun(self) -> None:
        buf, mv, fd = self.buf, memoryview(self.buf), self.tun_fd
        recv, write, peers, stats = self.sock.recvfrom_into, os.write, self.table.peers, self.stats
        dontwait = socket.MSG_DONTWAIT
        got = 0
        for _ in range(BATCH):
            try:
                n, addr = recv(buf, 0, dontwait)
            except BlockingIOError:
                break
            if addr[0] not in peers:
                stats["unknown_peer"] += 1   # only nodes holding a lease may inject packets
                continue
            if n < 20 or buf[0] >> 4 != 4:
                stats["errors"] += 1
                continue
            try:
                write(fd, mv[:n])
                got += 1
            except OSError:
                stats["errors"] += 1
        stats["rx"] += got

    def run(self) -> int:
        """Forward until the control pipe closes (0) or the TUN goes away (3)."""
        poller = select.epoll()
        sock_fd = self.sock.fileno()
        for fd in (self.tun_fd, sock_fd, self.ctl_in):
            poller.register(fd, select.EPOLLIN)
        try:
            while True:
                for fd, events in poller.poll():
                    if fd == self.tun_fd:
                        if events & (select.EPOLLERR | select.EPOLLHUP):
                            return 3
                        try:
                            self._tun_to_udp()
                        except OSError:   # the device was deleted under us
                            return 3
                    elif fd == sock_fd:
                        self._udp_to_tun()
                    elif not self._control():
                        return 0
        finally:
            poller.close()


def main(argv: list[str]) -> int:
    tun_fd, sock_fd = int(argv[0]), int(argv[1])
    sock = socket.socket(fileno=sock_fd)
    os.set_blocking(tun_fd, False)
    sock.setblocking(True)   # a full send buffer pushes back instead of dropping
    try:
        code = Forwarder(tun_fd, sock, sys.stdin.fileno(), sys.stdout.fileno()).run()
    except KeyboardInterrupt:
        code = 0
    if code == 3:
        sys.stderr.write(json.dumps({"level": "warning", "msg": "udp forwarder: tun device gone"}) + "\n")
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
