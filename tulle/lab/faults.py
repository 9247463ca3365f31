"""`tulle lab fault …`: the lab as a test bed for failures, each undone by its matching
command and by `lab down`.

- store stop | kill | start: etcd frozen (SIGSTOP: connections hang, as a stuck server
  or a partitioned one looks), killed (SIGKILL), or brought back (SIGCONT, or a new etcd
  on the same data dir). With the SQLite store, `stop` holds the database's write lock
  from a process of the lab (every writer then times out) and `start` ends it.
- partition NODE | heal NODE: the node's underlay port on the fabric bridge drops every
  frame (nftables, bridge family, in the fabric netns); heal removes that.
- loss NODE PERCENT: that port drops PERCENT % of frames each way (numgen random). This
  kernel has no netem, so there is no delay fault.
- clear: every network fault of the lab removed.
- bird NODE | forwarder NODE, then stop | kill | start: a node's BIRD (bgp labs) or udp
  forwarder (udp labs) frozen (SIGSTOP: its peers' hold timer runs out, the datagrams
  queue), killed (SIGKILL: its agent notices within a second and starts another; BIRD
  in graceful restart recovery), or resumed (SIGCONT). `lab down` resumes what is frozen.
Everything happens in the lab's own netns and processes.
"""

from __future__ import annotations

import os
import signal
import sys
import time

from tulle import procs
from tulle.errors import ConfigError, NotFoundError, TulleError
from tulle.kernel import netns, nft
from tulle.lab import nodes, state, topology
from tulle.lab.state import LabState
from tulle.store.etcd_server import EtcdServer
from tulle.store.etcd_server import marker as etcd_marker

FAMILY, TABLE, CHAIN = "bridge", "tulle-lab-faults", "forward"
FORWARD = nft.Chain(CHAIN, type="filter", hook="forward", priority="filter")
WRITE_LOCK = "sqlite-write-lock"          # the marker in the argv of the lock-holding process


# --- the store ---------------------------------------------------------------------------

def _etcd(st: LabState) -> EtcdServer:
    plan = st.plan()
    return EtcdServer(netns.path_of(plan.fabric_netns), state.path(st.lab, "etcd"),
                      host=str(plan.fabric_ip.ip), member=f"tulle-{st.lab}")


def _proc_state(pid: int) -> str:
    """The process state letter (T: stopped), '' when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return ""


def _wait_stopped(pid: int, stopped: bool, timeout: float = 2.0) -> None:
    """A signal is delivered when the process is next scheduled: wait until /proc shows it
    stopped (or no longer), so the caller's next look agrees with what was said."""
    deadline = time.monotonic() + timeout
    while (_proc_state(pid) == "T") != stopped and time.monotonic() < deadline:
        time.sleep(0.01)


def store(lab: str, action: str) -> str:
    """stop | kill | start the lab's store; returns what was done, in words."""
    if action not in ("stop", "kill", "start"):
        raise ConfigError(f"unknown store action {action!r}: stop, kill or start")
    state.require_root()
    with state.locked(lab):
        st = state.load(lab)
        if st.plan().store == "etcd":
            return _etcd_fault(st, action)
        return _sqlite_fault(st, action)


def _etcd_fault(st: LabState, action: str) -> str:
    server = _etcd(st)
    pid = st.etcd_pid
    alive = bool(pid) and procs.carries(pid, etcd_marker(server.data_dir))
    if action == "stop":
        if not alive:
            raise NotFoundError("etcd is not running (tulle lab fault store start)")
        os.kill(pid, signal.SIGSTOP)
        _wait_stopped(pid, True)
        return f"etcd (pid {pid}) frozen"
    if action == "kill":
        if alive:
            os.kill(pid, signal.SIGKILL)
            procs.wait_dead(pid, 5.0)
        return f"etcd (pid {pid}) killed"
    if alive:
        if _proc_state(pid) == "T":
            os.kill(pid, signal.SIGCONT)
            _wait_stopped(pid, False)
            return f"etcd (pid {pid}) resumed"
        return f"etcd (pid {pid}) is running"
    server.start()
    st.etcd_pid = server.pid
    state.save(st)
    return f"etcd started again (pid {server.pid}, same data)"


def _sqlite_fault(st: LabState, action: str) -> str:
    db = state.path(st.lab, "store.db")
    holders = procs.find(lambda args: WRITE_LOCK in args and db in args)
    if action in ("stop", "kill"):
        if holders:
            return "the store's write lock is already held"
        # BEGIN EXCLUSIVE can be refused at once (SQLITE_BUSY without the busy handler, as
        # while another connection recovers the WAL index): the holder keeps trying.
        code = ("import sqlite3, sys, time\nc = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
                "while True:\n    try:\n        c.execute('BEGIN EXCLUSIVE')\n        break\n"
                "    except sqlite3.OperationalError:\n        time.sleep(0.01)\ntime.sleep(1e9)")
        log = state.path(st.lab, "fault-store.log")
        pid = procs.spawn([sys.executable, "-c", code, db, WRITE_LOCK], log)
        _wait_locked(db, pid, log)
        return f"SQLite write lock held by pid {pid}: every writer waits, then fails"
    for pid in holders:
        os.kill(pid, signal.SIGTERM)
        procs.wait_dead(pid, 5.0)
    return "SQLite write lock released" if holders else "the store was not stopped"


def _wait_locked(db: str, pid: int, log: str, timeout: float = 10.0) -> None:
    """Return once the holder has the lock (a writer is refused at once), so that what the
    caller does next meets a stopped store; TulleError with its log if it died."""
    import sqlite3

    deadline = time.monotonic() + timeout
    while True:
        if not procs.alive(pid):
            with open(log, errors="replace") as f:
                raise TulleError(f"the SQLite lock holder (pid {pid}) exited: {f.read()[-500:].strip()}")
        probe = sqlite3.connect(db, timeout=0, isolation_level=None)
        try:
            probe.execute("BEGIN IMMEDIATE")
            probe.execute("ROLLBACK")
        except sqlite3.OperationalError:
            return                                  # "database is locked": held
        finally:
            probe.close()
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            raise TulleError(f"the SQLite lock holder (pid {pid}) did not take the lock within {timeout:g} s")
        time.sleep(0.02)


# --- the network -------------------------------------------------------------------------

def _port(st: LabState, node: str) -> str:
    return st.plan().node(node).fabric_port


def _fabric_run(st: LabState, fn, *args):
    return netns.run_in(netns.path_of(st.plan().fabric_netns), fn, *args)


def _rules_of(port: str) -> list[nft.Rule]:
    objects = nft.list_table(FAMILY, TABLE)
    if objects is None:
        return []
    return [r for r in nft.rules(objects, CHAIN) if r.comment.endswith(f" {port}")]


def _set(st: LabState, node: str, kind: str, bodies: list[list[dict]]) -> None:
    port = _port(st, node)

    def apply() -> None:
        tx = nft.Transaction(FAMILY, TABLE).add(nft.Table(FAMILY, TABLE)).add(FORWARD)
        for old in _rules_of(port):
            tx.delete(old)
        for body in bodies:
            tx.add(nft.Rule(CHAIN, body, comment=f"{kind} {port}"))
        nft.run(tx)
    _fabric_run(st, apply)


def _both_ways(port: str, *verdict: dict) -> list[list[dict]]:
    return [[nft.match(nft.meta(side), port), *verdict] for side in ("iifname", "oifname")]


def partition(lab: str, node: str) -> str:
    st = state.load(lab)
    _set(st, node, "partition", _both_ways(_port(st, node), nft.drop()))
    return f"node {node} partitioned (its fabric port {_port(st, node)} drops everything)"


def loss(lab: str, node: str, percent: int) -> str:
    if not 0 < percent <= 100:
        raise ConfigError(f"loss must be 1..100 percent, got {percent}")
    st = state.load(lab)
    port = _port(st, node)
    lossy = [nft.match(nft.numgen(100), percent, "<"), nft.drop()]
    _set(st, node, f"loss-{percent}", _both_ways(port, *lossy))
    return f"node {node}: {percent}% of frames dropped each way on {port}"


def heal(lab: str, node: str) -> str:
    st = state.load(lab)
    _set(st, node, "healed", [])
    return f"node {node}: no network fault"


def clear(lab: str) -> str:
    st = state.load(lab)

    def drop_table() -> None:
        if nft.list_table(FAMILY, TABLE) is not None:
            nft.run(nft.Transaction(FAMILY, TABLE).delete(nft.Table(FAMILY, TABLE)))
    _fabric_run(st, drop_table)
    return "every network fault removed"


def active(lab: str) -> list[str]:
    """The network faults in place, as `<kind> <port>`."""
    st = state.load(lab)

    def listed() -> list[str]:
        objects = nft.list_table(FAMILY, TABLE)
        return sorted({r.comment for r in nft.rules(objects, CHAIN)}) if objects else []
    try:
        return _fabric_run(st, listed)
    except TulleError:
        return []


# --- a node's daemons ----------------------------------------------------------------------

# daemon -> (the backend that runs it, its control socket in the agent's state dir: the
# argument that marks the process as this node's, the program name)
DAEMONS = {"bird": ("bgp", "bird.ctl", "bird"), "forwarder": ("udp", "udp.ctl", "")}
RESTART_WAIT = 5.0        # how long `kill` waits to see the agent start a new one


def daemon_pid(lab: str, node: str, which: str) -> int | None:
    """The running BIRD or forwarder of a node (birdc, which names the same socket, is not it)."""
    _, ctl, program = DAEMONS[which]
    marker = nodes.node_dir(lab, node, ctl)
    pids = procs.find(lambda args: marker in args and (not program or os.path.basename(args[0]) == program))
    return pids[0] if pids else None


def daemon(lab: str, node: str, which: str, action: str) -> str:
    """stop | kill | start a node's BIRD or udp forwarder; returns what was done, in words."""
    if which not in DAEMONS:
        raise ConfigError(f"unknown daemon {which!r}: bird or forwarder")
    if action not in ("stop", "kill", "start"):
        raise ConfigError(f"unknown {which} action {action!r}: stop, kill or start")
    state.require_root()
    st = state.load(lab)
    plan = st.plan()
    plan.node(node)
    backend = DAEMONS[which][0]
    if plan.backend != backend:
        raise ConfigError(f"lab {lab!r} runs the {plan.backend} backend: no {which} (a {backend} lab's nodes run one)")
    what = f"{which} on {node}"
    pid = daemon_pid(lab, node, which)
    if pid is None:
        if action == "start":
            return f"{what} is not running: its agent starts one within a second"
        raise NotFoundError(f"{what} is not running")
    if action == "stop":
        os.kill(pid, signal.SIGSTOP)
        _wait_stopped(pid, True)
        return f"{what} (pid {pid}) frozen"
    if action == "start":
        if _proc_state(pid) != "T":
            return f"{what} (pid {pid}) is running"
        os.kill(pid, signal.SIGCONT)
        _wait_stopped(pid, False)
        return f"{what} (pid {pid}) resumed"
    os.kill(pid, signal.SIGKILL)
    os.kill(pid, signal.SIGCONT)          # a frozen one dies too
    procs.wait_dead(pid, 5.0)
    deadline = time.monotonic() + RESTART_WAIT
    while time.monotonic() < deadline:
        new = daemon_pid(lab, node, which)
        if new is not None and new != pid:
            return f"{what} (pid {pid}) killed; its agent started another (pid {new})"
        time.sleep(0.05)
    return f"{what} (pid {pid}) killed; its agent has not started another yet"
