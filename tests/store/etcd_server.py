"""A throwaway etcd server inside a private network namespace.

etcd listens on 127.0.0.1 of its own netns (loopback up, nothing else), so
nothing it does is visible from the root namespace; the clients reach it with
`EtcdStore(..., netns=path)`, whose sockets are opened from a thread inside that
namespace. `stop()` ends the process by pid and removes the netns and data dir;
it is safe to call after a failed start.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time

from tulle.kernel import links, netns
from tulle.store import StoreUnavailable
from tulle.store.etcd import EtcdStore

CLIENT_PORT = 2379
PEER_PORT = 2380
START_TIMEOUT = 20.0


class EtcdServer:
    def __init__(self, name: str) -> None:
        self.name = name
        self.netns_path = ""
        self.data_dir = ""
        self.proc: subprocess.Popen | None = None
        self.log_path = ""
        self.endpoint = ("127.0.0.1", CLIENT_PORT)
        self.version = ""

    @property
    def url(self) -> str:
        return f"etcd://{self.endpoint[0]}:{self.endpoint[1]}"

    def start(self) -> None:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> None:
        self.netns_path = netns.create(self.name)
        netns.run_in(self.netns_path, links.set_up, "lo")
        self.data_dir = tempfile.mkdtemp(prefix=f"{self.name}-")
        self.log_path = os.path.join(self.data_dir, "etcd.log")
        client = f"http://127.0.0.1:{CLIENT_PORT}"
        peer = f"http://127.0.0.1:{PEER_PORT}"
        cmd = ["nsenter", f"--net={self.netns_path}", "etcd",
               "--name", "tulle-test", "--data-dir", os.path.join(self.data_dir, "data"),
               "--listen-client-urls", client, "--advertise-client-urls", client,
               "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
               "--initial-cluster", f"tulle-test={peer}", "--initial-cluster-state", "new",
               "--logger", "zap", "--log-level", "warn"]
        env = {k: v for k, v in os.environ.items() if not k.startswith("ETCD")}
        with open(self.log_path, "wb") as log:
            # nsenter execs etcd in place (no --fork), so this pid is etcd's.
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, env=env)
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"etcd exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                store = EtcdStore([self.endpoint], netns=self.netns_path, connect_timeout=1.0)
            except StoreUnavailable:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"etcd did not answer within {START_TIMEOUT}s:\n{self.log_tail()}")
                time.sleep(0.1)
                continue
            self.version = store.server_version
            store.close()
            return

    @staticmethod
    def remove_stale(prefix: str = "tulle-etcd-") -> None:
        """Remove what a test session killed outright left: netns and data dir of a dead pid."""
        for name in netns.list_names(prefix):
            run = name[len(prefix):]
            if run.isdigit() and not _alive(int(run)):
                netns.remove(name)
        tmp = tempfile.gettempdir()
        for entry in os.listdir(tmp):
            run = entry[len(prefix):].split("-", 1)[0]
            if entry.startswith(prefix) and run.isdigit() and not _alive(int(run)):
                shutil.rmtree(os.path.join(tmp, entry), ignore_errors=True)

    def log_tail(self, n: int = 20) -> str:
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""

    def store(self, **kw) -> EtcdStore:
        return EtcdStore([self.endpoint], netns=self.netns_path, **kw)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.proc = None
        if self.netns_path:
            netns.remove(self.name)
            self.netns_path = ""
        if self.data_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)
            self.data_dir = ""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
