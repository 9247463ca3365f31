"""`tulle lab gc`: reclaim what no pod owns — the kubelet's and the CNI runtime's garbage collection.

It runs in an exclusive session: no pod is being made or unmade meanwhile, and a
killed command's locks went with it, so whatever is half-way now will stay so. In order:

1. half-made pods — a Pod object with no runtime record: an add (or a del) that was
   killed — are undone and their objects deleted, as the failed add would have done;
2. runtime records whose object is gone (deleted behind the lab's back) are torn down;
3. parts that no record names — a pod netns (its veth goes with it), a pod folder,
   servers still running from one — are removed;
4. each node's runtime runs CNI GC (spec 1.1) through the node's conflist, the pods
   left on that node as `cni.dev/valid-attachments`: the plugins release the leases,
   saved configs, nft rules and ifbs of every other attachment (tulle.cni.runtime
   first DELs the stale attachments of its result cache, as libcni does).

It keeps going past errors and reports them at the end.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from tulle.kernel import netns
from tulle.lab import containers, leftovers, nodes, pods, podspec, topology
from tulle.lab.session import Session, open_session


@dataclass
class Report:
    done: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    def attempt(self, what: str, fn: Callable[..., object], *args: object) -> None:
        """Run one step; its failure is recorded and the collection goes on."""
        try:
            fn(*args)
        except Exception as exc:           # noqa: BLE001 - GC keeps going past every error
            self.failed.append(f"{what}: {getattr(exc, 'msg', None) or exc}")
        else:
            self.done.append(what)


def collect(lab: str) -> Report:
    """Reclaim every half-made pod and everything no pod owns, on every node of `lab`."""
    report = Report()
    with open_session(lab) as s:
        objects = {podspec.key(o["metadata"]["namespace"], o["metadata"]["name"]) for o in s.client.list("pods")[0]}
        for k in sorted(objects - set(s.st.pods)):
            report.attempt(f"pod {k}: half-made, undone", pods.remove, s, *podspec.split_ref(k))
        for k in sorted(set(s.st.pods) - objects):
            report.attempt(f"pod {k}: its object is gone, torn down", pods.remove, s, *podspec.split_ref(k))
        _strays(s, report)
        for node in s.plan.nodes:
            _cni_gc(s, node.name, report)
    return report


def _strays(s: Session, report: Report) -> None:
    owned = {podspec.split_ref(k) for k in s.st.pods}
    for ns, name in sorted((set(leftovers.pod_netns(s.lab)) | containers.present(s.lab)) - owned):
        report.attempt(f"pod {podspec.key(ns, name)}: leftovers with no record, removed", pods.remove, s, ns, name)


def _cni_gc(s: Session, node: str, report: Report) -> None:
    node_ns = topology.node_netns(s.lab, node)
    if not netns.exists(node_ns):
        report.failed.append(f"node {node}: no netns {node_ns}, no CNI GC")
        return
    valid = pods.valid_attachments(s.st, node)
    report.attempt(f"node {node}: CNI GC, {len(valid)} attachment(s) kept",
                   netns.run_in, netns.path_of(node_ns), pods.runtime(s.lab, node).gc, nodes.conflist(s.lab, node),
                   valid)
