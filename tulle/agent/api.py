"""The agent's CNI socket: plugin executables hand their calls to the agent.

The agent answers a call by running `tulle.cni.skel.handle` — the same function
the executable would run standalone — so both modes give identical results.
Host-side work must happen where the caller runs, not where the agent runs: the
server learns the caller's pid from SO_PEERCRED, opens /proc/<pid>/ns/net at
once (the caller is blocked waiting for the reply, so its namespace is alive;
the open fd keeps it so until the request is done). A caller in the agent's own
namespace (the usual case: runtime and agent on one host) is answered on the
worker thread itself; any other on a thread entered into the caller's namespace
(`kernel.netns.run_in`). Workers are kept for a while after a request, with
their netlink socket, so a burst of calls does not pay a thread and a socket
each; an idle server has no thread awake.

Wire format: see tulle.cni.forward (one request per connection, netstrings
each way, each side ended by a shutdown). Only root may use the socket: the
file is 0600 in a 0700 directory, and a peer whose uid is not 0 gets a CNI
error with code 5 (I/O failure, "permission denied") instead of service — the
executable prints it as is.
"""

from __future__ import annotations

import logging
import os
import queue
import socket
import stat
import struct
import threading
import time
from typing import Callable, Mapping

from tulle.cni import forward
from tulle.errors import TulleError

log = logging.getLogger("tulle.agent.api")

DEFAULT_SOCKET = forward.DEFAULT_SOCKET
PERMISSION_DENIED = 5      # the spec's I/O failure: the closest code to EACCES
NOT_AVAILABLE = 50         # the spec's "plugin not available"
INTERNAL = 999
WORKER_IDLE = 60.0         # seconds a worker waits for the next call before it ends

Observe = Callable[[str, str, float, int], None]
Handler = Callable[[str, Mapping[str, str], bytes], "tuple[bytes, int]"]


def run_plugin(plugin_type: str, environ: Mapping[str, str], stdin: bytes) -> tuple[bytes, int]:
    """What an executable of `plugin_type` would print and exit with (skel.handle)."""
    from tulle.cni import plugins, skel

    try:
        plugin = plugins.load(plugin_type)
    except KeyError:
        return forward.error_output(NOT_AVAILABLE, f"the tulle agent has no plugin of type {plugin_type!r}",
                                    stdin), 1
    return skel.handle(plugin, environ, stdin)


def peer_credentials(conn: socket.socket) -> tuple[int, int, int]:
    """(pid, uid, gid) of the process at the other end, as the kernel saw it at connect()."""
    raw = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, gid = struct.unpack("3i", raw)
    return pid, uid, gid


class CniServer:
    """Serves CNI calls on a unix socket, each in its caller's network namespace.

    `observe(plugin_type, command, seconds, exit_code)` is called once per
    answered request (the agent feeds its latency histogram from it).
    `max_requests` bounds the concurrent calls; beyond it callers wait in the
    listen backlog. `handler` is the function that answers a call (default:
    run_plugin).
    """

    def __init__(self, socket_path: str = DEFAULT_SOCKET, observe: Observe | None = None, *,
                 max_requests: int = 16, read_timeout: float = 10.0, drain_timeout: float = 30.0,
                 handler: Handler = run_plugin) -> None:
        self.socket_path = socket_path
        self.observe = observe
        self.read_timeout = read_timeout
        self.drain_timeout = drain_timeout
        self.handler = handler
        self._slots = threading.BoundedSemaphore(max_requests)
        self._stop = threading.Event()
        self._listener: socket.socket | None = None
        self._inode: tuple[int, int] | None = None
        self._acceptor: threading.Thread | None = None
        self._workers: set[threading.Thread] = set()
        self._busy: set[threading.Thread] = set()
        self._idle = 0
        self._queue: queue.SimpleQueue[socket.socket | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._own_netns: tuple[int, int] | None = None

    # --- lifecycle -------------------------------------------------------------

    def start(self) -> None:
        """Bind the socket (0600) and serve in background threads."""
        if self._listener is not None:
            raise TulleError("CniServer already started")
        self._listener = self._bind()
        st = os.stat("/proc/thread-self/ns/net")  # workers start from here, so they live in this netns
        self._own_netns = (st.st_dev, st.st_ino)
        self._acceptor = threading.Thread(target=self._accept_loop, name="cni-accept", daemon=True)
        self._acceptor.start()
        log.info("serving CNI requests on %s", self.socket_path)

    def close(self) -> None:
        """Stop accepting, let in-flight calls finish (bounded), remove the socket file."""
        self._stop.set()
        if self._listener is not None:
            try:  # wakes the acceptor blocked in accept(): no periodic wake-ups while idle
                self._listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._acceptor is not None:
            self._acceptor.join()
            self._acceptor = None
        deadline = time.monotonic() + self.drain_timeout
        with self._lock:
            workers = list(self._workers)
        for _ in workers:
            self._queue.put(None)  # each worker ends after its current call
        for worker in workers:
            worker.join(max(0.0, deadline - time.monotonic()))
        left = len(self.in_flight())
        if left:
            log.warning("closing the CNI socket with %d request(s) still running", left)
        if self._listener is not None:
            self._listener.close()
            self._listener = None
            self._unlink_if_ours()

    def __enter__(self) -> "CniServer":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def in_flight(self) -> list[threading.Thread]:
        """The workers answering a call right now."""
        with self._lock:
            return list(self._busy)

    # --- socket file -----------------------------------------------------------

    def _bind(self) -> socket.socket:
        path = self.socket_path
        parent = os.path.dirname(path) or "."
        if not os.path.isdir(parent):
            os.makedirs(parent, mode=0o700, exist_ok=True)
        self._refuse_live_socket(path)
        # Bind under a temporary name, restrict it, then rename over the final
        # name: atomic, replaces a stale file, and never exposes a wider mode
        # under the real name (os.umask would be process-wide, not thread-safe).
        tmp = f"{path}.tmp{os.getpid()}.{threading.get_ident()}"
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            sock.bind(tmp)
            os.chmod(tmp, 0o600)
            sock.listen(128)
            os.rename(tmp, path)
            st = os.stat(path)
            self._inode = (st.st_dev, st.st_ino)
        except OSError as exc:
            sock.close()
            if os.path.lexists(tmp):
                os.unlink(tmp)
            raise TulleError(f"cannot serve CNI requests on {path}: {exc}") from None
        return sock

    @staticmethod
    def _refuse_live_socket(path: str) -> None:
        """A stale socket file may be replaced; a live agent's socket or any other file may not."""
        try:
            mode = os.lstat(path).st_mode
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(mode):
            raise TulleError(f"cannot serve CNI requests on {path}: it exists and is not a socket")
        try:
            forward.connect(path, timeout=0.5).close()
        except forward.AgentUnavailable:
            return  # stale: nobody listens
        raise TulleError(f"cannot serve CNI requests on {path}: another agent is serving it")

    def _unlink_if_ours(self) -> None:
        try:
            st = os.lstat(self.socket_path)
            if (st.st_dev, st.st_ino) == self._inode:
                os.unlink(self.socket_path)
        except FileNotFoundError:
            pass

    # --- serving ---------------------------------------------------------------

    def _accept_loop(self) -> None:
        assert self._listener is not None
        while not self._stop.is_set():
            self._slots.acquire()  # all slots busy: callers wait in the backlog
            if self._stop.is_set():
                self._slots.release()
                return
            try:
                conn, _ = self._listener.accept()
            except OSError as exc:
                self._slots.release()
                if not self._stop.is_set():
                    log.error("accept on %s failed: %s", self.socket_path, exc)
                    time.sleep(0.2)
                continue
            with self._lock:
                spawn = self._idle == 0
                if not spawn:
                    self._idle -= 1  # an idle worker will take this one
            self._queue.put(conn)
            if spawn:
                worker = threading.Thread(target=self._work, name="cni-worker", daemon=True)
                with self._lock:
                    self._workers.add(worker)
                worker.start()

    def _work(self) -> None:
        """Answer calls until idle for WORKER_IDLE seconds or told to stop (None)."""
        from tulle.kernel import rtnl

        me = threading.current_thread()
        try:
            conn = self._queue.get()
            while conn is not None:
                with self._lock:
                    self._busy.add(me)
                try:
                    self._serve(conn)
                finally:
                    with self._lock:
                        self._busy.discard(me)
                        self._idle += 1
                try:
                    conn = self._queue.get(timeout=WORKER_IDLE)
                except queue.Empty:
                    with self._lock:
                        if self._idle > 0 and self._queue.empty():
                            self._idle -= 1
                            return
                    conn = self._queue.get()  # a call was handed to us just now
        finally:
            with self._lock:
                self._workers.discard(me)
            rtnl.close()  # this thread's netlink socket

    def _serve(self, conn: socket.socket) -> None:
        try:
            with conn:
                conn.settimeout(self.read_timeout)
                self._answer(conn)
        except Exception:  # one bad connection must never take the server down
            log.exception("CNI request failed")
        finally:
            self._slots.release()

    def _answer(self, conn: socket.socket) -> None:
        pid, uid, _ = peer_credentials(conn)
        ns_fd = -1
        if uid == 0:
            try:  # first thing: from here on the caller's netns cannot go away under us
                ns_fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
            except OSError as exc:
                log.warning("CNI caller pid %d vanished before its request was read: %s", pid, exc)
                return
        try:
            try:  # read even when refusing: the caller then sees our reply
                data = forward.read_all(conn)
            except ValueError as exc:
                self._reply(conn, forward.error_output(INTERNAL, str(exc), b""), 1)
                return
            if not data:
                return  # the caller gave up
            if uid != 0:
                log.warning("refused a CNI request from pid %d uid %d (root only)", pid, uid)
                self._reply(conn, forward.error_output(
                    PERMISSION_DENIED, "permission denied: the tulle agent serves root only", b""), 1)
                return
            try:
                kind, env, stdin = forward.decode_request(data)
            except ValueError as exc:
                self._reply(conn, forward.error_output(INTERNAL, str(exc), b""), 1)
                return
            start = time.monotonic()
            out, code = self._run(ns_fd, kind, env, stdin)
            seconds = time.monotonic() - start
            try:
                self._reply(conn, out, code)
            finally:
                self._observe(kind, env.get("CNI_COMMAND", ""), seconds, code)
        finally:
            if ns_fd >= 0:
                os.close(ns_fd)

    def _reply(self, conn: socket.socket, out: bytes, code: int) -> None:
        conn.settimeout(self.read_timeout)
        conn.sendall(forward.encode_reply(out, code))

    def _run(self, ns_fd: int, kind: str, env: dict[str, str], stdin: bytes) -> tuple[bytes, int]:
        """Answer the call inside the caller's netns (reached through the fd we hold)."""
        from tulle.kernel import netns

        try:
            st = os.fstat(ns_fd)
            if (st.st_dev, st.st_ino) == self._own_netns:
                return self.handler(kind, env, stdin)  # already there: no thread, socket reused
            return netns.run_in(f"/proc/self/fd/{ns_fd}", self.handler, kind, env, stdin)
        except Exception as exc:  # entering the netns failed, or a handler bug
            log.exception("CNI %s %s failed in the agent", kind, env.get("CNI_COMMAND", ""))
            return forward.error_output(INTERNAL, f"the tulle agent failed to run the request: {exc}", stdin), 1

    def _observe(self, kind: str, command: str, seconds: float, code: int) -> None:
        if self.observe is None:
            return
        try:
            self.observe(kind, command, seconds, code)
        except Exception:  # metrics must never fail a CNI call
            log.exception("CNI observe hook failed")
