"""A whole lab: up, down, status, a node leaving, an agent restarting.

`up` validates every option before it creates anything, then builds fabric,
store, nodes and agents, pushing the undo of each step on an ExitStack: any
failure (or Ctrl-C) tears down what was made. `down` needs nothing but the lab
name: it finds the lab's processes by their state-dir arguments and its netns
by their exact names, so it also cleans up after an `up` that was killed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
from typing import Any

from tulle import procs
from tulle.agent import lastknown
from tulle.cluster import netconfig
from tulle.cluster.lease import DEFAULT_PREFIX, subnet_key
from tulle.cluster.api import connect
from tulle.cni.install import install
from tulle.errors import ExistsError, TulleError
from tulle.kernel import netns
from tulle.lab import agents, fabric, nodes, pods, podspec, state, topology
from tulle.lab import bgp as lab_bgp
from tulle.lab.session import open_lab_store, open_session
from tulle.lab.state import LabState
from tulle.store import StoreUnavailable
from tulle.store.etcd_server import EtcdServer


def _refuse_existing(plan: topology.Plan) -> None:
    lab = plan.lab
    leftovers = [n for n in netns.list_names(f"tulle-{lab}-") if topology.is_lab_netns(lab, n)]
    if state.exists(lab) or leftovers:
        raise ExistsError(f"lab {lab!r} already exists (tulle lab down --lab {lab} first)")


def _start_store(plan: topology.Plan, st: LabState, undo: contextlib.ExitStack) -> None:
    if plan.store != "etcd":
        return
    server = EtcdServer(netns.path_of(plan.fabric_netns), state.path(plan.lab, "etcd"),
                        host=str(plan.fabric_ip.ip), member=f"tulle-{plan.lab}")
    server.start()
    undo.callback(server.stop)
    st.etcd_pid = server.pid
    state.save(st)


def up(lab: str = "lab", nodes_count: int = 3, segments: int = 1, backend: str = "vxlan",
       store: str = "sqlite", network: str = str(topology.DEFAULT_NETWORK),
       subnet_len: int = topology.DEFAULT_SUBNET_LEN, timeout: float = agents.READY_TIMEOUT,
       route_reflectors: int = 0, tor_bgp: bool = False, asn: int | None = None) -> LabState:
    """Bring a lab up and wait until every agent holds a lease and routes to every other node
    (bgp: until every planned BGP session is Established)."""
    options: dict[str, Any] = {"nodes": nodes_count, "segments": segments, "backend": backend, "store": store,
                               "network": network, "subnet_len": subnet_len}
    # bgp options only when given, so other labs' state keeps its shape (plan() refuses misuse)
    if route_reflectors:
        options["route_reflectors"] = route_reflectors
    if tor_bgp:
        options["tor_bgp"] = True
    if asn is not None:
        options["asn"] = asn
    plan = topology.plan(lab, **options)        # every refusal happens here, before anything exists
    state.require_root()
    cfg = netconfig.build(str(plan.network), plan.subnet_len, plan.backend, extra=lab_bgp.netconfig_extra(plan))
    _refuse_existing(plan)
    with contextlib.ExitStack() as undo:
        state.create_dir(lab)
        undo.callback(shutil.rmtree, state.path(lab), True)
        st = LabState(lab, options, nodes={n.name: 0 for n in plan.nodes})
        state.save(st)
        fabric.build(plan, undo)
        if plan.tor_bgp:   # the ToR BIRD in the router netns, before the nodes dial it
            undo.callback(lab_bgp.stop_tor, lab, lab_bgp.start_tor(plan))
        _start_store(plan, st, undo)
        kv = open_lab_store(plan)
        undo.callback(kv.close)
        netconfig.write_config(kv, DEFAULT_PREFIX, cfg)
        connect(kv).ensure_defaults()            # the namespaces every cluster starts with
        install(pods.bin_dir(lab))
        for node in plan.nodes:
            fabric.add_node(plan, node, undo)
            nodes.write_files(plan, node)
        for node in plan.nodes:
            st.nodes[node.name] = agents.start(plan, node)
            undo.callback(agents.stop, lab, node.name, st.nodes[node.name])
            state.save(st)
        agents.wait_ready(plan, kv, st.nodes, timeout)
        st.phase = "up"
        state.save(st)
        undo.pop_all()
    kv.close()
    return st


def _lab_args(lab: str):
    root = state.path(lab) + "/"

    def pred(args: list[str]) -> bool:
        return any(a.startswith(root) for a in args)
    return pred


def down(lab: str = "lab") -> bool:
    """Remove everything of the lab; False when there was nothing to remove."""
    topology.check_lab_name(lab)
    state.require_root()
    found = state.exists(lab)
    # Every process of the lab carries a path under its state dir (agents: --state-dir,
    # etcd: --data-dir); TERM them all first, then wait, so they stop in parallel. Then
    # look again: an agent still running when its daemon ended may have started another.
    pids: list[int] = []
    for _ in range(3):
        running = procs.find(_lab_args(lab))
        if not running:
            break
        pids += running
        _end_all(running)
    names = [n for n in netns.list_names(f"tulle-{lab}-") if topology.is_lab_netns(lab, n)]
    names.sort(key=lambda n: (0 if "-pod-" in n else 2 if n.endswith(("-fabric", "-router")) else 1))
    for name in names:
        netns.remove(name)
    shutil.rmtree(state.path(lab), ignore_errors=True)
    if state.exists(lab):
        raise TulleError(f"cannot remove {state.path(lab)}")
    return found or bool(pids or names)


def _end_all(pids: list[int]) -> None:
    """SIGTERM (and SIGCONT) each, then wait; SIGKILL what does not end within 5 s."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
            os.kill(pid, signal.SIGCONT)          # a process frozen by `lab fault … stop` too
    for pid in pids:
        if not procs.wait_dead(pid, 5.0):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            procs.wait_dead(pid, 5.0)


def status(lab: str = "lab") -> dict[str, Any]:
    """What `tulle lab status --json` prints: the lab, its nodes (with store leases) and pods."""
    st = state.load(lab)
    plan = st.plan()
    out: dict[str, Any] = {
        "lab": lab, "phase": st.phase, "backend": plan.backend, "store": plan.store,
        "store_url": plan.store_url(), "network": str(plan.network), "subnet_len": plan.subnet_len,
        "segments": [{"name": s.bridge, "cidr": str(s.cidr), "router": str(s.router_ip.ip)
                      if plan.router_netns else None} for s in plan.segments],
        "fabric_ip": str(plan.fabric_ip.ip),
    }
    leases: list = []
    local: dict[str, list[str]] = {}
    try:
        kv = open_lab_store(plan, timeout=STATUS_STORE_TIMEOUT)
        try:
            leases = agents.leases(kv)
            local = lab_bgp.pod_blocks(plan, kv)
        finally:
            kv.close()
    except TulleError as exc:
        out["store_error"] = exc.msg
    out["nodes"] = []
    for node in plan.nodes:
        lease = agents.lease_of(node, leases)
        stale = False
        if "store_error" in out:               # what the agent last knew (its saved state), marked stale
            known = lastknown.load(nodes.node_dir(lab, node.name), DEFAULT_PREFIX)
            lease, stale = (known.own if known else None), True
        pid = st.nodes.get(node.name, 0)
        out["nodes"].append({
            "name": node.name, "segment": plan.segments[node.segment].bridge, "underlay_ip": str(node.ip.ip),
            "subnet": str(lease.subnet) if lease else None, "netns": node.netns,
            "agent_pid": pid, "agent_alive": agents.alive(lab, node.name, pid),
            **({"stale": True} if stale else {}),
        })
    lab_bgp.annotate_status(plan, out, local)
    out["pods"] = pod_list(st)
    return out


STATUS_STORE_TIMEOUT = 1.0   # seconds per store request before `lab status` answers from what it knows


def pod_list(st: LabState) -> list[dict[str, str]]:
    """`tulle lab pods --json`: name, namespace, node, ip of every pod (by namespace, then name)."""
    out = []
    for k, p in sorted(st.pods.items()):
        namespace, name = podspec.split_ref(k)
        out.append({"name": name, "namespace": namespace, "node": p.node, "ip": p.ip})
    return out


def node_del(lab: str, node: str) -> None:
    """A node leaves: its pods (runtime and objects) go, its agent stops, its lease key is
    deleted, its netns removed."""
    with open_session(lab) as s:
        st, plan = s.st, s.plan
        where = plan.node(node)
        for k in [k for k, ps in st.pods.items() if ps.node == node]:
            pods.remove(s, *podspec.split_ref(k))      # runtime and Pod object
        agents.stop(lab, node, st.nodes.get(node, 0))
        for lease in agents.leases(s.client.store):
            if lease.node == node or lease.public_ip == where.ip.ip:
                s.client.store.delete(subnet_key(DEFAULT_PREFIX, lease.subnet))
        fabric.remove_node(where)
        shutil.rmtree(nodes.node_dir(lab, node), ignore_errors=True)
        del st.nodes[node]
        state.save(st)
        lab_bgp.refresh_tor(st.plan())   # --tor-bgp: the ToR drops its session to the node


def node_add(lab: str, timeout: float = agents.READY_TIMEOUT, wait: bool = True) -> str:
    """A node joins: the lowest free n<k> gets its netns, files and agent; returns its name.

    With `wait`, returns once every agent (the new one included) holds its lease
    and routes every other node's subnet; on failure the new node is removed.
    """
    state.require_root()
    with state.locked(lab):
        st = state.load(lab)
        taken = {topology.node_index(n) for n in st.nodes}
        free = [k for k in range(1, topology.MAX_NODES + 1) if k not in taken]
        if not free:
            raise TulleError(f"lab {lab!r} already has {topology.MAX_NODES} nodes, the most a lab holds")
        options = dict(st.options, nodes=max(int(st.options["nodes"]), free[0]))
        full = topology.plan(lab, **options)      # refuses what the network cannot hold
        node = full.node(f"n{free[0]}")
        with contextlib.ExitStack() as undo:
            fabric.add_node(full, node, undo)
            nodes.write_files(full, node)
            undo.callback(shutil.rmtree, nodes.node_dir(lab, node.name), True)
            pid = agents.start(full, node)
            undo.callback(agents.stop, lab, node.name, pid)
            st.options = options
            st.nodes[node.name] = pid
            state.save(st)
            undo.pop_all()
    lab_bgp.refresh_tor(st.plan())       # --tor-bgp: the ToR peers with the new node too
    if wait:
        plan = st.plan()
        kv = open_lab_store(plan)
        try:
            agents.wait_ready(plan, kv, st.nodes, timeout)
        except TulleError:
            kv.close()
            node_del(lab, node.name)
            raise
        kv.close()
    return node.name


def agent_restart(lab: str, node: str, kill: bool = False, timeout: float = agents.READY_TIMEOUT) -> int:
    """Stop (SIGTERM, or SIGKILL as a crash) and start a node's agent; returns the new pid."""
    state.require_root()
    with state.locked(lab):
        st = state.load(lab)
        plan = st.plan()
        where = plan.node(node)
        pid = st.nodes.get(node, 0)
        if kill:
            agents.kill(lab, node, pid)
        else:
            agents.stop(lab, node, pid)
        st.nodes[node] = agents.start(plan, where)
        state.save(st)
    try:
        kv = open_lab_store(plan, timeout=STATUS_STORE_TIMEOUT)
    except StoreUnavailable:
        # The agent starts from its last known state and keeps the data plane; it registers
        # when the store is back. Ready means: it runs (and has not exited on a start error).
        agents.wait_running(lab, node, st.nodes[node], timeout)
        return st.nodes[node]
    try:
        agents.wait_ready(plan, kv, st.nodes, timeout)
    finally:
        kv.close()
    return st.nodes[node]

