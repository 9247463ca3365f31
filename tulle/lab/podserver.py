"""The process of one lab pod container: it answers every TCP connection and every UDP
datagram on its ports with who it is (`default/web-1 (container web)`), so a probe or
a test sees which backend answered.

Usage (tulle.lab.containers starts it; nobody types this):

    python -I -S podserver.py LOG IDENTITY tcp:FD|udp:FD ...

It is run by file path with only the standard library (no `tulle` import, no site
packages): a pod container costs a few milliseconds to start and a few MB. Its
sockets are bound and listening before it starts (the starter binds them in the
pod's netns and hands the descriptors over), so a port conflict is the starter's
error and the pod is ready the moment this process exists. LOG, the file its
output goes to, lies under the lab's state dir: `lab down` finds the process by it,
and `procs.stop` checks it before signalling.
"""

from __future__ import annotations

import selectors
import socket
import struct
import sys
import time

IP_PKTINFO = 8                     # <linux/in.h>; not exported by Python's socket module
PKTINFO = struct.Struct("=I4s4s")  # struct in_pktinfo: ifindex, spec_dst, addr
LINGER = 5.0                       # seconds a TCP peer may keep talking after the reply
MAX_OPEN = 256                     # open TCP connections kept at most (oldest closed first)


def _listeners(specs: list[str]) -> list[tuple[str, socket.socket]]:
    out = []
    for spec in specs:
        proto, _, fd = spec.partition(":")
        if proto not in ("tcp", "udp") or not fd.isdigit():
            raise SystemExit(f"podserver: bad listener {spec!r} (tcp:FD or udp:FD)")
        sock = socket.socket(fileno=int(fd))
        sock.setblocking(False)
        if proto == "udp":  # learn each datagram's destination, to answer from that address
            sock.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
        out.append((proto, sock))
    return out


def _answer_udp(sock: socket.socket, reply: bytes) -> None:
    """Reply from the address the datagram was sent to: a socket bound to 0.0.0.0 would
    otherwise pick the source by route (e.g. a node's bridge address for a hostNetwork
    server), and the client would drop the answer."""
    try:
        _, anc, _, peer = sock.recvmsg(65535, socket.CMSG_SPACE(PKTINFO.size))
    except OSError:        # nothing queued (another wakeup took it) or an ICMP error
        return
    cmsg = []
    for level, kind, data in anc:
        if level == socket.IPPROTO_IP and kind == IP_PKTINFO and len(data) >= PKTINFO.size:
            dst = PKTINFO.unpack_from(data)[2]
            cmsg = [(socket.IPPROTO_IP, IP_PKTINFO, PKTINFO.pack(0, dst, b"\0" * 4))]
    try:
        sock.sendmsg([reply], cmsg, 0, peer)
    except OSError:
        try:                       # e.g. sent to a broadcast address: answer from the route's source
            sock.sendto(reply, peer)
        except OSError:
            pass


def serve(identity: str, listeners: list[tuple[str, socket.socket]]) -> None:
    reply = (identity + "\n").encode()
    sel = selectors.DefaultSelector()
    for proto, sock in listeners:
        sel.register(sock, selectors.EVENT_READ, proto)
    open_conns: dict[socket.socket, float] = {}   # answered TCP peers -> when to give up on them

    def close(conn: socket.socket) -> None:
        if open_conns.pop(conn, None) is None:      # closed already (evicted earlier in this round)
            return
        sel.unregister(conn)
        conn.close()

    while True:
        for key, _ in sel.select(timeout=1.0):
            sock, role = key.fileobj, key.data
            if role == "udp":
                _answer_udp(sock, reply)
            elif role == "tcp":
                try:
                    conn, _ = sock.accept()
                except OSError:
                    continue
                conn.setblocking(False)
                try:
                    conn.send(reply)
                    conn.shutdown(socket.SHUT_WR)
                except OSError:
                    conn.close()
                    continue
                # Read until the peer closes: closing with unread input would reset the
                # connection, and a client that sent a request first could lose the reply.
                if len(open_conns) >= MAX_OPEN:
                    close(min(open_conns, key=open_conns.__getitem__))
                open_conns[conn] = time.monotonic() + LINGER
                sel.register(conn, selectors.EVENT_READ, "conn")
            else:
                try:
                    more = sock.recv(4096)
                except OSError:
                    more = b""
                if not more:
                    close(sock)
        now = time.monotonic()
        for conn in [c for c, until in open_conns.items() if until < now]:
            close(conn)


def main(argv: list[str]) -> int:
    if len(argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    serve(argv[2], _listeners(argv[3:]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
