"""EndpointSlices from Services and Pods: kube-controller-manager's endpointslice
controller, as a pure plan.

For every Service with a selector (ExternalName and selector-less Services are not
managed: their slices, if any, belong to the user), the endpoints are the Pods of its
namespace that match the selector and have an IP, minus finished ones (Succeeded,
Failed). Each endpoint carries:
  ready        the Pod's Ready condition is True and it is not terminating
  serving      the Pod's Ready condition is True (terminating or not)
  terminating  the Pod has a deletionTimestamp
plus nodeName and a targetRef to the Pod. A named targetPort is resolved per Pod
(its containers' ports by name and protocol); Pods on which the names resolve to
different numbers go to different slices, as each slice has one port list. A
Pod on which a named port does not resolve still counts, without that port, as
Kubernetes does. At most MAX_ENDPOINTS per slice (the controller's default
--max-endpoints-per-slice).

The plan keeps churn low: an endpoint already in a slice with the same ports stays
in that slice; new endpoints fill slices with room before a new slice is made; a
slice left empty is deleted (one empty slice is kept for a Service with no
endpoints, so readers can tell "no endpoints" from "not synced yet").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tulle.cluster.labels import map_matches

MAX_ENDPOINTS = 100
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
MANAGED_BY_LABEL = "endpointslice.kubernetes.io/managed-by"
MANAGED_BY = "endpointslice-controller.tulle.dev"

PortList = tuple[tuple[str, int, str], ...]       # (name, port, protocol) per service port


@dataclass
class Plan:
    create: list[dict] = field(default_factory=list)
    update: list[dict] = field(default_factory=list)     # full objects carrying the resourceVersion read
    delete: list[tuple[str, str]] = field(default_factory=list)   # (namespace, name)

    def __bool__(self) -> bool:
        return bool(self.create or self.update or self.delete)


def _ready(pod: dict) -> bool:
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return cond.get("status") == "True"
    return False


def _pod_ip(pod: dict) -> str | None:
    status = pod.get("status") or {}
    ips = [p.get("ip") for p in status.get("podIPs") or [] if p.get("ip")]
    ip = status.get("podIP") or (ips[0] if ips else None)
    return ip if ip and ":" not in ip else None


def resolve_port(pod: dict, target: Any, protocol: str) -> int | None:
    """A Service port's targetPort on one Pod: a number as is, a name through its containers."""
    if isinstance(target, int):
        return target
    if isinstance(target, str) and target.isdigit():
        return int(target)
    for c in (pod.get("spec") or {}).get("containers") or []:
        for p in c.get("ports") or []:
            if p.get("name") == target and p.get("protocol", "TCP") == protocol:
                return int(p["containerPort"])
    return None


def ports_for(svc: dict, pod: dict) -> PortList:
    out = []
    for p in (svc.get("spec") or {}).get("ports") or []:
        proto = p.get("protocol", "TCP")
        target = resolve_port(pod, p.get("targetPort", p.get("port")), proto)
        if target is not None:
            out.append((p.get("name", ""), target, proto))
    return tuple(out)


def endpoint_of(pod: dict) -> dict:
    md = pod["metadata"]
    terminating = bool(md.get("deletionTimestamp"))
    ready = _ready(pod)
    ep: dict[str, Any] = {
        "addresses": [_pod_ip(pod)],
        "conditions": {"ready": ready and not terminating, "serving": ready, "terminating": terminating},
        "targetRef": {"kind": "Pod", "namespace": md.get("namespace", "default"), "name": md["name"],
                      "uid": md.get("uid", "")},
    }
    node = (pod.get("spec") or {}).get("nodeName")
    if node:
        ep["nodeName"] = node
    return ep


def managed(svc: dict) -> bool:
    spec = svc.get("spec") or {}
    return bool(spec.get("selector")) and spec.get("type") != "ExternalName"


def desired(svc: dict, pods: list[dict]) -> dict[PortList, list[dict]]:
    """Port list → endpoints (sorted by Pod name) for one Service."""
    ns = svc["metadata"].get("namespace", "default")
    selector = (svc.get("spec") or {}).get("selector") or {}
    groups: dict[PortList, list[dict]] = {}
    for pod in sorted(pods, key=lambda p: p["metadata"]["name"]):
        md = pod["metadata"]
        if md.get("namespace", "default") != ns or not map_matches(selector, md.get("labels") or {}):
            continue
        if _pod_ip(pod) is None or (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            continue
        groups.setdefault(ports_for(svc, pod), []).append(endpoint_of(pod))
    return groups


def _slice_ports(slc: dict) -> PortList:
    return tuple((p.get("name", ""), int(p.get("port", 0)), p.get("protocol", "TCP"))
                 for p in slc.get("ports") or [])


def _ep_key(ep: dict) -> str:
    ref = ep.get("targetRef") or {}
    return f"{ref.get('namespace')}/{ref.get('name')}/{(ep.get('addresses') or [''])[0]}"


def _owner(svc: dict) -> dict:
    return {"apiVersion": "v1", "kind": "Service", "name": svc["metadata"]["name"],
            "uid": svc["metadata"].get("uid", ""), "controller": True, "blockOwnerDeletion": True}


def _new_slice(svc: dict, ports: PortList, endpoints: list[dict]) -> dict:
    md = svc["metadata"]
    return {
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"generateName": f"{md['name']}-", "namespace": md.get("namespace", "default"),
                     "labels": {SERVICE_NAME_LABEL: md["name"], MANAGED_BY_LABEL: MANAGED_BY},
                     "ownerReferences": [_owner(svc)]},
        "addressType": "IPv4",
        "endpoints": endpoints,
        "ports": [{"name": n, "port": p, "protocol": proto} for n, p, proto in ports],
    }


def is_managed_slice(slc: dict) -> bool:
    return ((slc.get("metadata") or {}).get("labels") or {}).get(MANAGED_BY_LABEL) == MANAGED_BY


def plan(services: list[dict], pods: list[dict], slices: list[dict],
         max_endpoints: int = MAX_ENDPOINTS) -> Plan:
    """The writes that make the managed slices match the Services and Pods."""
    out = Plan()
    svc_by_key = {(s["metadata"].get("namespace", "default"), s["metadata"]["name"]): s
                  for s in services if managed(s)}
    pods_by_ns: dict[str, list[dict]] = {}
    for p in pods:
        pods_by_ns.setdefault(p["metadata"].get("namespace", "default"), []).append(p)
    existing: dict[tuple[str, str], list[dict]] = {}
    for slc in slices:
        if not is_managed_slice(slc):
            continue
        md = slc["metadata"]
        key = (md.get("namespace", "default"), (md.get("labels") or {}).get(SERVICE_NAME_LABEL, ""))
        if key in svc_by_key:
            existing.setdefault(key, []).append(slc)
        else:
            out.delete.append((key[0], md["name"]))
    for key in sorted(svc_by_key):
        svc = svc_by_key[key]
        _plan_service(svc, desired(svc, pods_by_ns.get(key[0], [])),
                      sorted(existing.get(key, []), key=lambda s: s["metadata"]["name"]), max_endpoints, out)
    return out


def _plan_service(svc: dict, want: dict[PortList, list[dict]], have: list[dict], most: int, out: Plan) -> None:
    remaining = {ports: {_ep_key(e): e for e in eps} for ports, eps in want.items()}
    kept: list[tuple[dict, PortList, list[dict]]] = []     # (slice, ports, its endpoints after the pass)
    for slc in have:                                      # endpoints stay where they are
        ports = _slice_ports(slc)
        pool = remaining.get(ports, {})
        eps = [pool.pop(_ep_key(ep)) for ep in slc.get("endpoints") or [] if _ep_key(ep) in pool]
        kept.append((slc, ports, eps))
    created = len(out.create)
    for ports in sorted(remaining):                       # the rest fill slices with room, then new ones
        pending = sorted(remaining[ports].values(), key=_ep_key)
        for _, sports, eps in kept:
            if sports == ports:
                while pending and len(eps) < most:
                    eps.append(pending.pop(0))
        while pending:
            out.create.append(_new_slice(svc, ports, pending[:most]))
            pending = pending[most:]
    survivors = [k for k in kept if k[2]]
    empties = [k for k in kept if not k[2]]
    if not survivors and len(out.create) == created:      # no endpoints at all: one placeholder slice
        if empties:
            survivors.append((empties.pop(0)[0], (), []))
        else:
            out.create.append(_new_slice(svc, (), []))
    for slc, _, _ in empties:
        out.delete.append((slc["metadata"].get("namespace", "default"), slc["metadata"]["name"]))
    for slc, ports, eps in survivors:
        eps = sorted(eps, key=_ep_key)
        wanted_ports = [{"name": n, "port": p, "protocol": proto} for n, p, proto in ports]
        owners = [_owner(svc)]
        if eps != (slc.get("endpoints") or []) or _norm_ports(slc) != wanted_ports or \
                (slc["metadata"].get("ownerReferences") or []) != owners:
            out.update.append({**slc, "endpoints": eps, "ports": wanted_ports,
                               "metadata": {**slc["metadata"], "ownerReferences": owners}})


def _norm_ports(slc: dict) -> list[dict]:
    return [{"name": p.get("name", ""), "port": int(p.get("port", 0)), "protocol": p.get("protocol", "TCP")}
            for p in slc.get("ports") or []]
