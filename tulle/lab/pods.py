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
CNI ADD → servers → status Running/Ready. Each step pushes its undo as it
succeeds; any failure, Ctrl-C included, undoes all of it, the object too.
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
from tulle.kernel import links, netns
from tulle.lab import containers, nodes, podspec, schedule, state, topology
from tulle.lab.podspec import DEFAULT_NAMESPACE
from tulle.lab.session import Session, open_session
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


def pods_per_node(st: LabState) -> dict[str, int]:
    counts = {n: 0 for n in st.nodes}
    for p in st.pods.values():
        counts[p.node] = counts.get(p.node, 0) + 1
    return counts


# --- running a Pod object ----------------------------------------------------------------

def add(lab: str, node: str, pod: str, namespace: str = DEFAULT_NAMESPACE, labels: dict[str, str] | None = None,
        ports: list[dict] | None = None) -> PodState:
    """`tulle lab pod add`: a Pod object bound to `node`, run; on failure nothing of it is left."""
    with open_session(lab) as s:
        s.plan.node(node)                      # a clear error before anything is written
        return create(s, podspec.pod_manifest(namespace, pod, node, labels, ports))[1]


def create(s: Session, manifest: dict, warnings: list[str] | None = None) -> tuple[dict, PodState]:
    """Write a new Pod object and run it; returns (the object as stored, its runtime state).
    The API's warnings (pruned unknown fields) are added to `warnings`."""
    body = copy.deepcopy(manifest)
    md = body.setdefault("metadata", {})
    namespace = md.get("namespace") or DEFAULT_NAMESPACE
    name = str(md.get("name") or "")
    topology.check_namespace(namespace)
    topology.check_pod_name(name)
    k = podspec.key(namespace, name)
    if k in s.st.pods:
        raise errors.already_exists_error("pods", name)
    spec = body.setdefault("spec", {})
    if not spec.get("nodeName"):               # the scheduler's binding
        spec["nodeName"] = schedule.least_loaded([n.name for n in s.plan.nodes], pods_per_node(s.st))
    node = s.plan.node(str(spec["nodeName"]))
    wanted = podspec.containers_of(body)       # refuses what the lab cannot serve, before any write
    body["status"] = podspec.pending_status(s.client.clock())
    with contextlib.ExitStack() as undo:
        obj = s.client.create(body)
        undo.callback(_forget, s, namespace, name)
        if warnings is not None:
            warnings += s.client.warnings
        ps = _start(s, obj, node, wanted, undo)
        now = s.client.clock()
        ids = {c: f"tulle://{pid}" for c, pid in ps.servers.items()}
        status = podspec.running_status(obj, ps.ip, str(node.ip.ip), now, ids)
        obj = s.client.mutate("pods", name, namespace, lambda o: o.__setitem__("status", status), status=True)
        s.st.pods[k] = ps
        s.save()
        undo.pop_all()
    return obj, ps


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
        if netns.exists(pod_ns):
            raise ExistsError(f"netns {pod_ns} already exists")
        path = netns.create(pod_ns)
        undo.callback(netns.remove, pod_ns)
        netns.run_in(path, links.set_up, "lo")   # a runtime brings the pod's loopback up itself
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
    """`tulle lab pod del`: stop and unwire the pod, then delete its object.

    With a grace period (kubectl's graceful deletion) the Pod is first marked terminating
    and keeps running and serving for that long — its endpoint turns ready=false,
    terminating=true, serving as its Ready condition says — then it is torn down; like
    `kubectl delete`, the command waits. The lab's lock is not held while it waits."""
    if grace_period > 0:
        with open_session(lab) as s:
            s.client.terminate("pods", pod, namespace, int(math.ceil(grace_period)))
        time.sleep(grace_period)
    with open_session(lab) as s:
        remove(s, namespace, pod)


def remove(s: Session, namespace: str, name: str) -> None:
    """Tear a pod down and delete its object; NotFound when there is neither."""
    k = podspec.key(namespace, name)
    known = k in s.st.pods
    if known:
        teardown(s.st, k)
        s.save()
    try:
        s.client.delete("pods", name, namespace)
    except errors.NotFound:
        if not known:
            raise


def teardown(st: LabState, k: str) -> None:
    """Stop a pod's servers, CNI DEL on its node, remove its netns (the caller saves the state)."""
    p = st.pods[k]
    namespace, name = podspec.split_ref(k)
    containers.stop(st.lab, namespace, name, p.servers)
    if not p.host_network:
        node_ns = topology.node_netns(st.lab, p.node)
        if netns.exists(node_ns):
            netns.run_in(netns.path_of(node_ns), runtime(st.lab, p.node).delete,
                         nodes.conflist(st.lab, p.node), _attachment(st.lab, namespace, name, p.container_id))
        netns.remove(p.netns)
    del st.pods[k]


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
