"""The API server's defaults, applied to a copy of an object before validation.

These are the values kube-apiserver writes into an object it stores (its
SetDefaults_* functions and the Namespace/Service strategies), so `get -o yaml`
shows the same object here as on a real cluster. Two Go habits decide when a
default applies, and we keep both: a plain string field is defaulted when empty
(`""` counts as unset), a pointer field only when absent.

Not here: allocating a ClusterIP or NodePorts (the object API claims them), and
the defaults tulle has no use for (terminationGracePeriodSeconds, schedulerName,
imagePullPolicy, ...): validation does not require those either.
"""

from __future__ import annotations

import base64
import copy
from typing import Any, Callable

NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"
CLIENT_IP_TIMEOUT = 10800            # v1.DefaultClientIPServiceAffinitySeconds (3 h)


def _unset(d: dict[str, Any], key: str, value: Any) -> None:
    """Go's `if x == "" { x = v }` for plain string fields."""
    if d.get(key) in (None, ""):
        d[key] = value


def _absent(d: dict[str, Any], key: str, value: Any) -> None:
    """Go's `if x == nil { x = &v }` for pointer fields."""
    if d.get(key) is None:
        d[key] = value


def _each(d: dict[str, Any], key: str) -> list[dict[str, Any]]:
    return [item for item in d.get(key) or [] if isinstance(item, dict)]


# -- per kind ------------------------------------------------------------------------

def _namespace(obj: dict[str, Any]) -> None:
    meta = obj.setdefault("metadata", {})
    if meta.get("name"):
        meta.setdefault("labels", {})[NAMESPACE_NAME_LABEL] = meta["name"]


def _pod_spec(spec: dict[str, Any]) -> None:
    """SetDefaults_PodSpec + container ports (shared by Pods and Pod templates)."""
    _unset(spec, "dnsPolicy", "ClusterFirst")
    _unset(spec, "restartPolicy", "Always")
    for group in ("containers", "initContainers"):
        for container in _each(spec, group):
            for port in _each(container, "ports"):
                _unset(port, "protocol", "TCP")


def _host_network_ports(spec: dict[str, Any]) -> None:
    """A hostNetwork Pod listens on the node: its hostPorts are its containerPorts."""
    if spec.get("hostNetwork") is True:
        for group in ("containers", "initContainers"):
            for container in _each(spec, group):
                for port in _each(container, "ports"):
                    if not port.get("hostPort"):
                        port["hostPort"] = port.get("containerPort")


def _pod(obj: dict[str, Any]) -> None:
    spec = obj.setdefault("spec", {})
    _pod_spec(spec)
    _host_network_ports(spec)


def externally_accessible(spec: dict[str, Any]) -> bool:
    """Reachable from outside the cluster (apiservice.ExternallyAccessible)."""
    kind = spec.get("type")
    return kind in ("NodePort", "LoadBalancer") or (kind == "ClusterIP" and bool(spec.get("externalIPs")))


def _service(obj: dict[str, Any]) -> None:
    spec = obj.setdefault("spec", {})
    _unset(spec, "sessionAffinity", "None")
    if spec["sessionAffinity"] == "None":
        spec.pop("sessionAffinityConfig", None)
    elif spec["sessionAffinity"] == "ClientIP":
        client_ip = (spec.get("sessionAffinityConfig") or {}).get("clientIP") or {}
        if client_ip.get("timeoutSeconds") is None:
            spec["sessionAffinityConfig"] = {"clientIP": {"timeoutSeconds": CLIENT_IP_TIMEOUT}}
    _unset(spec, "type", "ClusterIP")
    for port in _each(spec, "ports"):
        _unset(port, "protocol", "TCP")
        if port.get("targetPort") in (None, 0, ""):
            port["targetPort"] = port.get("port")
    if externally_accessible(spec):
        _unset(spec, "externalTrafficPolicy", "Cluster")
    kind = spec["type"]
    if kind in ("ClusterIP", "NodePort", "LoadBalancer"):
        _absent(spec, "internalTrafficPolicy", "Cluster")
    if kind == "LoadBalancer":
        _absent(spec, "allocateLoadBalancerNodePorts", True)
    if kind != "ExternalName":          # the registry's defaults for a single-stack IPv4 cluster
        _absent(spec, "ipFamilyPolicy", "SingleStack")
        if not spec.get("ipFamilies"):
            spec["ipFamilies"] = ["IPv4"]
    if spec.get("clusterIP") and not spec.get("clusterIPs"):
        spec["clusterIPs"] = [spec["clusterIP"]]     # the plural follows the singular (normalizeClusterIPs)


def _secret(obj: dict[str, Any]) -> None:
    _unset(obj, "type", "Opaque")
    plain = obj.pop("stringData", None)
    if plain:
        data = obj.setdefault("data", {})
        for k, v in plain.items():
            data[k] = base64.b64encode(str(v).encode()).decode()


def _endpoint_slice(obj: dict[str, Any]) -> None:
    for port in _each(obj, "ports"):
        _absent(port, "name", "")
        _absent(port, "protocol", "TCP")


def _network_policy(obj: dict[str, Any]) -> None:
    spec = obj.setdefault("spec", {})
    if not spec.get("policyTypes"):
        spec["policyTypes"] = ["Ingress", "Egress"] if spec.get("egress") else ["Ingress"]
    for direction in ("ingress", "egress"):
        for rule in _each(spec, direction):
            for port in _each(rule, "ports"):
                _absent(port, "protocol", "TCP")


def _deployment(obj: dict[str, Any]) -> None:
    spec = obj.setdefault("spec", {})
    _absent(spec, "replicas", 1)
    strategy = spec.setdefault("strategy", {})
    _unset(strategy, "type", "RollingUpdate")
    if strategy["type"] == "RollingUpdate":
        rolling = strategy.setdefault("rollingUpdate", {})
        _absent(rolling, "maxUnavailable", "25%")
        _absent(rolling, "maxSurge", "25%")
    _absent(spec, "revisionHistoryLimit", 10)
    _absent(spec, "progressDeadlineSeconds", 600)
    template = spec.get("template")
    if isinstance(template, dict):
        _pod_spec(template.setdefault("spec", {}))


_BY_KIND: dict[str, Callable[[dict[str, Any]], None]] = {
    "Namespace": _namespace,
    "Pod": _pod,
    "Service": _service,
    "Secret": _secret,
    "EndpointSlice": _endpoint_slice,
    "NetworkPolicy": _network_policy,
    "Deployment": _deployment,
}


def apply(obj: dict[str, Any]) -> dict[str, Any]:
    """A deep copy of `obj` (type-checked: see schema.check_types) with its kind's defaults."""
    out = copy.deepcopy(obj)
    fill = _BY_KIND.get(str(out.get("kind", "")))
    if fill is not None:
        fill(out)
    return out
