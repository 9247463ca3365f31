"""Small valid objects of every kind, and the one-call checks the validation tests share."""

from __future__ import annotations

import copy
from typing import Any, Callable

from tulle.cluster import defaults, schema
from tulle.cluster.validation import validate

# Messages as kube-apiserver prints them (spelled out here, not imported, so the
# tests check the wording itself).
DNS_LABEL = ("a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and "
             "must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used "
             "for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')")
DNS_SUBDOMAIN = ("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or "
                 "'.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used "
                 "for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')")
DNS1035 = ("a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an "
           "alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', "
           "regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')")
KEY_NAME = ("name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end "
            "with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for "
            "validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')")
LABEL_VALUE = ("a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or "
               "'.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  "
               "or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')")
PORT_RANGE = "must be between 1 and 65535, inclusive"
PROTOCOLS = 'supported values: "SCTP", "TCP", "UDP"'


def pod(**spec: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web", "namespace": "default"},
            "spec": {"containers": [{"name": "c", "image": "nginx", "ports": [{"containerPort": 80}]}], **spec}}


def service(**spec: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "default"},
            "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}], **spec}}


def namespace(name: str = "dev") -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def secret(**fields: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": "default"}, **fields}


def endpoint_slice(**fields: Any) -> dict[str, Any]:
    body = {"addressType": "IPv4", "endpoints": [{"addresses": ["10.244.1.2"]}],
            "ports": [{"name": "http", "port": 8080}], **fields}
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": "web-abc", "namespace": "default",
                         "labels": {"kubernetes.io/service-name": "web"}}, **body}


def network_policy(**spec: Any) -> dict[str, Any]:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": "np", "namespace": "default"}, "spec": {"podSelector": {}, **spec}}


def backend(name: str = "web", number: int = 80) -> dict[str, Any]:
    return {"service": {"name": name, "port": {"number": number}}}


def ingress(**spec: Any) -> dict[str, Any]:
    rules = [{"host": "example.com", "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": backend()}]}}]
    return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": {"name": "ing", "namespace": "default"}, "spec": {"rules": rules, **spec}}


def deployment(**spec: Any) -> dict[str, Any]:
    template = {"metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "nginx"}]}}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "default"},
            "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": template, **spec}}


def lease(**spec: Any) -> dict[str, Any]:
    return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": "n1", "namespace": "kube-node-lease"},
            "spec": {"holderIdentity": "n1", "leaseDurationSeconds": 40, **spec}}


def changed(obj: dict[str, Any], change: Callable[[dict[str, Any]], Any]) -> dict[str, Any]:
    """A copy of obj with `change` applied to it."""
    out = copy.deepcopy(obj)
    change(out)
    return out


def stored(obj: dict[str, Any]) -> dict[str, Any]:
    """obj as the object API keeps it: defaulted, with server metadata."""
    out = defaults.apply(obj)
    out["metadata"].update(uid="u1", resourceVersion="7", creationTimestamp="2024-05-01T10:00:00Z")
    return out


def messages(obj: dict[str, Any], old: dict[str, Any] | None = None) -> list[str]:
    """Every error of obj (pruned and defaulted first, as `prepare` does), as printed."""
    clean, _ = schema.prune(obj)
    return [str(e) for e in validate(defaults.apply(clean), old)]
