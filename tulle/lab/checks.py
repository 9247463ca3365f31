"""Reachability between lab pods: ICMP with the real `ping`, TCP with sockets made inside the pods.

The TCP check opens the listening socket from a thread entered into the
destination pod's netns (a socket belongs to the netns it was created in, for
good) and connects from a thread inside the source pod: no helper programs in
the pods, and a real three-way handshake plus payload across the fabric.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import threading
import time
from dataclasses import dataclass

from tulle.kernel import netns
from tulle.lab import topology
from tulle.lab.state import LabState

TCP_PORT = 7007
ATTEMPT_TIMEOUT = 1.0


def ping(lab: str, pod: str, ip: str, count: int = 1, interval: float = 0.2,
         timeout: float = ATTEMPT_TIMEOUT, namespace: str = "default") -> subprocess.CompletedProcess:
    """`ping` from inside the pod (bounded by count and per-reply timeout)."""
    return ping_in(netns.path_of(topology.pod_netns(lab, pod, namespace)), ip, count, interval, timeout)


def ping_in(path: str, ip: str, count: int = 1, interval: float = 0.2,
            timeout: float = ATTEMPT_TIMEOUT) -> subprocess.CompletedProcess:
    """`ping` from inside the netns at `path`."""
    cmd = ["nsenter", f"--net={path}", "ping", "-n", "-q",
           "-c", str(count), "-i", str(interval), "-W", str(max(1, int(timeout))), ip]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=count * interval + timeout + 10,
                          check=False)


class EchoServer:
    """A TCP server in a pod's netns that answers each connection with what it received."""

    def __init__(self, path: str, pod: str, ip: str, port: int = TCP_PORT) -> None:
        self.sock = netns.run_in(path, _listen, ip, port)
        self.sock.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name=f"echo:{pod}", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            with conn:
                conn.settimeout(2.0)
                with contextlib.suppress(OSError):
                    data = conn.recv(256)
                    conn.sendall(b"echo " + data)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self.sock.close()


def _listen(ip: str, port: int) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((ip, port))
    s.listen(16)
    return s


def _exchange(ip: str, port: int, token: bytes, timeout: float) -> bytes:
    with socket.create_connection((ip, port), timeout=timeout) as s:
        s.sendall(token)
        return s.recv(256)


def tcp(path: str, pod: str, ip: str, port: int = TCP_PORT, timeout: float = ATTEMPT_TIMEOUT) -> bool:
    """Connect from `pod` (in the netns at `path`) to ip:port, send a token, expect it echoed."""
    token = f"hello from {pod}".encode()
    try:
        reply = netns.run_in(path, _exchange, ip, port, token, timeout)
    except OSError:
        return False
    return reply == b"echo " + token


@dataclass(frozen=True)
class PairResult:
    src: str
    dst: str
    dst_ip: str
    icmp: bool
    tcp: bool

    @property
    def ok(self) -> bool:
        return self.icmp and self.tcp


def until(deadline: float, attempt) -> bool:
    """Retry `attempt` until it succeeds or the deadline passes (routes may still converge)."""
    while True:
        if attempt():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)


def all_pairs(st: LabState, timeout: float = 5.0) -> list[PairResult]:
    """Every pod of the pod network to every other (named `namespace/name`), ICMP and TCP; each
    pair retried up to `timeout`. hostNetwork pods are left out: they are their node."""
    from tulle.lab.pods import netns_path

    on_network = {k: p for k, p in sorted(st.pods.items()) if not p.host_network}
    where = {k: netns_path(st, k) for k in on_network}
    servers = [EchoServer(where[k], k, p.ip) for k, p in on_network.items()]
    try:
        results = []
        for src in on_network:
            for dst, p in on_network.items():
                if dst == src:
                    continue
                deadline = time.monotonic() + timeout
                icmp = until(deadline, lambda: ping_in(where[src], p.ip).returncode == 0)
                ok_tcp = until(deadline, lambda: tcp(where[src], src, p.ip))
                results.append(PairResult(src, dst, p.ip, icmp, ok_tcp))
        return results
    finally:
        for s in servers:
            s.close()
