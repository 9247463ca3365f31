"""Deployments in the lab: the deployment (and replica set) controller's work, done by `apply`.

A Deployment's replicas become Pods named as Kubernetes names them,
`<deployment>-<pod-template-hash>-<5 random>`, labelled from the template plus
`pod-template-hash`, owned by the Deployment (ownerReferences; the lab has no
ReplicaSet in between) and spread over the nodes. A re-apply converges: pods of
an older template are replaced (the new ones are started first, so a Service
never runs empty), extra replicas go (from the node holding the most, newest
first, as a ReplicaSet picks them), missing ones are added. The planning is
pure; `reconcile` carries it out through tulle.lab.pods.
"""

from __future__ import annotations

import contextlib
import copy
import json
import secrets
from dataclasses import dataclass, field
from typing import Callable, Sequence

from tulle.errors import TulleError
from tulle.lab import pods, schedule
from tulle.lab.session import Session

HASH_LABEL = "pod-template-hash"
ALPHANUMS = "bcdfghjklmnpqrstvwxz2456789"     # apimachinery's util/rand: no vowels, no 0/1/3
MAX_GENERATED_BASE = 58                        # names.SimpleNameGenerator: 63 less the 5 random


def safe_encode(text: str) -> str:
    """rand.SafeEncodeString: each character mapped into ALPHANUMS (no bad words, no look-alikes)."""
    return "".join(ALPHANUMS[ord(c) % len(ALPHANUMS)] for c in text)


def fnv32a(data: bytes) -> int:
    h = 0x811C9DC5
    for b in data:
        h = ((h ^ b) * 0x01000193) & 0xFFFFFFFF
    return h


def template_hash(template: dict) -> str:
    """The pod-template-hash: FNV-32a of the template, its decimal digits safe-encoded (as
    controller.ComputeHash does; Kubernetes hashes Go's dump of the struct, we hash canonical
    JSON, so the values differ from a real cluster's but have their shape and stability)."""
    body = json.dumps(template or {}, sort_keys=True, separators=(",", ":")).encode()
    return safe_encode(str(fnv32a(body)))


def random_suffix(n: int = 5) -> str:
    return "".join(secrets.choice(ALPHANUMS) for _ in range(n))


def pod_name(deployment: str, pod_hash: str, suffix: str) -> str:
    """`web-7c5ddbdf54-x8f9z`: the ReplicaSet's name as generateName base, cut to fit 63."""
    return f"{deployment}-{pod_hash}-"[:MAX_GENERATED_BASE] + suffix


@dataclass(frozen=True)
class Replica:
    name: str
    node: str
    pod_hash: str
    created: str = ""


@dataclass
class Plan:
    create_on: list[str] = field(default_factory=list)     # a node per new pod
    delete: list[str] = field(default_factory=list)        # pod names


def plan(replicas: int, pod_hash: str, existing: Sequence[Replica], nodes: Sequence[str],
         pods_per_node: dict[str, int]) -> Plan:
    """What to start and stop so that exactly `replicas` pods of template `pod_hash` run."""
    current = [r for r in existing if r.pod_hash == pod_hash]
    out = Plan(delete=[r.name for r in existing if r.pod_hash != pod_hash])
    while len(current) > replicas:
        mine: dict[str, int] = {}
        for r in current:
            mine[r.node] = mine.get(r.node, 0) + 1
        victim = max(current, key=lambda r: (mine[r.node], r.created, r.name))
        current.remove(victim)
        out.delete.append(victim.name)
    total = dict(pods_per_node)
    for r in existing:
        if r.name in out.delete and r.node in total:
            total[r.node] -= 1
    mine = {}
    for r in current:
        mine[r.node] = mine.get(r.node, 0) + 1
    out.create_on = schedule.spread(nodes, total, mine, replicas - len(current))
    return out


def pod_for(deploy: dict, pod_hash: str, node: str, name: str) -> dict:
    """A Pod of the Deployment's template: its labels + pod-template-hash, owned by the Deployment."""
    md, template = deploy["metadata"], copy.deepcopy((deploy.get("spec") or {}).get("template") or {})
    tmd = template.get("metadata") or {}
    labels = {**(tmd.get("labels") or {}), HASH_LABEL: pod_hash}
    meta = {"name": name, "namespace": md["namespace"], "labels": labels,
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": md["name"],
                                 "uid": md.get("uid", ""), "controller": True, "blockOwnerDeletion": True}]}
    if tmd.get("annotations"):
        meta["annotations"] = dict(tmd["annotations"])
    spec = template.get("spec") or {}
    spec["nodeName"] = node
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}


def owned_by(pod: dict, deploy: dict) -> bool:
    uid = deploy["metadata"].get("uid")
    return any(o.get("kind") == "Deployment" and o.get("uid") == uid
               for o in (pod.get("metadata") or {}).get("ownerReferences") or [])


def replicas_of(pods: list[dict], deploy: dict) -> list[Replica]:
    return [Replica(p["metadata"]["name"], (p.get("spec") or {}).get("nodeName", ""),
                    (p["metadata"].get("labels") or {}).get(HASH_LABEL, ""),
                    p["metadata"].get("creationTimestamp", ""))
            for p in pods if owned_by(p, deploy)]


def status(deploy: dict, pods: list[dict], pod_hash: str) -> dict:
    """Deployment status from its pods (every running pod of the lab is ready and available)."""
    mine = [p for p in pods if owned_by(p, deploy)]
    ready = [p for p in mine if _ready(p)]
    updated = [p for p in mine if (p["metadata"].get("labels") or {}).get(HASH_LABEL) == pod_hash]
    want = int((deploy.get("spec") or {}).get("replicas", 1))
    out = {"observedGeneration": deploy["metadata"].get("generation", 1), "replicas": len(mine),
           "updatedReplicas": len(updated), "readyReplicas": len(ready), "availableReplicas": len(ready)}
    if len(mine) > len(ready):
        out["unavailableReplicas"] = len(mine) - len(ready)
    complete = len(updated) == want == len(ready) == len(mine)
    out["conditions"] = [{"type": "Available", "status": "True" if len(ready) >= want else "False"},
                         {"type": "Progressing", "status": "True",
                          "reason": "NewReplicaSetAvailable" if complete else "ReplicaSetUpdated"}]
    return {k: v for k, v in out.items() if v != 0 or k in ("replicas", "observedGeneration")}


def _ready(pod: dict) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


# --- carrying it out ------------------------------------------------------------------

def reconcile(s: Session, deploy: dict, suffix: Callable[[], str] = random_suffix) -> dict:
    """Make the lab run the Deployment's replicas; returns the Deployment with its new status."""
    ns = deploy["metadata"]["namespace"]
    pod_hash = template_hash((deploy.get("spec") or {}).get("template") or {})
    listed = s.client.list("pods", ns)[0]
    todo = plan(int((deploy.get("spec") or {}).get("replicas", 1)), pod_hash, replicas_of(listed, deploy),
                [n.name for n in s.plan.nodes], pods.pods_per_node(s.st))
    taken = {p["metadata"]["name"] for p in listed}
    try:
        for node in todo.create_on:                 # new pods first: the old ones serve meanwhile
            name = pod_name(deploy["metadata"]["name"], pod_hash, suffix())
            while name in taken:
                name = pod_name(deploy["metadata"]["name"], pod_hash, suffix())
            taken.add(name)
            pods.create(s, pod_for(deploy, pod_hash, node, name))
        for name in todo.delete:
            pods.remove(s, ns, name)
    except BaseException:                           # a pod that could not start: say how many run
        with contextlib.suppress(TulleError):
            update_status(s, deploy, pod_hash)
        raise
    return update_status(s, deploy, pod_hash)


def update_status(s: Session, deploy: dict, pod_hash: str | None = None) -> dict:
    md = deploy["metadata"]
    pod_hash = pod_hash or template_hash((deploy.get("spec") or {}).get("template") or {})
    listed = s.client.list("pods", md["namespace"])[0]
    new = status(deploy, listed, pod_hash)
    return s.client.mutate("deployments", md["name"], md["namespace"],
                           lambda d: d.__setitem__("status", new), status=True)


def delete(s: Session, namespace: str, name: str) -> dict:
    """Stop the Deployment's pods, then delete it (the garbage collector's cascade, in the foreground)."""
    deploy = s.client.get("deployments", name, namespace)
    for r in replicas_of(s.client.list("pods", namespace)[0], deploy):
        pods.remove(s, namespace, r.name)
    return s.client.delete("deployments", name, namespace)
