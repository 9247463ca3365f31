"""Lab pods: the kubelet's part of the lab. A Pod object becomes a sandbox and its containers.

The sandbox is the pause model of the seeds: one netns per pod, wired by the
installed CNI executables through the node's conflist (tulle fabric plugin, then
portmap) exactly as a runtime on that node would, from a thread entered into the
node netns, so the executables' host side (and the agent socket they forward to)
is that node's. A `hostNetwork: true` pod has no netns of its own and no CNI
call: its containers run in the node's netns, at the node's address. Each
container with ports is one server process (tulle.lab.containers); the
containers of a pod share its netns, so they reach each other on 127.0.0.1.

Order, so that a failure is clean: the Pod object is written (Pending) → netns +
CNI ADD → servers → status Running/Ready → the pod's entry in state.json. Each
step pushes its undo as it succeeds; any failure, Ctrl-C included, undoes all of
it, the object too.

A SIGKILL undoes nothing, so the object is also the record of intent: written
before the first side effect, and every part of the pod is named from it (netns
`topology.pod_netns`, CNI container id `container_id`, servers under
`containers.pod_dir`, the node in spec.nodeName). A Pod object without a state
entry, whose pod lock no live command holds, is a pod whose add (or del) was
killed: the next `pod del` or `pod add` of that name undoes all of it, whatever
step it stopped at, after waiting for the children the killed command left
running (tulle.lab.leftovers); `tulle lab gc` does it for every such pod and
runs CNI GC on each node (tulle.lab.gc), as do an add or del that met leftovers.

Pods are made concurrently (see tulle.lab.session): a `pod add` holds its pod's
lock, and the lab's state lock only while it writes state.json.
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
import time

from tulle.cluster import errors
from tulle.cni.runtime import Attachment, Runtime
from tulle.errors import ExistsError, NotFoundError, TulleError
from tulle.kernel import netns
from tulle.lab import containers, leftovers, nodes, podspec, schedule, state, topology
from tulle.lab.podspec import DEFAULT_NAMESPACE
from tulle.lab.session import Session, open_session, pod_session
from tulle.lab.state import LabState, PodState
from tulle.lab.topology import Node


def bin_dir(lab: str) -> str:
    return state.path(lab, "bin")


def runtime(lab: str, node: str) -> Runtime:
    return Runtime([bin_dir(lab)], cache_dir=nodes.node_dir(lab, node, "cni-cache"))


def container_id(lab: str, namespace: str, name: str) -> str:
    """The sandbox's CNI container id ('_' is in no lab, namespace or pod name: unambiguous)."""
    return f"{lab}_{namespace}_{name}"


def _attachment(lab: str, namespace: str, name: str, cid: str, port_mappings: list | None = None) -> Attachment:
    """What a kubelet hands CNI: the pod's netns, its identity in CNI_ARGS, hostPorts for portmap."""
    args = [("IgnoreUnknown", "1"), ("K8S_POD_NAMESPACE", namespace), ("K8S_POD_NAME", name),
            ("K8S_POD_INFRA_CONTAINER_ID", cid)]
    caps = {"portMappings": port_mappings} if port_mappings else {}
    return Attachment(container_id=cid, netns=netns.path_of(topology.pod_netns(lab, name, namespace)),
                      args=args, capability_args=caps)


def _pod_ip(result: dict) -> str:
    for ip in result.get("ips") or []:
        addr = str(ip.get("address", ""))
        if addr and ":" not in addr:
            return addr.split("/")[0]
    raise TulleError(f"the CNI result has no IPv4 address: {result}")


def valid_attachments(st: LabState, node: str) -> list[tuple[str, str]]:
    """CNI GC's keep-list on `node`: (container id, ifname) of the pods that run there."""
    return [(p.container_id, Attachment.ifname) for p in st.pods.values() if p.node == node and not p.host_network]


def pods_per_node(st: LabState) -> dict[str, int]:
    counts = {n: 0 for n in st.nodes}
    for p in st.pods.values():
        counts[p.node] = counts.get(p.node, 0) + 1
    return counts


# --- running a Pod object ----------------------------------------------------------------

def add(lab: str, node: str, pod: str, namespace: str = DEFAULT_NAMESPACE, labels: dict[str, str] | None = None,
        ports: list[dict] | None = None) -> PodState:
    """`tulle lab pod add`: a Pod object bound to `node`, run; on failure nothing of it is left.
    Runs alongside other adds and dels; a half-made pod of that name is undone first."""
    topology.check_namespace(namespace)
    topology.check_pod_name(pod)
    with pod_session(lab, namespace, pod) as s:
        s.plan.node(node)                      # a clear error before anything is written
        ps = create(s, podspec.pod_manifest(namespace, pod, node, labels, ports))[1]
    _collect_after(s)
    return ps


def create(s: Session, manifest: dict, warnings: list[str] | None = None) -> tuple[dict, PodState]:
    """Write a new Pod object and run it; returns (the object as stored, its runtime state).
    The API's warnings (pruned unknown fields) are added to `warnings`."""
    body = copy.deepcopy(manifest)
    md = body.setdefault("metadata", {})
    namespace = md.get("namespace") or DEFAULT_NAMESPACE
    name = str(md.get("name") or "")
    topology.check_namespace(namespace)
    topology.check_pod_name(name)
    with state.pod_locked(s.lab, namespace, name, wait=False):    # held already by `add`
        _undo_interrupted(s, namespace, name)
        return _make(s, body, namespace, name, warnings)


def _make(s: Session, body: dict, namespace: str, name: str, warnings: list[str] | None) -> tuple[dict, PodState]:
    k = podspec.key(namespace, name)
    spec = body.setdefault("spec", {})
    if not spec.get("nodeName"):               # the scheduler's binding
        spec["nodeName"] = schedule.least_loaded([n.name for n in s.plan.nodes], pods_per_node(s.st))
    node = s.plan.node(str(spec["nodeName"]))
    wanted = podspec.containers_of(body)       # refuses what the lab cannot serve, before any write
    body["status"] = podspec.pending_status(s.client.clock())
    with contextlib.ExitStack() as undo:
        obj = s.client.create(body)            # the record of intent: before any side effect
        undo.callback(_forget, s, namespace, name)
        if warnings is not None:
            warnings += s.client.warnings
        ps = _start(s, obj, node, wanted, undo)
        now = s.client.clock()
        ids = {c: f"tulle://{pid}" for c, pid in ps.servers.items()}
        status = podspec.running_status(obj, ps.ip, str(node.ip.ip), now, ids)
        obj = s.client.mutate("pods", name, namespace, lambda o: o.__setitem__("status", status), status=True)
        s.update(lambda st: _record(st, k, ps))
        undo.pop_all()
    return obj, ps


def _record(st: LabState, k: str, ps: PodState) -> None:
    if ps.node not in st.nodes:                # `node del` ran meanwhile: the pod has no node left
        raise NotFoundError(f"node {ps.node} left lab {st.lab!r} while pod {k} was being added")
    st.pods[k] = ps


def _undo_interrupted(s: Session, namespace: str, name: str) -> None:
    """Before an add (the caller holds the pod's lock): AlreadyExists for a running pod; a
    half-made one — its object without a state entry, or parts without either — is undone."""
    if podspec.key(namespace, name) in state.load(s.lab).pods:
        raise errors.already_exists_error("pods", name)
    old = s.client.find("pods", name, namespace)
    traces = (netns.path_of(topology.pod_netns(s.lab, name, namespace)), containers.pod_dir(s.lab, namespace, name))
    if old is None and not any(os.path.exists(t) for t in traces):
        return                                 # the usual case: nothing of it was ever made
    _undo(s, namespace, name, old, None)
    s.reclaimed.append(podspec.key(namespace, name))


def _start(s: Session, obj: dict, node: Node, wanted: tuple[podspec.Container, ...],
           undo: contextlib.ExitStack) -> PodState:
    """The sandbox (own netns + CNI ADD, or the node's netns) and the servers of one pod."""
    lab = s.lab
    namespace, name = obj["metadata"]["namespace"], obj["metadata"]["name"]
    cid = container_id(lab, namespace, name)
    if podspec.host_network(obj):
        pod_ns, ip, run_ns = "", str(node.ip.ip), node.netns
        where = f"node {node.name}'s network namespace (pod {namespace}/{name} uses hostNetwork)"
    else:
        pod_ns = run_ns = topology.pod_netns(lab, name, namespace)
        where = f"pod {namespace}/{name}"
        if netns.exists(pod_ns):                # not ours to undo: the pod's lock is held and it was clear
            raise ExistsError(f"netns {pod_ns} already exists")
        netns.create_sandbox(pod_ns)
        undo.callback(netns.remove, pod_ns)
        conf = nodes.conflist(lab, node.name)
        att = _attachment(lab, namespace, name, cid, podspec.port_mappings(obj))
        rt = runtime(lab, node.name)
        node_path = netns.path_of(node.netns)
        # DEL before ADD is known to succeed: a conflist's ADD that fails half-way (portmap
        # after the fabric plugin) leaves the earlier plugins' work, and DEL of what never
        # happened is fine.
        undo.callback(_quiet_delete, node_path, rt, conf, att)
        ip = _pod_ip(netns.run_in(node_path, rt.add, conf, att))
    servers = containers.start(lab, namespace, name, run_ns, wanted, where)
    undo.callback(containers.stop, lab, namespace, name, servers)
    return PodState(node=node.name, ip=ip, container_id=cid, netns=pod_ns, servers=servers)


def _forget(s: Session, namespace: str, name: str) -> None:
    """Undo of the object write (quiet: the error that made us undo is the one to report)."""
    with contextlib.suppress(TulleError):
        s.client.delete("pods", name, namespace)


def _quiet_delete(node_path: str, rt: Runtime, conf: dict, att: Attachment) -> None:
    with contextlib.suppress(Exception):
        netns.run_in(node_path, rt.delete, conf, att)


# --- removing ----------------------------------------------------------------------------

def delete(lab: str, pod: str, namespace: str = DEFAULT_NAMESPACE, grace_period: float = 0) -> None:
    """`tulle lab pod del`: stop and unwire the pod, then delete its object; a half-made pod
    (an add that was killed) is undone, whatever step it had reached.

    With a grace period (kubectl's graceful deletion) the Pod is first marked terminating
    and keeps running and serving for that long — its endpoint turns ready=false,
    terminating=true, serving as its Ready condition says — then it is torn down; like
    `kubectl delete`, the command waits. No lock is held while it waits."""
    try:
        topology.check_namespace(namespace)
        topology.check_pod_name(pod)
    except TulleError:
        raise errors.not_found_error("pods", pod) from None   # no pod can have such a name
    if grace_period > 0:
        with open_session(lab, lock=False) as s:
            s.client.terminate("pods", pod, namespace, int(math.ceil(grace_period)))
        time.sleep(grace_period)
    with pod_session(lab, namespace, pod) as s:
        remove(s, namespace, pod)
    _collect_after(s)


def remove(s: Session, namespace: str, name: str) -> None:
    """Tear a pod down and delete its object; NotFound when nothing of it exists."""
    k = podspec.key(namespace, name)
    with state.pod_locked(s.lab, namespace, name, wait=False):    # held already by `delete`
        ps = state.load(s.lab).pods.get(k)
        obj = s.client.find("pods", name, namespace)
        if not _undo(s, namespace, name, obj, ps):
            raise errors.not_found_error("pods", name)
        if ps is None:
            s.reclaimed.append(k)


def _undo(s: Session, namespace: str, name: str, obj: dict | None, ps: PodState | None) -> bool:
    """All of a pod: its runtime side, then its object; whether any of it existed."""
    found = _unmake(s, namespace, name, obj, ps)
    if obj is not None:
        with contextlib.suppress(errors.NotFound):
            s.client.delete("pods", name, namespace)
    return found or obj is not None


def _unmake(s: Session, namespace: str, name: str, obj: dict | None, ps: PodState | None) -> bool:
    """Undo a pod's runtime side from what its record says (`ps`, else its object, else only
    the derived names) and drop its state entry; returns whether any part of it existed.
    Idempotent, so a del that was itself killed is finished by the next one."""
    lab = s.lab
    cid = container_id(lab, namespace, name)
    pod_ns = topology.pod_netns(lab, name, namespace)
    leftovers.wait_children(lab, cid, pod_ns)   # a killed add's ip/CNI children finish first
    if ps is not None:
        node, host_net, servers = ps.node, ps.host_network, ps.servers
    else:
        node = str(((obj or {}).get("spec") or {}).get("nodeName") or "") or None
        host_net, servers = obj is not None and podspec.host_network(obj), {}
    found = containers.stop(lab, namespace, name, servers)
    if not host_net:
        found = found or os.path.exists(netns.path_of(pod_ns))
        node_ns = topology.node_netns(lab, node) if node else ""
        if node and netns.exists(node_ns):      # DEL of what never happened is fine: no need to know how far ADD got
            netns.run_in(netns.path_of(node_ns), runtime(lab, node).delete, nodes.conflist(lab, node),
                         _attachment(lab, namespace, name, cid))
        netns.remove(pod_ns)                    # its veth goes with it
    if ps is not None:
        s.update(lambda st: st.pods.pop(podspec.key(namespace, name), None))
    return found or ps is not None


def _collect_after(s: Session) -> None:
    """An add or del that undid a half-made pod runs the lab's GC once it let go of its locks
    (the GC waits until no other pod is half-way): what the pod's record could not name is
    reclaimed too. Housekeeping only: its failure does not fail the add or del that is done
    (`tulle lab gc` names every failed step)."""
    if s.reclaimed:
        from tulle.lab import gc

        with contextlib.suppress(TulleError):
            gc.collect(s.lab)


# --- finding a pod -----------------------------------------------------------------------

def resolve(st: LabState, ref: str, namespace: str | None = None) -> str:
    """The state key of `ns/name`, or of `name` in `namespace` (default: default)."""
    ns, name = podspec.split_ref(ref, namespace or DEFAULT_NAMESPACE)
    k = podspec.key(ns, name)
    if k not in st.pods:
        raise NotFoundError(f"lab {st.lab!r} has no pod {name!r} in namespace {ns!r} "
                            f"(pods: {', '.join(sorted(st.pods)) or 'none'})")
    return k


def netns_path(st: LabState, k: str) -> str:
    """Where a pod's processes run: its own netns, or its node's for hostNetwork pods."""
    p = st.pods[k]
    return netns.path_of(p.netns or topology.node_netns(st.lab, p.node))


def exec_argv(lab: str, pod: str, cmd: list[str], namespace: str | None = None) -> list[str]:
    """The argv that runs `cmd` inside the pod's netns (`tulle lab exec` execs it)."""
    st = state.load(lab)
    k = resolve(st, pod, namespace)
    if not cmd:
        raise TulleError("nothing to run: tulle lab exec POD -- CMD ...")
    return ["nsenter", f"--net={netns_path(st, k)}", *cmd]


def exec_in(lab: str, pod: str, cmd: list[str], namespace: str | None = None) -> int:
    argv = exec_argv(lab, pod, cmd, namespace)
    try:
        os.execvp(argv[0], argv)
    except OSError as exc:
        raise TulleError(f"cannot run {cmd[0]}: {exc.strerror}") from None
    return 127  # not reached
