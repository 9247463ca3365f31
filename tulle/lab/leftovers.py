"""What a killed `pod add` or `pod del` may still have running, found by the names a pod's
parts are derived from.

A kubelet that dies mid-way leaves its children behind, and so does `tulle lab pod add`:
the `ip netns add` and the CNI executables it started finish their work after it (they
get no signal), and the pod's servers (detached) keep serving. Before a later command
finishes or undoes the pod it waits for those children, so that no ADD lands after its
DEL; the servers are tulle.lab.containers' (found by their log path).
"""

from __future__ import annotations

import time

from tulle import procs
from tulle.kernel import netns
from tulle.lab import state, topology

CHILD_TIMEOUT = 30.0     # seconds to wait for a killed command's children (a CNI ADD ends long before)


def _environ(pid: int) -> dict[str, str]:
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            raw = f.read()
    except OSError:
        return {}
    return dict(item.decode(errors="replace").partition("=")[::2] for item in raw.split(b"\0") if item)


def children(lab: str, container_id: str, netns_name: str) -> list[int]:
    """Live processes working on this sandbox: `ip netns add|delete NAME`, and the lab's CNI
    executables (their argv names the lab's bin dir) called for `container_id`."""
    bin_root = state.path(lab, "bin") + "/"

    def ours(args: list[str]) -> bool:
        return args[:2] == ["ip", "netns"] and args[3:] == [netns_name] or \
            any(a.startswith(bin_root) for a in args)

    return [pid for pid in procs.find(ours)
            if procs.cmdline(pid)[:1] == ["ip"] or _environ(pid).get("CNI_CONTAINERID") == container_id]


def wait_children(lab: str, container_id: str, netns_name: str, timeout: float = CHILD_TIMEOUT) -> list[int]:
    """Wait until `children` are gone (at most `timeout`); returns those still running."""
    deadline = time.monotonic() + timeout
    left = children(lab, container_id, netns_name)
    while left and time.monotonic() < deadline:
        time.sleep(0.02)
        left = [pid for pid in left if procs.alive(pid)]
    return left


def pod_netns(lab: str) -> list[tuple[str, str]]:
    """(namespace, name) of every pod netns of the lab that exists."""
    prefix = f"tulle-{lab}-pod-"
    out = []
    for name in netns.list_names(prefix):
        if topology.is_lab_netns(lab, name):
            ns, _, pod = name[len(prefix):].partition("_")
            out.append((ns, pod))
    return out
