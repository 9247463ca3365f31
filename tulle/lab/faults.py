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
Everything happens in the lab's own netns and processes.
"""

from __future__ import annotations

import os
import signal
import sys

from tulle import procs
from tulle.errors import ConfigError, NotFoundError, TulleError
from tulle.kernel import netns, nft
from tulle.lab import state, topology
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
        return f"etcd (pid {pid}) frozen"
    if action == "kill":
        if alive:
            os.kill(pid, signal.SIGKILL)
            procs.wait_dead(pid, 5.0)
        return f"etcd (pid {pid}) killed"
    if alive:
        if _proc_state(pid) == "T":
            os.kill(pid, signal.SIGCONT)
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
        code = ("import sqlite3, sys, time; c = sqlite3.connect(sys.argv[1], isolation_level=None); "
                "c.execute('BEGIN EXCLUSIVE'); time.sleep(1e9)")
        pid = procs.spawn([sys.executable, "-c", code, db, WRITE_LOCK], state.path(st.lab, "fault-store.log"))
        return f"SQLite write lock held by pid {pid}: every writer waits, then fails"
    for pid in holders:
        os.kill(pid, signal.SIGTERM)
        procs.wait_dead(pid, 5.0)
    return "SQLite write lock released" if holders else "the store was not stopped"


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
