"""Lab pods: a netns wired by the installed CNI executables, as a runtime on the node would.

`add` runs the node's conflist (tulle fabric plugin, then portmap) through
tulle.cni.runtime.Runtime from a thread entered into the node netns, so the
executables' host side (and the agent socket they forward to) is that node's.
"""

from __future__ import annotations

import contextlib
import os

from tulle.cni.runtime import Attachment, Runtime
from tulle.errors import ExistsError, NotFoundError, TulleError
from tulle.kernel import links, netns
from tulle.lab import nodes, state, topology
from tulle.lab.state import LabState, PodState


def bin_dir(lab: str) -> str:
    return state.path(lab, "bin")


def runtime(lab: str, node: str) -> Runtime:
    return Runtime([bin_dir(lab)], cache_dir=nodes.node_dir(lab, node, "cni-cache"))


def _attachment(lab: str, pod: str, container_id: str) -> Attachment:
    return Attachment(container_id=container_id, netns=netns.path_of(topology.pod_netns(lab, pod)))


def _pod_ip(result: dict) -> str:
    for ip in result.get("ips") or []:
        addr = str(ip.get("address", ""))
        if addr and ":" not in addr:
            return addr.split("/")[0]
    raise TulleError(f"the CNI result has no IPv4 address: {result}")


def add(lab: str, node: str, pod: str) -> PodState:
    """Create pod `pod` on `node`; on failure nothing of it is left."""
    topology.check_pod_name(pod)
    state.require_root()
    with state.locked(lab):
        st = state.load(lab)
        plan = st.plan()
        where = plan.node(node)
        if pod in st.pods:
            raise ExistsError(f"pod {pod!r} already exists in lab {lab!r} (on {st.pods[pod].node})")
        name = topology.pod_netns(lab, pod)
        if netns.exists(name):
            raise ExistsError(f"netns {name} already exists")
        conf = nodes.conflist(lab, node)
        cid = f"{lab}-{pod}"
        att = _attachment(lab, pod, cid)
        rt = runtime(lab, node)
        node_path = netns.path_of(where.netns)
        with contextlib.ExitStack() as undo:
            path = netns.create(name)
            undo.callback(netns.remove, name)
            netns.run_in(path, links.set_up, "lo")   # a runtime brings the pod's loopback up itself
            result = netns.run_in(node_path, rt.add, conf, att)
            undo.callback(_quiet_delete, node_path, rt, conf, att)
            pod_state = PodState(node=node, ip=_pod_ip(result), container_id=cid)
            st.pods[pod] = pod_state
            state.save(st)
            undo.pop_all()
        return pod_state


def _quiet_delete(node_path: str, rt: Runtime, conf: dict, att: Attachment) -> None:
    with contextlib.suppress(Exception):
        netns.run_in(node_path, rt.delete, conf, att)


def delete(lab: str, pod: str) -> None:
    """CNI DEL on the pod's node, then remove its netns; a missing pod is an error."""
    state.require_root()
    with state.locked(lab):
        st = state.load(lab)
        if pod not in st.pods:
            raise NotFoundError(f"lab {lab!r} has no pod {pod!r}")
        remove(st, pod)
        state.save(st)


def remove(st: LabState, pod: str) -> None:
    """Unwire and remove one pod of a loaded state (the caller saves the state)."""
    p = st.pods[pod]
    node_ns = f"tulle-{st.lab}-{p.node}"
    if netns.exists(node_ns):
        netns.run_in(netns.path_of(node_ns), runtime(st.lab, p.node).delete,
                     nodes.conflist(st.lab, p.node), _attachment(st.lab, pod, p.container_id))
    netns.remove(topology.pod_netns(st.lab, pod))
    del st.pods[pod]


def exec_argv(lab: str, pod: str, cmd: list[str]) -> list[str]:
    """The argv that runs `cmd` inside the pod's netns (`tulle lab exec` execs it)."""
    st = state.load(lab)
    if pod not in st.pods:
        raise NotFoundError(f"lab {lab!r} has no pod {pod!r} (pods: {', '.join(sorted(st.pods)) or 'none'})")
    if not cmd:
        raise TulleError("nothing to run: tulle lab exec POD -- CMD ...")
    return ["nsenter", f"--net={netns.path_of(topology.pod_netns(lab, pod))}", *cmd]


def exec_in(lab: str, pod: str, cmd: list[str]) -> int:
    argv = exec_argv(lab, pod, cmd)
    try:
        os.execvp(argv[0], argv)
    except OSError as exc:
        raise TulleError(f"cannot run {cmd[0]}: {exc.strerror}") from None
    return 127  # not reached
