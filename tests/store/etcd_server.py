"""A throwaway etcd server inside a private network namespace (test flavour).

The server itself is `tulle.store.etcd_server.EtcdServer` (the lab uses the
same one); this wrapper gives it a netns of its own with only loopback up, so
nothing it does is visible from the root namespace, and a temp data dir.
Clients reach it with `EtcdStore(..., netns=path)`, whose sockets are opened
from a thread inside that namespace. `stop()` ends the process by pid and
removes the netns and data dir; it is safe to call after a failed start.
"""

from __future__ import annotations

import os
import shutil
import tempfile

from tulle.kernel import links, netns
from tulle.store import etcd_server
from tulle.store.etcd import EtcdStore

CLIENT_PORT = etcd_server.CLIENT_PORT
START_TIMEOUT = etcd_server.START_TIMEOUT


class EtcdServer:
    def __init__(self, name: str) -> None:
        self.name = name
        self.netns_path = ""
        self.data_dir = ""
        self.server: etcd_server.EtcdServer | None = None
        self.endpoint = ("127.0.0.1", CLIENT_PORT)
        self.version = ""

    @property
    def url(self) -> str:
        return f"etcd://{self.endpoint[0]}:{self.endpoint[1]}"

    def start(self) -> None:
        try:
            self.netns_path = netns.create(self.name)
            netns.run_in(self.netns_path, links.set_up, "lo")
            self.data_dir = tempfile.mkdtemp(prefix=f"{self.name}-")
            self.server = etcd_server.EtcdServer(self.netns_path, self.data_dir, host=self.endpoint[0],
                                                 member="tulle-test")
            self.server.start(START_TIMEOUT)
            self.version = self.server.version
        except BaseException:
            self.stop()
            raise

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
        return self.server.log_tail(n) if self.server else ""

    def store(self, **kw) -> EtcdStore:
        return EtcdStore([self.endpoint], netns=self.netns_path, **kw)

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None
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
