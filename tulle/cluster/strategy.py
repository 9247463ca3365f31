"""What the API server's registry strategies change in an update before validating it.

Today one rule, the Service strategy's dropTypeDependentFields: a Service whose
type changes loses the fields its new type has no use for — but only those the
client sent back unchanged, i.e. the ones the server itself filled in. Turning a
NodePort Service into a ClusterIP one with the object as read (externalTrafficPolicy
Cluster, nodePorts, ...) is then valid, as it is on a real cluster.
"""

from __future__ import annotations

from typing import Any

from tulle.cluster.defaults import externally_accessible


def _needs_cluster_ip(spec: dict[str, Any]) -> bool:
    return spec.get("type") != "ExternalName"


def _needs_node_ports(spec: dict[str, Any]) -> bool:
    kind = spec.get("type")
    return kind == "NodePort" or (kind == "LoadBalancer" and spec.get("allocateLoadBalancerNodePorts", True))


def _needs_health_check_port(spec: dict[str, Any]) -> bool:
    return spec.get("type") == "LoadBalancer" and spec.get("externalTrafficPolicy") == "Local"


def _drop_if_unchanged(spec: dict[str, Any], was: dict[str, Any], *fields: str) -> None:
    for f in fields:
        if f in spec and spec.get(f) == was.get(f):
            del spec[f]


def _service(new: dict[str, Any], old: dict[str, Any]) -> None:
    spec, was = new.setdefault("spec", {}), old.get("spec") or {}
    if _needs_cluster_ip(was) and not _needs_cluster_ip(spec):
        _drop_if_unchanged(spec, was, "clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy")
    if _needs_node_ports(was) and not _needs_node_ports(spec):
        old_ports = [p.get("nodePort") for p in was.get("ports") or []]
        if [p.get("nodePort") for p in spec.get("ports") or []] == old_ports:
            for port in spec.get("ports") or []:
                port.pop("nodePort", None)
    if _needs_health_check_port(was) and not _needs_health_check_port(spec):
        _drop_if_unchanged(spec, was, "healthCheckNodePort")
    if was.get("type") == "LoadBalancer" and spec.get("type") != "LoadBalancer":
        _drop_if_unchanged(spec, was, "allocateLoadBalancerNodePorts", "loadBalancerClass")
    if externally_accessible(was) and not externally_accessible(spec):
        _drop_if_unchanged(spec, was, "externalTrafficPolicy")
    if spec.get("type") != "LoadBalancer":
        (new.get("status") or {}).pop("loadBalancer", None)


def prepare_update(new: dict[str, Any], old: dict[str, Any]) -> dict[str, Any]:
    """`new` (a defaulted copy, changed in place) ready to be validated against `old`."""
    if new.get("kind") == "Service":
        _service(new, old)
    return new
