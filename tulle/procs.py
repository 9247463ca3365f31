"""Background processes tulle starts (agents, etcd) and must end by pid.

A process started here may outlive its starter (`tulle lab up` returns while
the agents keep running), so later commands find it again by pid — and, because
a pid can be reused once the process is gone, only ever signal a pid whose
command line still carries a marker argument unique to what we started (a lab's
state path). Nothing here matches processes by program name.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from typing import Callable

from tulle.errors import TulleError

# Popen objects of children started by this process, so stop() can reap them
# (a zombie still answers kill(pid, 0)).
_children: dict[int, subprocess.Popen] = {}
EXEC_GRACE = 0.5      # seconds a process may show an empty argv while it execs


def spawn(cmd: list[str], log_path: str, netns_path: str | None = None,
          env: dict[str, str] | None = None, pass_fds: tuple[int, ...] = ()) -> int:
    """Start `cmd` detached (own session, stdin closed, output to `log_path`); returns its pid.

    With `netns_path` it runs under `nsenter --net=`, which execs in place (no
    --fork), so the pid is the command's own. `pass_fds` stay open in the child
    under the same numbers (e.g. sockets it serves, bound by the caller).
    """
    full = (["nsenter", f"--net={netns_path}"] if netns_path else []) + cmd
    with open(log_path, "ab") as log:
        try:
            proc = subprocess.Popen(full, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True, env=env, pass_fds=pass_fds)
        except OSError as exc:
            raise TulleError(f"cannot start {cmd[0]}: {exc.strerror}") from None
    _children[proc.pid] = proc
    return proc.pid


def cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            raw = f.read()
    except OSError:
        return []
    return [a.decode(errors="replace") for a in raw.split(b"\0") if a]


def alive(pid: int) -> bool:
    """Running (a zombie counts as dead; our own zombies are reaped on the way)."""
    if pid <= 0:
        return False
    proc = _children.get(pid)
    if proc is not None and proc.poll() is not None:
        del _children[pid]
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def carries(pid: int, marker: str) -> bool:
    """The process is ours: one of its arguments is exactly `marker`.

    While a process execs (nsenter becoming the command it runs, a few ms after
    spawn) the kernel shows no arguments at all; that is waited out, else a stop
    right after a start would leave the process running."""
    deadline = time.monotonic() + EXEC_GRACE
    args = cmdline(pid)
    while not args and alive(pid) and time.monotonic() < deadline:
        time.sleep(0.002)
        args = cmdline(pid)
    return marker in args


def find(predicate: Callable[[list[str]], bool]) -> list[int]:
    """Pids whose argument list satisfies `predicate` (used to find a lab's orphans)."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            args = cmdline(int(entry))
            if args and predicate(args) and alive(int(entry)):
                pids.append(int(entry))
    return pids


def wait_dead(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def signal_pid(pid: int, marker: str, sig: int) -> bool:
    """Send `sig` to `pid` if it is still the process we started; False when it is gone."""
    if not alive(pid) or not carries(pid, marker):
        return False
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return False
    return True


def stop(pid: int, marker: str, timeout: float = 5.0) -> None:
    """SIGTERM, then SIGKILL after `timeout`; returns once the process is gone."""
    if not signal_pid(pid, marker, signal.SIGTERM):
        alive(pid)  # reaps our own zombie
        return
    if not wait_dead(pid, timeout):
        signal_pid(pid, marker, signal.SIGKILL)
        if not wait_dead(pid, 5.0):
            raise TulleError(f"process {pid} ({' '.join(cmdline(pid)[:3])}) did not end after SIGKILL")
