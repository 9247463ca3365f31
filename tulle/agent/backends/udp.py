"""The udp backend (Flannel's udp, "for debugging only"): pod packets for other
nodes are carried in plain UDP datagrams by a user-space loop.

  TUN `tulle-udp0`   MTU = underlay − 28 (outer IPv4 20 + UDP 8); address
                     <own subnet>.0/<cluster prefix> (10.244.1.0/16), so the kernel
                     routes the whole cluster CIDR into the TUN while the node's own,
                     longer /24 (the pod bridge) stays local — as Flannel does
  socket             UDP <PublicIP>:8285 (Backend.Port)
  route              the cluster CIDR into the TUN, ensured with routediff like every
                     backend's routes (the kernel's own route for the address fits it)
  loop               udp_forwarder.py: TUN → datagram to the owner of the
                     destination subnet; datagram from a known peer → TUN

The TUN is persistent, so its address and route outlive the loop (an agent
restart re-attaches). The loop is a child process, not a thread: see
udp_forwarder's docstring for why.

Namespaces: start() and sync() must run on a thread inside the node's netns
(the agent's threads are; tests use kernel.netns.run_in). The TUN descriptor and
the UDP socket are opened by that thread, so they belong to the node's netns,
and the loop process is forked from that thread, so it lives there too — it
keeps working after the (short-lived) run_in thread is gone. stop() may be
called from any thread.
"""

from __future__ import annotations

import errno
import ipaddress
import json
import os
import select
import socket
import subprocess
import sys
import threading
import time
from typing import Any, Callable, TypeVar

from tulle.agent import log
from tulle.agent.backends import routediff
from tulle.agent.backends.base import BackendInfo, NodeInfo, SkipWarnings
from tulle.cluster.backendconf import UdpConfig
from tulle.cluster.lease import Lease
from tulle.errors import KernelError, TulleError

T = TypeVar("T")

TYPE = UdpConfig.TYPE
DEVICE = "tulle-udp0"
OVERHEAD = 28
SOCKET_BUFFER = 4 << 20
REPLY_TIMEOUT = 5.0
STOP_TIMEOUT = 2.0
TXQUEUELEN = 2000   # the tun default (500) overflows while the loop catches up: TCP sees
                    # thousands of retransmits per second; 2000 absorbs the bursts


def routing_table(remotes: list[Lease], own: Lease) -> tuple[dict[ipaddress.IPv4Network, ipaddress.IPv4Address],
                                                          list[tuple[Lease, str]]]:
    """Remote subnet → PublicIP for the loop (pure), plus the leases skipped and why."""
    table: dict[ipaddress.IPv4Network, ipaddress.IPv4Address] = {}
    skipped: list[tuple[Lease, str]] = []
    for lease in sorted(remotes, key=lambda l: (l.subnet, l.public_ip)):
        if (lease.subnet, lease.public_ip) == (own.subnet, own.public_ip):
            continue   # our own lease, should the caller pass the whole list
        if lease.backend_type != TYPE:
            skipped.append((lease, f"backend type {lease.backend_type!r} is not {TYPE!r}"))
        elif lease.subnet.overlaps(own.subnet) or any(lease.subnet.overlaps(s) for s in table):
            skipped.append((lease, "subnet overlaps another lease"))
        else:
            table[lease.subnet] = lease.public_ip
    return table, skipped


class UdpBackend:
    type_name = TYPE
    watch_prefixes: tuple[str, ...] = ()

    def __init__(self, node: NodeInfo, config: UdpConfig) -> None:
        self.node = node
        self.port = config.port
        self.own: Lease | None = None
        self.table: dict[ipaddress.IPv4Network, ipaddress.IPv4Address] = {}
        self.stats: dict[str, int] = {}   # the loop's counters as of the last sync()
        self._proc: subprocess.Popen | None = None
        self._tun_fd = -1
        self._sock: socket.socket | None = None
        self._reply = b""
        self._lock = threading.Lock()
        self._skips = SkipWarnings("udp: lease skipped", "subnet")

    @property
    def mtu(self) -> int:
        return self.node.underlay_mtu - OVERHEAD

    @property
    def pid(self) -> int | None:
        """The loop's process id while it runs."""
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    # contract ---------------------------------------------------------------------

    def prepare(self) -> BackendInfo:
        return BackendInfo(backend_data={}, mtu=self.mtu)   # Flannel's udp publishes no data

    def start(self, own: Lease) -> None:
        with self._lock:
            self.own = own
            self._ensure_device()
            self._start_loop()

    def sync(self, remotes: list[Lease]) -> None:
        with self._lock:
            if self.own is None:
                raise TulleError("udp backend: sync() before start()")
            table, skipped = routing_table(remotes, self.own)
            self._skips.leases(skipped)
            if self._ensure_device():
                self._stop_loop()   # the old descriptor points at a device that is gone
            if self.pid is None:
                if self._proc is not None:
                    log.warning("udp forwarder died, restarting", code=self._proc.returncode)
                self._stop_loop()
                self._start_loop()
            self._send_table(table)

    def update(self, remotes: list[Lease]) -> None:
        """Nothing to diff: the loop's table is replaced whole, which is all sync() writes."""
        self.sync(remotes)

    def stop(self) -> None:
        with self._lock:
            self._stop_loop()

    def teardown(self) -> None:
        from tulle.kernel import links

        with self._lock:
            self._stop_loop()
            if links.delete(DEVICE):
                log.info("udp tun removed", dev=DEVICE)

    # device -------------------------------------------------------------------------

    def _ensure_device(self) -> bool:
        """The TUN with its MTU, address, up state and cluster route; True when it had
        to be (re)created."""
        from tulle.kernel import addrs, links, routes

        assert self.own is not None
        created = False
        link = links.get(DEVICE)
        if link is not None and link.kind != "tun":
            log.warning("udp device is not a tun, recreating", dev=DEVICE, kind=link.kind)
            links.delete(DEVICE)
            link = None
        if link is None:
            links.add_tun(DEVICE, mtu=self.mtu)
            created = True
            log.info("udp tun created", dev=DEVICE, mtu=self.mtu)
        elif link.mtu != self.mtu:
            links.set_mtu(DEVICE, self.mtu)
        if link is None or link.txqlen != TXQUEUELEN:
            links.set_txqlen(DEVICE, TXQUEUELEN)
        want = ipaddress.IPv4Interface(f"{self.own.subnet.network_address}/{self.node.network.prefixlen}")
        for addr in addrs.list_on(DEVICE, socket.AF_INET):
            if addr != want:
                addrs.delete(DEVICE, addr)
        addrs.ensure(DEVICE, want)
        if not links.require(DEVICE).up:
            links.set_up(DEVICE)
        cluster = routes.Route(dst=self.node.network, dev=DEVICE, scope=routes.SCOPES["link"], src=want.ip)
        held = [r for r in routes.list_routes(4) if routediff.route_key(r) == routediff.route_key(cluster)]
        routediff.write(routediff.diff([cluster], held), TYPE)   # only this route: never another's
        return created

    # the loop process -----------------------------------------------------------------

    def _open_socket(self) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            for opt, force in ((socket.SO_RCVBUF, 33), (socket.SO_SNDBUF, 32)):  # SO_*BUFFORCE
                try:
                    sock.setsockopt(socket.SOL_SOCKET, force, SOCKET_BUFFER)
                except OSError:
                    sock.setsockopt(socket.SOL_SOCKET, opt, SOCKET_BUFFER)
            sock.bind((str(self.node.public_ip), self.port))
        except OSError as exc:
            sock.close()
            raise KernelError(f"udp backend: cannot bind {self.node.public_ip}:{self.port}: {exc.strerror}",
                              errno=exc.errno or 0) from None
        return sock

    def _start_loop(self) -> None:
        """Open the TUN and the socket here (the node's netns) and hand both to a
        fresh loop process, forked from this thread so it lives in this netns too."""
        from tulle.kernel import tun

        self._tun_fd = _retry_busy(lambda: tun.attach(DEVICE))
        try:
            self._sock = _retry_busy(self._open_socket)
            fds = (self._tun_fd, self._sock.fileno())
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "tulle.agent.backends.udp_forwarder", *map(str, fds)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, pass_fds=fds, close_fds=True)
            self._reply = b""
            log.info("udp forwarder started", pid=self._proc.pid, dev=DEVICE,
                     listen=f"{self.node.public_ip}:{self.port}")
            self._send_table(self.table)   # also waits until the loop is up
        except BaseException:
            self._stop_loop()
            raise

    def _stop_loop(self) -> None:
        """End the loop (EOF on its stdin, then SIGKILL by pid) and close our copies
        of its descriptors. Bounded by STOP_TIMEOUT."""
        proc, self._proc = self._proc, None
        if proc is not None:
            for stream in (proc.stdin, proc.stdout):
                try:
                    stream.close()   # EOF: the loop's signal to return
                except OSError:
                    pass
            try:
                proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(STOP_TIMEOUT)
            log.info("udp forwarder stopped", pid=proc.pid, code=proc.returncode)
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self._tun_fd >= 0:
            os.close(self._tun_fd)
            self._tun_fd = -1

    def _send_table(self, table: dict[ipaddress.IPv4Network, ipaddress.IPv4Address]) -> None:
        """Hand the table to the loop and wait until it is in force."""
        assert self._proc is not None and self._proc.stdin is not None and self._proc.stdout is not None
        msg = {"routes": [[str(net), str(ip)] for net, ip in table.items()], "port": self.port}
        try:
            self._proc.stdin.write(json.dumps(msg).encode() + b"\n")
            self._proc.stdin.flush()
            reply = self._read_reply()
        except (OSError, ValueError) as exc:
            raise TulleError(f"udp forwarder (pid {self._proc.pid}) is not answering: {exc}") from None
        if "error" in reply:
            raise TulleError(f"udp forwarder refused its table: {reply['error']}")
        if self.table != table:
            log.info("udp table updated", routes={str(k): str(v) for k, v in table.items()})
        self.table = dict(table)
        self.stats = reply.get("stats", {})

    def _read_reply(self) -> dict[str, Any]:
        assert self._proc is not None and self._proc.stdout is not None
        fd = self._proc.stdout.fileno()
        deadline = time.monotonic() + REPLY_TIMEOUT
        while b"\n" not in self._reply:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise OSError(f"no reply within {REPLY_TIMEOUT} s")
            chunk = os.read(fd, 65536)
            if not chunk:
                raise OSError("the loop exited")
            self._reply += chunk
        line, self._reply = self._reply.split(b"\n", 1)
        return json.loads(line)


def _retry_busy(fn: Callable[[], T], wait: float = STOP_TIMEOUT) -> T:
    """fn(), retried while the TUN or port is still held (EBUSY/EADDRINUSE): a loop
    of the previous agent, killed with it, exits on EOF a moment later."""
    deadline = time.monotonic() + wait
    while True:
        try:
            return fn()
        except KernelError as exc:
            if exc.errno not in (errno.EBUSY, errno.EADDRINUSE) or time.monotonic() >= deadline:
                raise
            time.sleep(0.05)


def factory(node: NodeInfo, config: UdpConfig) -> UdpBackend:
    return UdpBackend(node, config)
