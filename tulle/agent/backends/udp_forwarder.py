"""The udp backend's data plane: a loop that moves IP packets between a TUN and a
UDP socket (Flannel's udp "proxy").

  TUN → UDP   read one packet from the TUN, look its destination up in the table
              of remote subnets, send it whole as one datagram to PublicIP:port
  UDP → TUN   receive a datagram from a known peer, write it to the TUN

It runs as its own process (`python -m tulle.agent.backends.udp_forwarder
--control PATH TUNFD SOCKFD CTLFD`), started by udp.UdpBackend with the three
descriptors already open (TUN, UDP socket, listening control socket):

- a per-packet loop in the agent would hold the agent's GIL all the time it has
  traffic, starving the watch, reconcile and CNI-socket threads (and being starved
  by them); a process gets a CPU of its own;
- it outlives its agent (own session, nothing shared with the agent but the
  control socket's path), so an agent restart, a crash as much as a clean stop,
  loses no packet: the forwarder keeps forwarding with its last table and the
  next agent adopts it, as it adopts BIRD;
- the descriptors were opened by a thread entered into the node's netns, so the
  TUN and the socket belong to that netns whatever the process's own netns is
  (it is the node's too: the process is forked from that thread).

Control: a unix stream socket at PATH (in the agent's state dir; the path is also
the marker in argv by which the agent and `tulle lab down` recognise this process).
One JSON line per request, one JSON line back:
  {"op": "status"}                                   → the status below
  {"op": "table", "routes": [[subnet, ip], ...], "port": N}
                                                     → the table is in force, status
  status: {"version", "pid", "listen": [ip, port], "routes": n, "stats": {...}}
Connections are served in the same poll loop as the packets, never blocking it.
The forwarder exits when its TUN goes away (code 3) or when PATH no longer names
its socket (code 0: the state dir was removed or another forwarder took over), so
one left behind by a node that is gone does not pin its netns for long.

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
import time
from typing import Any, Callable, Iterable

PROTOCOL = 1             # bumped when the control messages change: an agent replaces, not adopts
BATCH = 64
BUFSIZE = 65536
CACHE_LIMIT = 4096
CONTROL_LIMIT = 16 << 20  # bytes of one request (a table of ~300,000 subnets)
CHECK_INTERVAL = 1.0      # seconds between checks that PATH still names our socket
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


class Control:
    """The server side of the control socket: accepted connections, each read as JSON
    lines answered one by one. Non-blocking throughout, so a slow or stuck client
    costs the data path nothing."""

    def __init__(self, listener: socket.socket, handle: Callable[[dict[str, Any]], dict[str, Any]],
                 poller: select.epoll) -> None:
        listener.setblocking(False)
        self.listener = listener
        self.handle = handle
        self.poller = poller
        self.conns: dict[int, tuple[socket.socket, bytearray]] = {}
        poller.register(listener.fileno(), select.EPOLLIN)

    def owns(self, fd: int) -> bool:
        return fd == self.listener.fileno() or fd in self.conns

    def ready(self, fd: int) -> None:
        if fd == self.listener.fileno():
            self._accept()
            return
        conn, buf = self.conns[fd]
        try:
            chunk = conn.recv(1 << 20)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if not chunk:
            self._close(fd)
            return
        buf += chunk
        while (end := buf.find(b"\n")) >= 0:
            line = bytes(buf[:end])
            del buf[:end + 1]
            try:
                conn.sendall(self.answer(line))   # a reply is small: it fits the socket buffer
            except OSError:
                self._close(fd)
                return
        if len(buf) > CONTROL_LIMIT:
            self._close(fd)

    def answer(self, line: bytes) -> bytes:
        """One request line → one reply line (errors are replies, never exceptions)."""
        try:
            msg = json.loads(line)
            if not isinstance(msg, dict):
                raise ValueError("a request is a JSON object")
            reply = self.handle(msg)
        except (ValueError, KeyError, TypeError) as exc:
            reply = {"error": f"bad request: {exc}"}
        return json.dumps(reply).encode() + b"\n"

    def close(self) -> None:
        for fd in list(self.conns):
            self._close(fd)

    def _accept(self) -> None:
        try:
            conn, _ = self.listener.accept()
        except OSError:   # gone before we got to it, or out of descriptors: the client retries
            return
        conn.setblocking(False)
        self.conns[conn.fileno()] = (conn, bytearray())
        self.poller.register(conn.fileno(), select.EPOLLIN)

    def _close(self, fd: int) -> None:
        conn, _ = self.conns.pop(fd)
        self.poller.unregister(fd)
        conn.close()


class Forwarder:
    def __init__(self, tun_fd: int, sock: socket.socket, control: socket.socket | None = None,
                 path: str = "") -> None:
        self.tun_fd = tun_fd
        self.sock = sock
        self.control = control     # the listening control socket (None: no control, tests)
        self.path = path           # where it is bound; "" skips the is-it-still-ours check
        self.table = Table([], 0)
        self.cache: dict[int, tuple[str, int] | None] = {}
        self.stats = {"tx": 0, "rx": 0, "no_route": 0, "unknown_peer": 0, "errors": 0}
        self.buf = bytearray(BUFSIZE)
        self._identity = _identity(path) if path else None

    # control --------------------------------------------------------------------

    def command(self, msg: dict[str, Any]) -> dict[str, Any]:
        """Apply one control request; the reply is the status after it."""
        op = msg.get("op")
        if op == "table":
            self.table = Table.from_message(msg)
            self.cache = {}
        elif op != "status":
            raise ValueError(f"unknown op {op!r}")
        return self.status()

    def status(self) -> dict[str, Any]:
        host, port = self.sock.getsockname()[:2]
        return {"version": PROTOCOL, "pid": os.getpid(), "listen": [host, port],
                "routes": self.table.size, "stats": dict(self.stats)}

    def still_ours(self) -> bool:
        """The control path still names the socket we were given (not removed, not replaced)."""
        return self._identity is None or _identity(self.path) == self._identity

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

    def run(self, check_interval: float = CHECK_INTERVAL) -> int:
        """Forward until the control path is no longer ours (0) or the TUN goes away (3)."""
        poller = select.epoll()
        sock_fd = self.sock.fileno()
        for fd in (self.tun_fd, sock_fd):
            poller.register(fd, select.EPOLLIN)
        control = Control(self.control, self.command, poller) if self.control is not None else None
        timeout = check_interval if self._identity is not None else -1
        next_check = time.monotonic() + check_interval
        try:
            while True:
                for fd, events in poller.poll(timeout):
                    if fd == self.tun_fd:
                        if events & (select.EPOLLERR | select.EPOLLHUP):
                            return 3
                        try:
                            self._tun_to_udp()
                        except OSError:   # the device was deleted under us
                            return 3
                    elif fd == sock_fd:
                        self._udp_to_tun()
                    elif control is not None and control.owns(fd):
                        control.ready(fd)
                if timeout >= 0 and (now := time.monotonic()) >= next_check:
                    if not self.still_ours():
                        return 0
                    next_check = now + check_interval
        finally:
            if control is not None:
                control.close()
            poller.close()


def _identity(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def request(path: str, msg: dict[str, Any], timeout: float) -> dict[str, Any]:
    """The client side (the agent): one request on the control socket at `path`, its
    reply. OSError when nothing answers within `timeout`, ValueError on a bad reply."""
    deadline = time.monotonic() + timeout
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(path)
        s.sendall(json.dumps(msg).encode() + b"\n")
        buf = b""
        while b"\n" not in buf:
            s.settimeout(max(deadline - time.monotonic(), 0.001))
            chunk = s.recv(65536)
            if not chunk:
                raise ConnectionResetError("the forwarder closed the connection without a reply")
            buf += chunk
    reply = json.loads(buf.split(b"\n", 1)[0])
    if not isinstance(reply, dict):
        raise ValueError("a reply is a JSON object")
    return reply


def _log(level: str, msg: str, **fields: Any) -> None:
    sys.stderr.write(json.dumps({"level": level, "msg": msg, "pid": os.getpid(), **fields}) + "\n")
    sys.stderr.flush()


def main(argv: list[str]) -> int:
    if len(argv) != 5 or argv[0] != "--control":
        sys.stderr.write("usage: python -m tulle.agent.backends.udp_forwarder --control PATH TUNFD SOCKFD CTLFD\n")
        return 2
    path = argv[1]
    tun_fd, sock_fd, ctl_fd = map(int, argv[2:])
    sock = socket.socket(fileno=sock_fd)
    control = socket.socket(fileno=ctl_fd)
    os.set_blocking(tun_fd, False)
    sock.setblocking(True)   # a full send buffer pushes back instead of dropping
    os.chdir("/")            # a long-lived process pins no directory of whoever started it
    try:
        code = Forwarder(tun_fd, sock, control, path).run()
    except KeyboardInterrupt:
        _log("info", "udp forwarder: interrupted, exiting")
        return 0
    if code == 3:
        _log("warning", "udp forwarder: tun device gone, exiting")
    else:
        _log("info", "udp forwarder: control socket removed or replaced, exiting", control=path)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
