"""A real etcd server (Debian's etcd-server) inside a network namespace.

Used by the lab (`--store etcd`: etcd in the fabric netns, on the underlay, so
the node agents reach it as they would reach a cluster's etcd) and by the store
tests (etcd on 127.0.0.1 of a private netns). The process runs detached from
its starter and is found again by pid; the data dir is its marker argument, so
`stop_pid` never signals a process that merely reused the pid.
"""

from __future__ import annotations

import os
import shutil
import time

from tulle import procs
from tulle.errors import TulleError
from tulle.store.base import StoreUnavailable
from tulle.store.etcd import EtcdStore

CLIENT_PORT = 2379
PEER_PORT = 2380
START_TIMEOUT = 20.0


class EtcdServer:
    """One single-member etcd cluster; `start()` returns once it answers."""

    def __init__(self, netns_path: str, data_dir: str, host: str = "127.0.0.1",
                 client_port: int = CLIENT_PORT, peer_port: int = PEER_PORT, member: str = "tulle") -> None:
        self.netns_path = netns_path
        self.data_dir = data_dir
        self.host = host
        self.client_port = client_port
        self.peer_port = peer_port
        self.member = member
        self.pid = 0
        self.version = ""

    @property
    def endpoint(self) -> tuple[str, int]:
        return (self.host, self.client_port)

    @property
    def url(self) -> str:
        return f"etcd://{self.host}:{self.client_port}"

    @property
    def log_path(self) -> str:
        return os.path.join(self.data_dir, "etcd.log")

    def command(self) -> list[str]:
        client = f"http://{self.host}:{self.client_port}"
        peer = f"http://{self.host}:{self.peer_port}"
        return ["etcd", "--name", self.member, "--data-dir", os.path.join(self.data_dir, "data"),
                "--listen-client-urls", client, "--advertise-client-urls", client,
                "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                "--initial-cluster", f"{self.member}={peer}", "--initial-cluster-state", "new",
                "--logger", "zap", "--log-level", "warn"]

    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Start etcd and wait (bounded) until it answers; on failure nothing is left running."""
        if not shutil.which("etcd"):
            raise StoreUnavailable("etcd is not installed (Debian package etcd-server)")
        os.makedirs(self.data_dir, exist_ok=True)
        # etcd reads ETCD_* variables as flags: keep the caller's out of it.
        env = {k: v for k, v in os.environ.items() if not k.startswith("ETCD")}
        self.pid = procs.spawn(self.command(), self.log_path, netns_path=self.netns_path, env=env)
        try:
            self._wait(timeout)
        except BaseException:
            self.stop()
            raise

    def _wait(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if not procs.alive(self.pid):
                raise StoreUnavailable(f"etcd exited at start:\n{self.log_tail()}")
            try:
                store = self.store(connect_timeout=1.0)
            except StoreUnavailable:
                if time.monotonic() > deadline:
                    raise StoreUnavailable(f"etcd did not answer within {timeout:.0f}s:\n{self.log_tail()}") from None
                time.sleep(0.1)
                continue
            self.version = store.server_version
            store.close()
            return

    def store(self, **kw) -> EtcdStore:
        """A client that connects from inside the server's netns."""
        return EtcdStore([self.endpoint], netns=self.netns_path, **kw)

    def log_tail(self, n: int = 20) -> str:
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""

    def stop(self) -> None:
        """End the process (by pid, TERM then KILL); the data dir stays for the caller to remove."""
        if self.pid:
            stop_pid(self.pid, self.data_dir)
            self.pid = 0


def marker(data_dir: str) -> str:
    """The argument that identifies the etcd of `data_dir` in a process list."""
    return os.path.join(data_dir, "data")


def stop_pid(pid: int, data_dir: str, timeout: float = 10.0) -> None:
    """Stop the etcd of `data_dir` started earlier (maybe by another process)."""
    try:
        procs.stop(pid, marker(data_dir), timeout=timeout)
    except TulleError as exc:
        raise TulleError(f"cannot stop etcd (pid {pid}): {exc.msg}") from None
