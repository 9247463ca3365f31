"""Service validation (core/v1), in the order and words of ValidateService.

`clusterIPs` is the authoritative field (defaults fills it from `clusterIP`); a
headless Service is `clusterIPs == ["None"]`. Allocation (the range, "already
allocated") is the object API's; here only the shape is checked. On update an IP
that is set may not change; an empty one is for the object API to carry over.
"""

from __future__ import annotations

from typing import Any

from tulle.cluster import names
from tulle.cluster.defaults import externally_accessible
from tulle.cluster.errors import FieldError, duplicate, forbidden, invalid, not_supported, required
from tulle.cluster.fieldpath import child, index
from tulle.cluster.validation.common import (IMMUTABLE, cidr_errors, enum, ip_errors, name_field, non_special_ip,
                                             port_number, port_number_or_name, protocol)
from tulle.cluster.validation.meta import labels

TYPES = ["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"]
AFFINITIES = ["ClientIP", "None"]
TRAFFIC_POLICIES = ["Cluster", "Local"]
IP_FAMILIES = ["IPv4", "IPv6"]
IP_FAMILY_POLICIES = ["PreferDualStack", "RequireDualStack", "SingleStack"]
MAX_AFFINITY_TIMEOUT = 86400
KUBELET_PORT = 10250


def _headless(spec: dict[str, Any]) -> bool:
    return spec.get("clusterIPs") == ["None"]


def _ports(spec: dict[str, Any]) -> list[FieldError]:
    ports = spec.get("ports") or []
    out: list[FieldError] = []
    seen_names: set[str] = set()
    for i, p in enumerate(ports):
        at = index("spec.ports", i)
        name = p.get("name", "")
        if len(ports) > 1 and not name:
            out.append(required(child(at, "name")))
        elif name:
            out += name_field(child(at, "name"), name, names.dns1123_label_errors)
            if name in seen_names:
                out.append(duplicate(child(at, "name"), name))
            seen_names.add(name)
        out += port_number(child(at, "port"), p.get("port", 0))
        out += protocol(child(at, "protocol"), p.get("protocol"))
        out += port_number_or_name(child(at, "targetPort"), p.get("targetPort", 0))
        if p.get("appProtocol"):
            out += name_field(child(at, "appProtocol"), p["appProtocol"], names.qualified_name_errors)
    return out


def _by_type(spec: dict[str, Any]) -> list[FieldError]:
    kind, out = spec.get("type"), []
    if kind == "LoadBalancer":
        for i, p in enumerate(spec.get("ports") or []):
            if p.get("port") == KUBELET_PORT:
                out.append(invalid(index("spec.ports", i), KUBELET_PORT,
                                   f"may not expose port {KUBELET_PORT} externally since it is used by kubelet"))
    if kind in ("LoadBalancer", "NodePort") and _headless(spec):
        out.append(invalid("spec.clusterIPs[0]", "None", f"may not be set to 'None' for {kind} services"))
    if kind == "ExternalName":
        for f in ("clusterIPs", "ipFamilies", "ipFamilyPolicy"):
            if spec.get(f):
                out.append(forbidden(child("spec", f), "may not be set for ExternalName services"))
        cname = spec.get("externalName", "").removesuffix(".")
        if cname:
            out += name_field("spec.externalName", cname, names.dns1123_subdomain_errors)
        else:
            out.append(required("spec.externalName"))
    return out


def _affinity(spec: dict[str, Any]) -> list[FieldError]:
    out = enum("spec.sessionAffinity", spec.get("sessionAffinity"), AFFINITIES)
    config = spec.get("sessionAffinityConfig")
    if spec.get("sessionAffinity") == "ClientIP":
        at = "spec.sessionAffinityConfig"
        why = "when session affinity type is ClientIP"
        if config is None:
            return out + [required(at, why)]
        if config.get("clientIP") is None:
            return out + [required(child(at, "clientIP"), why)]
        timeout = config["clientIP"].get("timeoutSeconds")
        if timeout is None:
            return out + [required(child(at, "clientIP", "timeoutSeconds"), why)]
        if not 0 < timeout <= MAX_AFFINITY_TIMEOUT:
            out.append(invalid(child(at, "clientIP", "timeoutSeconds"), timeout,
                               f"must be greater than 0 and less than {MAX_AFFINITY_TIMEOUT}"))
    elif spec.get("sessionAffinity") == "None" and config is not None:
        out.append(forbidden("spec.sessionAffinityConfig", "must not be set when session affinity is None"))
    return out


def _cluster_ips(spec: dict[str, Any]) -> list[FieldError]:
    """ValidateServiceClusterIPsRelatedFields (single-stack: at most one IP per family)."""
    if spec.get("type") == "ExternalName":
        return []
    ip, ips = spec.get("clusterIP", ""), spec.get("clusterIPs") or []
    out: list[FieldError] = []
    if ip and not ips:
        out.append(required("spec.clusterIPs"))
    elif ip and ips[0] != ip:
        out.append(invalid("spec.clusterIPs", ips, "first value must match `clusterIP`"))
    elif not ip and ips:
        out.append(invalid("spec.clusterIPs", ips, "must be empty when `clusterIP` is not specified"))
    seen: set[str] = set()
    for i, family in enumerate(spec.get("ipFamilies") or []):
        if family not in IP_FAMILIES:
            out.append(not_supported(index("spec.ipFamilies", i), family, IP_FAMILIES))
        if family in seen:
            out.append(duplicate(index("spec.ipFamilies", i), family))
        seen.add(family)
    if spec.get("ipFamilyPolicy") is not None:
        out += enum("spec.ipFamilyPolicy", spec["ipFamilyPolicy"], IP_FAMILY_POLICIES, needed=False)
    bad = False
    for i, value in enumerate(ips):
        if i == 0 and value == "None":
            if len(ips) > 1:
                bad = True
                out.append(invalid("spec.clusterIPs", ips, "'None' must be the first and only value"))
            continue
        problems = ip_errors(index("spec.clusterIPs", i), value)
        bad = bad or bool(problems)
        out += problems
    if len(ips) > 2:
        out.append(invalid("spec.clusterIPs", ips, "may only hold up to 2 values"))
    if bad:
        return out
    if len(ips) > 1 and (":" in ips[0]) == (":" in ips[1]):
        out.append(invalid("spec.clusterIPs", ips, "may specify no more than one IP for each IP family"))
    families = spec.get("ipFamilies") or []
    if not _headless(spec):
        for i, (value, family) in enumerate(zip(ips, families)):
            if family == "IPv4" and ":" in value:
                out.append(invalid(index("spec.clusterIPs", i), value,
                                   f"expected an IPv4 value as indicated by `ipFamilies[{i}]`"))
            if family == "IPv6" and ":" not in value:
                out.append(invalid(index("spec.clusterIPs", i), value,
                                   f"expected an IPv6 value as indicated by `ipFamilies[{i}]`"))
    return out


def _node_ports(spec: dict[str, Any]) -> list[FieldError]:
    out: list[FieldError] = []
    seen_node: set[tuple[str, int]] = set()
    seen_port: set[tuple[str, int]] = set()
    for i, p in enumerate(spec.get("ports") or []):
        at, node_port = index("spec.ports", i), p.get("nodePort", 0)
        if node_port and spec.get("type") in ("ClusterIP", "ExternalName"):
            out.append(forbidden(child(at, "nodePort"), f"may not be used when `type` is '{spec['type']}'"))
        if node_port:
            out += port_number(child(at, "nodePort"), node_port)
            if (p.get("protocol", ""), node_port) in seen_node:
                out.append(duplicate(child(at, "nodePort"), node_port))
            seen_node.add((p.get("protocol", ""), node_port))
        pair = (p.get("protocol", ""), p.get("port", 0))
        if pair in seen_port:
            out.append(duplicate(at, {"port": pair[1], "protocol": pair[0]}))
        seen_port.add(pair)
    return out


def _load_balancer(spec: dict[str, Any]) -> list[FieldError]:
    out: list[FieldError] = []
    is_lb = spec.get("type") == "LoadBalancer"
    ranges = spec.get("loadBalancerSourceRanges") or []
    if ranges and not is_lb:       # the API server's own capital L
        out.append(forbidden("spec.LoadBalancerSourceRanges", "may only be used when `type` is 'LoadBalancer'"))
    for i, value in enumerate(ranges):
        out += cidr_errors(index("spec.LoadBalancerSourceRanges", i), value.strip())
    if spec.get("allocateLoadBalancerNodePorts") is not None and not is_lb:
        out.append(forbidden("spec.allocateLoadBalancerNodePorts", "may only be used when `type` is 'LoadBalancer'"))
    if is_lb and spec.get("allocateLoadBalancerNodePorts") is None:
        out.append(required("allocateLoadBalancerNodePorts"))
    return out


def _traffic_policies(spec: dict[str, Any]) -> list[FieldError]:
    out: list[FieldError] = []
    etp = spec.get("externalTrafficPolicy", "")
    if not externally_accessible(spec):
        if etp:
            out.append(invalid("spec.externalTrafficPolicy", etp, "may only be set for externally-accessible services"))
    else:
        out += enum("spec.externalTrafficPolicy", etp, TRAFFIC_POLICIES)
    hc = spec.get("healthCheckNodePort", 0)
    needs_hc = spec.get("type") == "LoadBalancer" and etp == "Local"
    if not needs_hc and hc:
        out.append(invalid("spec.healthCheckNodePort", hc,
                           "may only be set when `type` is 'LoadBalancer' and `externalTrafficPolicy` is 'Local'"))
    elif needs_hc and hc:
        out += port_number("spec.healthCheckNodePort", hc)
    itp = spec.get("internalTrafficPolicy")
    if itp is None and spec.get("type") in ("ClusterIP", "NodePort", "LoadBalancer"):
        out.append(required("spec.internalTrafficPolicy"))
    elif itp is not None and itp not in TRAFFIC_POLICIES:
        out.append(not_supported("spec.internalTrafficPolicy", itp, TRAFFIC_POLICIES))
    if spec.get("trafficDistribution") not in (None, "PreferClose"):
        out.append(not_supported("spec.trafficDistribution", spec["trafficDistribution"], ["PreferClose"]))
    return out


def service_spec(spec: dict[str, Any]) -> list[FieldError]:
    out: list[FieldError] = []
    if not spec.get("ports") and not _headless(spec) and spec.get("type") != "ExternalName":
        out.append(required("spec.ports"))
    out += _by_type(spec)
    out += _ports(spec)
    if spec.get("selector") is not None:
        out += labels("spec.selector", spec["selector"])
    out += _affinity(spec)
    out += _cluster_ips(spec)
    for i, value in enumerate(spec.get("externalIPs") or []):
        at = index("spec.externalIPs", i)
        out += ip_errors(at, value) or non_special_ip(at, value)
    out += enum("spec.type", spec.get("type"), TYPES)
    out += _node_ports(spec)
    out += _load_balancer(spec)
    return out + _traffic_policies(spec)


def _update(spec: dict[str, Any], was: dict[str, Any]) -> list[FieldError]:
    """validateUpgradeDowngradeClusterIPs/IPFamilies for a single-stack cluster: a primary
    IP or family, once set, stays."""
    if "ExternalName" in (spec.get("type"), was.get("type")):
        return []
    out: list[FieldError] = []
    ips, old_ips = spec.get("clusterIPs") or [], was.get("clusterIPs") or []
    if ips and old_ips and not (_headless(spec) and _headless(was)):
        for i, (a, b) in enumerate(zip(ips, old_ips)):
            if a != b:
                out.append(invalid(index("spec.clusterIPs", i), ips, "may not change once set"))
    fams, old_fams = spec.get("ipFamilies") or [], was.get("ipFamilies") or []
    if fams and old_fams and _headless(spec) == _headless(was) and not _headless(spec) and fams[0] != old_fams[0]:
        out.append(invalid("spec.ipFamilies[0]", fams, "may not change once set"))
    both_hc = all(s.get("type") == "LoadBalancer" and s.get("externalTrafficPolicy") == "Local" for s in (spec, was))
    hc = spec.get("healthCheckNodePort")
    if both_hc and hc and hc != was.get("healthCheckNodePort"):
        out.append(forbidden("spec.healthCheckNodePort", IMMUTABLE))
    return out


def validate(obj: dict[str, Any], old: dict[str, Any] | None) -> list[FieldError]:
    spec = obj.get("spec") or {}
    out = _update(spec, old.get("spec") or {}) if old is not None else []
    return out + service_spec(spec)
