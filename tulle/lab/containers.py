"""The containers of a lab pod: one podserver process per container that has ports.

Each container's sockets are bound and set listening here, from a thread inside
the pod's netns (the node's, for hostNetwork pods), then handed to a detached
`podserver.py` started in that netns: a port already taken there is this
module's clear error, and the server answers from the moment it exists. A
container without ports has nothing to answer, so it costs no process.

Every server's argv carries its log path under the lab's state dir: `lab down`
finds it by that, `stop` signals a pid only while it still carries it, and
finds the servers of an add that was killed before it recorded their pids.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import signal
import socket
import sys

from tulle import procs
from tulle.errors import ExistsError, TulleError
from tulle.kernel import netns
from tulle.lab import state
from tulle.lab.podspec import Container, Port

SERVER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "podserver.py")
BACKLOG = 128


def pod_dir(lab: str, namespace: str, name: str) -> str:
    return state.path(lab, "pods", f"{namespace}_{name}")


def log_path(lab: str, namespace: str, name: str, container: str) -> str:
    """The server's output file, and the marker that proves a pid is that server."""
    return os.path.join(pod_dir(lab, namespace, name), f"{container}.log")


def identity(namespace: str, name: str, container: str) -> str:
    """What the server answers: `default/web-1 (container web)`."""
    return f"{namespace}/{name} (container {container})"


def _bind(ports: tuple[Port, ...], where: str) -> list[socket.socket]:
    """Listening sockets on 0.0.0.0 for each port, in the calling thread's netns."""
    socks: list[socket.socket] = []
    try:
        for p in ports:
            kind = socket.SOCK_STREAM if p.protocol == "TCP" else socket.SOCK_DGRAM
            s = socket.socket(socket.AF_INET, kind)
            socks.append(s)
            if kind == socket.SOCK_STREAM:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("0.0.0.0", p.port))
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    raise ExistsError(f"port {p} is already in use in {where}") from None
                raise TulleError(f"cannot bind port {p} in {where}: {exc.strerror}") from None
            if kind == socket.SOCK_STREAM:
                s.listen(BACKLOG)
    except BaseException:
        for s in socks:
            s.close()
        raise
    return socks


def start(lab: str, namespace: str, name: str, netns_name: str, containers: tuple[Container, ...],
          where: str) -> dict[str, int]:
    """Start the servers of a pod's containers in netns `netns_name`; returns container -> pid.

    `where` names the netns in errors ("pod default/web-1", "node n1"). On failure
    no server of this call is left running, nor its files."""
    path = netns.path_of(netns_name)
    folder = pod_dir(lab, namespace, name)
    started: dict[str, int] = {}
    handed: list[socket.socket] = []          # our copies of the servers' sockets: closed either way
    try:
        with contextlib.ExitStack() as undo:
            os.makedirs(folder, exist_ok=True)
            undo.callback(shutil.rmtree, folder, True)
            for c in containers:
                if not c.ports:
                    continue
                socks = netns.run_in(path, _bind, c.ports, where)
                handed += socks
                log = log_path(lab, namespace, name, c.name)
                listeners = [f"{p.protocol.lower()}:{s.fileno()}" for p, s in zip(c.ports, socks)]
                pid = procs.spawn([sys.executable, "-I", "-S", SERVER, log, identity(namespace, name, c.name),
                                   *listeners], log, netns_path=path, pass_fds=tuple(s.fileno() for s in socks))
                undo.callback(_stop_quietly, pid, log)
                started[c.name] = pid
            undo.pop_all()
    finally:
        for s in handed:
            s.close()
    return started


def _stop_quietly(pid: int, log: str) -> None:
    with contextlib.suppress(TulleError):
        procs.stop(pid, log)


def running(lab: str, namespace: str, name: str) -> dict[int, str]:
    """The pod's server processes, found by the log path in their argv: pid -> that path."""
    folder = pod_dir(lab, namespace, name) + os.sep
    out: dict[int, str] = {}
    for pid in procs.find(lambda args: any(a.startswith(folder) for a in args)):
        marker = next((a for a in procs.cmdline(pid) if a.startswith(folder)), "")
        if marker:
            out[pid] = marker
    return out


def present(lab: str) -> set[tuple[str, str]]:
    """(namespace, name) of every pod of the lab with a folder or a server running from one
    ('_' is in no namespace or pod name)."""
    root = state.path(lab, "pods")
    try:
        names = set(os.listdir(root))
    except FileNotFoundError:
        names = set()
    for pid in procs.find(lambda args: any(a.startswith(root + os.sep) for a in args)):
        names |= {a[len(root) + 1:].split(os.sep, 1)[0] for a in procs.cmdline(pid) if a.startswith(root + os.sep)}
    return {(ns, pod) for ns, sep, pod in (n.partition("_") for n in names) if sep}


def stop(lab: str, namespace: str, name: str, servers: dict[str, int]) -> bool:
    """Stop a pod's servers (TERM all, then wait) and remove its files; those `servers` names
    and any other still running from its folder (an add killed before it recorded them).
    Returns whether there was anything to stop or remove."""
    targets = {pid: log_path(lab, namespace, name, c) for c, pid in servers.items() if procs.alive(pid)}
    targets.update(running(lab, namespace, name))
    for pid, marker in targets.items():         # all at once: they end in parallel
        procs.signal_pid(pid, marker, signal.SIGTERM)
    for pid, marker in targets.items():
        procs.stop(pid, marker)
    folder = pod_dir(lab, namespace, name)
    found = bool(targets) or os.path.exists(folder)
    shutil.rmtree(folder, ignore_errors=True)
    return found
