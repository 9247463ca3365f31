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

The TUN is persistent, so its address and route outlive the loop. The loop is a
process of its own (see udp_forwarder's docstring for why) that outlives the
agent, so a restart loses no packet — the way BIRD outlives a killed bgp agent.
Its files are in the agent's state dir:
  udp.ctl               control socket (the agent creates it and hands it over);
                        its path in the forwarder's argv is the marker by which the
                        agent (and `tulle lab down`) recognise the pid as ours
  udp-forwarder.pid     the forwarder's pid
  udp-forwarder.log     its output
start() adopts a forwarder a previous agent left when its pidfile, its argv and
its own answer on the control socket agree and it serves our address and port;
otherwise it ends whatever forwarder of this state dir runs and starts one. Until
the first sync() hands over the current table, an adopted forwarder keeps the last
one it had. stop() leaves the forwarder running; teardown() (the node leaves) ends
it and removes the TUN.

Namespaces: start() and sync() must run on a thread inside the node's netns
(the agent's threads are; tests use kernel.netns.run_in). The TUN descriptor and
the UDP socket are opened by that thread, so they belong to the node's netns,
and the loop process is forked from that thread, so it lives there too — it
keeps working after the (short-lived) run_in thread is gone. stop() and
teardown()'s end of the loop may be called from any thread.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import os
import socket
import sys
import threading
import time
from typing import Any, Callable, TypeVar

from tulle import procs
from tulle.agent import log
from tulle.agent.backends import routediff
from tulle.agent.backends import udp_forwarder as fw
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
CONTROL = "udp.ctl"
PIDFILE = "udp-forwarder.pid"
LOGFILE = "udp-forwarder.log"
FORWARDER = "tulle.agent.backends.udp_forwarder"


class ForwarderGone(TulleError):
    """Nothing answers on the forwarder's control socket (dead, hung, or never there)."""


def control_path(state_dir: str) -> str:
    """The forwarder's control socket in an agent's state dir (also its argv marker)."""
    return os.path.join(state_dir, CONTROL)


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
        self.ctl = control_path(node.state_dir)
        self.pidfile = os.path.join(node.state_dir, PIDFILE)
        self.logfile = os.path.join(node.state_dir, LOGFILE)
        self._pid: int | None = None      # the forwarder we started or adopted
        self._lock = threading.Lock()
        self._skips = SkipWarnings("udp: lease skipped", "subnet")

    @property
    def mtu(self) -> int:
        return self.node.underlay_mtu - OVERHEAD

    @property
    def pid(self) -> int | None:
        """The forwarder's process id while it runs (checked by argv: a pid can be reused)."""
        pid = self._pid
        return pid if pid is not None and procs.alive(pid) and procs.carries(pid, self.ctl) else None

    # contract ---------------------------------------------------------------------

    def prepare(self) -> BackendInfo:
        return BackendInfo(backend_data={}, mtu=self.mtu)   # Flannel's udp publishes no data

    def start(self, own: Lease) -> None:
        """The TUN, and the forwarder: adopted when a previous agent left one, else started."""
        with self._lock:
            self.own = own
            if self._ensure_device():
                self._end_loop()   # one still running is attached to a device that is gone
            self._ensure_loop()

    def sync(self, remotes: list[Lease]) -> None:
        with self._lock:
            if self.own is None:
                raise TulleError("udp backend: sync() before start()")
            table, skipped = routing_table(remotes, self.own)
            self._skips.leases(skipped)
            if self._ensure_device():
                self._end_loop()   # the old descriptor points at a device that is gone
            if self.pid is None:
                if self._pid is not None:
                    log.warning("udp forwarder died, restarting", pid=self._pid)
                self._ensure_loop()
            try:
                self._send_table(table)
            except ForwarderGone as exc:   # alive but not answering: a new one serves
                log.warning("udp forwarder not answering, replacing it", pid=self._pid, error=exc.msg)
                self._end_loop()
                self._ensure_loop()
                self._send_table(table)

    def update(self, remotes: list[Lease]) -> None:
        """Nothing to diff: the loop's table is replaced whole, which is all sync() writes."""
        self.sync(remotes)

    def daemons_down(self) -> list[str]:
        """The forwarder we started or adopted is gone (sync starts a new one)."""
        return ["udp forwarder"] if self._pid is not None and self.pid is None else []

    def stop(self) -> None:
        """Agent shutdown: the forwarder keeps forwarding for the next agent to adopt."""
        with self._lock:
            if self.pid is not None:
                log.info("udp forwarder left running", pid=self._pid, control=self.ctl)
            self._pid = None

    def teardown(self) -> None:
        """The node leaves: the forwarder ends, its files and the TUN go."""
        from tulle.kernel import links

        with self._lock:
            self._end_loop()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.ctl)
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

    def _listen_control(self) -> socket.socket:
        """The control socket, listening before the forwarder exists: a request made
        while it starts waits in the backlog instead of being refused."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.ctl)   # a dead forwarder's (its successor would exit on seeing ours)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(self.ctl)
            os.chmod(self.ctl, 0o600)   # before listen(): nobody else can connect in between
            sock.listen(16)
        except OSError as exc:
            sock.close()
            raise KernelError(f"udp backend: cannot listen on {self.ctl}: {exc.strerror or exc}",
                              errno=exc.errno or 0) from None
        return sock

    def _recorded_pid(self) -> int | None:
        """The pidfile's pid when that process runs and carries our control path."""
        try:
            with open(self.pidfile) as f:
                pid = int(f.read().strip() or 0)
        except (OSError, ValueError):
            return None
        return pid if pid > 0 and procs.alive(pid) and procs.carries(pid, self.ctl) else None

    def _adoptable(self, pid: int) -> str | None:
        """Why the running forwarder `pid` cannot be ours, or None when it can."""
        try:
            reply = self._request({"op": "status"})
        except TulleError as exc:
            return exc.msg
        if reply.get("version") != fw.PROTOCOL:
            return f"control protocol {reply.get('version')!r}, not {fw.PROTOCOL}"
        if reply.get("pid") != pid:
            return f"pid {reply.get('pid')!r} answers on {self.ctl}, not {pid}"
        listen = [str(self.node.public_ip), self.port]
        if reply.get("listen") != listen:
            return f"it listens on {reply.get('listen')!r}, not {listen}"
        self.stats = reply.get("stats", {})
        return None

    def _ensure_loop(self) -> None:
        """Adopt the forwarder a previous agent left, else end any left and start one."""
        pid = self._recorded_pid()
        if pid is not None:
            self._pid = pid
            why = self._adoptable(pid)
            if why is None:
                log.info("udp forwarder already running; adopted", pid=pid)
                return
            log.warning("udp forwarder left by a previous agent is replaced", pid=pid, reason=why)
        self._end_loop()
        self._start_loop()

    def _start_loop(self) -> None:
        """Open the TUN, the UDP socket (both here: the node's netns) and the control
        socket, hand all three to a fresh forwarder forked from this thread (so it lives
        in this netns too), and wait until it answers."""
        from tulle.kernel import tun

        os.makedirs(self.node.state_dir, exist_ok=True)
        with contextlib.ExitStack() as ours:   # our copies, closed once the forwarder has them
            tun_fd = _retry_busy(lambda: tun.attach(DEVICE))
            ours.callback(os.close, tun_fd)
            sock = _retry_busy(self._open_socket)
            ours.callback(sock.close)
            ctl = self._listen_control()
            ours.callback(ctl.close)
            fds = (tun_fd, sock.fileno(), ctl.fileno())
            self._pid = procs.spawn([sys.executable, "-m", FORWARDER, "--control", self.ctl, *map(str, fds)],
                                    self.logfile, pass_fds=fds)
        _write_atomic(self.pidfile, f"{self._pid}\n")
        log.info("udp forwarder started", pid=self._pid, dev=DEVICE, listen=f"{self.node.public_ip}:{self.port}",
                 control=self.ctl)
        try:
            self._send_table(self.table)   # also waits until the loop is up
        except BaseException:
            self._end_loop()
            raise

    def _end_loop(self) -> None:
        """End every forwarder of this state dir — ours, one recorded in the pidfile, one
        a killed agent started without recording it — by pid after checking its argv."""
        pids = {p for p in (self.pid, self._recorded_pid()) if p is not None}
        pids.update(procs.find(lambda args: FORWARDER in args and self.ctl in args))
        for pid in sorted(pids):
            procs.stop(pid, self.ctl, timeout=STOP_TIMEOUT)
            log.info("udp forwarder stopped", pid=pid)
        self._pid = None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.pidfile)

    def _request(self, msg: dict[str, Any]) -> dict[str, Any]:
        try:
            reply = fw.request(self.ctl, msg, REPLY_TIMEOUT)
        except (OSError, ValueError) as exc:
            raise ForwarderGone(f"udp forwarder (pid {self._pid}) is not answering on {self.ctl}: "
                                f"{exc or type(exc).__name__}") from None
        if "error" in reply:
            raise TulleError(f"udp forwarder refused {msg.get('op')!r}: {reply['error']}")
        return reply

    def _send_table(self, table: dict[ipaddress.IPv4Network, ipaddress.IPv4Address]) -> None:
        """Hand the table to the forwarder and wait until it is in force."""
        reply = self._request({"op": "table", "routes": [[str(net), str(ip)] for net, ip in table.items()],
                               "port": self.port})
        if self.table != table:
            log.info("udp table updated", routes={str(k): str(v) for k, v in table.items()})
        self.table = dict(table)
        self.stats = reply.get("stats", {})


def _retry_busy(fn: Callable[[], T], wait: float = STOP_TIMEOUT) -> T:
    """fn(), retried while the TUN or port is still held (EBUSY/EADDRINUSE): a forwarder
    just ended may still be releasing its descriptors."""
    deadline = time.monotonic() + wait
    while True:
        try:
            return fn()
        except KernelError as exc:
            if exc.errno not in (errno.EBUSY, errno.EADDRINUSE) or time.monotonic() >= deadline:
                raise
            time.sleep(0.05)


def _write_atomic(path: str, text: str) -> None:
    """Whole or not at all: a reader never sees a half-written pid."""
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def factory(node: NodeInfo, config: UdpConfig) -> UdpBackend:
    return UdpBackend(node, config)
