"""NetworkPolicy and Ingress validation (networking.k8s.io/v1)."""

from __future__ import annotations

from typing import Any

from tulle.cluster import names
from tulle.cluster.errors import FieldError, duplicate, forbidden, invalid, not_supported, required
from tulle.cluster.fieldpath import child, index
from tulle.cluster.validation.common import (cidr_errors, each, name_field, parse_cidr, parse_ip,
                                             port_number, protocol)
from tulle.cluster.validation.meta import label_selector

POLICY_TYPES = ["Ingress", "Egress"]
PATH_TYPES = ["Exact", "ImplementationSpecific", "Prefix"]
BAD_PATH_PARTS = ("//", "/./", "/../", "%2f", "%2F")
BAD_PATH_ENDS = ("/..", "/.")
INGRESS_CLASS_ANNOTATION = "kubernetes.io/ingress.class"

# -- NetworkPolicy -----------------------------------------------------------------


def _policy_port(path: str, port: dict[str, Any]) -> list[FieldError]:
    out = protocol(child(path, "protocol"), port.get("protocol"), needed=False)
    number, end = port.get("port"), port.get("endPort")
    if isinstance(number, int):
        out += port_number(child(path, "port"), number)
        if end is not None:
            if end < number:
                out.append(invalid(child(path, "endPort"), end, "must be greater than or equal to `port`"))
            out += port_number(child(path, "endPort"), end)
    elif number is not None:
        if end is not None:
            out.append(invalid(child(path, "endPort"), end, "may not be specified when `port` is non-numeric"))
        out += each(child(path, "port"), number, names.port_name_errors(number))
    elif end is not None:
        out.append(invalid(child(path, "endPort"), end, "may not be specified when `port` is not specified"))
    return out


def _ip_block(path: str, block: dict[str, Any]) -> list[FieldError]:
    cidr = block.get("cidr", "")
    if not cidr:
        return [required(child(path, "cidr"))]
    out = cidr_errors(child(path, "cidr"), cidr, canonical=False)
    outer = parse_cidr(cidr)
    if outer is None:
        return out
    for i, value in enumerate(block.get("except") or []):
        at = index(child(path, "except"), i)
        out += cidr_errors(at, value, canonical=False)
        inner = parse_cidr(value)
        if inner is not None and (inner.version != outer.version or inner.network_address not in outer
                                  or outer.prefixlen >= inner.prefixlen):
            out.append(invalid(at, value, "must be a strict subset of `cidr`"))
    return out


def _peer(path: str, peer: dict[str, Any]) -> list[FieldError]:
    out: list[FieldError] = []
    for name in ("podSelector", "namespaceSelector"):
        if peer.get(name) is not None:
            out += label_selector(child(path, name), peer[name])
    if peer.get("ipBlock") is not None:
        out += _ip_block(child(path, "ipBlock"), peer["ipBlock"])
    count = sum(peer.get(k) is not None for k in ("podSelector", "namespaceSelector", "ipBlock"))
    if count == 0:
        out.append(required(path, "must specify a peer"))
    elif count > 1 and peer.get("ipBlock") is not None:
        out.append(forbidden(path, "may not specify both ipBlock and another peer"))
    return out


def validate_network_policy(obj: dict[str, Any], old: dict[str, Any] | None) -> list[FieldError]:
    spec = obj.get("spec") or {}
    if spec.get("podSelector") is None:
        out = [required("spec.podSelector", "an empty selector ({}) selects every pod in the namespace")]
    else:
        out = label_selector("spec.podSelector", spec["podSelector"])
    for direction, peers in (("ingress", "from"), ("egress", "to")):
        for i, rule in enumerate(spec.get(direction) or []):
            at = index(child("spec", direction), i)
            for j, port in enumerate(rule.get("ports") or []):
                out += _policy_port(index(child(at, "ports"), j), port)
            for j, peer in enumerate(rule.get(peers) or []):
                out += _peer(index(child(at, peers), j), peer)
    types = spec.get("policyTypes") or []
    if len(types) > len(POLICY_TYPES):
        return out + [invalid("spec.policyTypes", types, "may not specify more than two policyTypes")]
    for i, value in enumerate(types):
        if value not in POLICY_TYPES:
            out.append(not_supported(index("spec.policyTypes", i), value, POLICY_TYPES))
        elif value in types[:i]:         # tulle's rule: the API server lets a repeat pass
            out.append(duplicate(index("spec.policyTypes", i), value))
    return out


# -- Ingress -------------------------------------------------------------------------


def _backend(path: str, backend: dict[str, Any]) -> list[FieldError]:
    service, resource = backend.get("service"), backend.get("resource")
    if service is not None and resource is not None:
        return [invalid(path, "", "cannot set both resource and service backends")]
    if resource is not None:
        out = []
        if resource.get("apiGroup"):
            out += name_field(child(path, "resource", "apiGroup"), resource["apiGroup"],
                              names.dns1123_subdomain_errors)
        for f in ("kind", "name"):
            if not resource.get(f):
                out.append(required(child(path, "resource", f)))
        return out
    if service is None:
        return [invalid(path, "", "resource or service backend is required")]
    out = []
    if not service.get("name"):
        out.append(required(child(path, "service", "name")))
    else:
        out += name_field(child(path, "service", "name"), service["name"], names.dns1035_label_errors)
    port = service.get("port") or {}
    name, number = port.get("name", ""), port.get("number", 0)
    if name and number:
        out.append(invalid(path, "", "cannot set both port name & port number"))
    elif name:
        out += each(child(path, "service", "port", "name"), name, names.port_name_errors(name))
    elif number:
        out += port_number(child(path, "service", "port", "number"), number)
    else:
        out.append(required(path, "port name or number is required"))
    return out


def _http_path(path: str, item: dict[str, Any]) -> list[FieldError]:
    kind, value = item.get("pathType"), item.get("path", "")
    if kind is None:
        return [required(child(path, "pathType"), "pathType must be specified")]
    out: list[FieldError] = []
    at = child(path, "path")
    if kind in ("Exact", "Prefix"):
        if not value.startswith("/"):
            out.append(invalid(at, value, "must be an absolute path"))
        out += [invalid(at, value, f"must not contain '{bad}'") for bad in BAD_PATH_PARTS if bad in value]
        out += [invalid(at, value, f"cannot end with '{bad}'") for bad in BAD_PATH_ENDS if value.endswith(bad)]
    elif kind == "ImplementationSpecific":
        if value and not value.startswith("/"):
            out.append(invalid(at, value, "must be an absolute path"))
    else:
        out.append(not_supported(child(path, "pathType"), kind, PATH_TYPES))
    return out + _backend(child(path, "backend"), item.get("backend") or {})


def _hostname(path: str, host: str) -> list[FieldError]:
    """A DNS subdomain, or a wildcard one (`*.` as its first label only)."""
    rule = names.wildcard_dns1123_subdomain_errors if "*" in host else names.dns1123_subdomain_errors
    return name_field(path, host, rule)


def _host(path: str, host: str) -> list[FieldError]:
    out = [invalid(path, host, "must be a DNS name, not an IP address")] if parse_ip(host) is not None else []
    return out + _hostname(path, host)


def validate_ingress(obj: dict[str, Any], old: dict[str, Any] | None) -> list[FieldError]:
    spec = obj.get("spec") or {}
    rules, default = spec.get("rules") or [], spec.get("defaultBackend")
    out: list[FieldError] = []
    if not rules and default is None:
        out.append(invalid("spec", spec.get("rules"), "either `defaultBackend` or `rules` must be specified"))
    if default is not None:
        out += _backend("spec.defaultBackend", default)
    for i, rule in enumerate(rules):
        at = index("spec.rules", i)
        if rule.get("host"):
            out += _host(child(at, "host"), rule["host"])
        http = rule.get("http")
        if http is not None:
            paths = http.get("paths") or []
            if not paths:
                out.append(required(child(at, "http", "paths")))
            for j, item in enumerate(paths):
                out += _http_path(index(child(at, "http", "paths"), j), item)
    for i, tls in enumerate(spec.get("tls") or []):
        at = index("spec.tls", i)
        for j, host in enumerate(tls.get("hosts") or []):
            out += _hostname(index(child(at, "hosts"), j), host)
        if tls.get("secretName"):
            out += name_field(child(at, "secretName"), tls["secretName"], names.dns1123_subdomain_errors)
    if spec.get("ingressClassName") is not None:
        out += name_field("spec.ingressClassName", spec["ingressClassName"], names.dns1123_subdomain_errors)
    annotated = ((obj.get("metadata") or {}).get("annotations") or {}).get(INGRESS_CLASS_ANNOTATION)
    if old is None and annotated is not None and spec.get("ingressClassName") not in (None, annotated):
        out.append(invalid(child("annotations", INGRESS_CLASS_ANNOTATION), annotated,
                           "must match `ingressClassName` when both are specified"))
    return out
