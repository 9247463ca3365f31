"""Validation of API objects, rule for rule and word for word as kube-apiserver.

`validate(obj, old)` takes an object already pruned and defaulted (see
tulle.cluster.prepare) and returns every FieldError, like the API server's
ValidateX/ValidateXUpdate: metadata by the kind's name rule, then the kind's own
rules; `old` is the stored object on update. One module per API group (core is
split in pods, services and the rest); field rules they share are in `common`
and `meta`.
"""

from __future__ import annotations

from typing import Any, Callable

from tulle.cluster import kinds, names, schema
from tulle.cluster.errors import FieldError
from tulle.cluster.names import NameRule
from tulle.cluster.validation import apps, coordination, core, discovery, meta, networking, pods, services

Rules = Callable[[dict[str, Any], dict[str, Any] | None], list[FieldError]]

# kind → (its name rule, its own rules)
_KINDS: dict[str, tuple[NameRule, Rules]] = {
    "Namespace": (names.name_is_dns_label, core.validate_namespace),
    "Pod": (names.name_is_dns_subdomain, pods.validate),
    "Service": (names.name_is_dns1035_label, services.validate),
    "Secret": (names.name_is_dns_subdomain, core.validate_secret),
    "EndpointSlice": (names.name_is_dns_subdomain, discovery.validate),
    "NetworkPolicy": (names.name_is_dns_subdomain, networking.validate_network_policy),
    "Ingress": (names.name_is_dns_subdomain, networking.validate_ingress),
    "Deployment": (names.name_is_dns_subdomain, apps.validate),
    "Lease": (names.name_is_dns_subdomain, coordination.validate),
}


def validate(obj: dict[str, Any], old: dict[str, Any] | None = None) -> list[FieldError]:
    """Every rule `obj` breaks (empty when valid). A value of the wrong JSON type is
    reported alone: the other rules assume the types are right."""
    k = kinds.of(str(obj.get("apiVersion", "")), str(obj.get("kind", "")))
    wrong = schema.check_types(obj)
    if wrong:
        return wrong
    name_rule, rules = _KINDS[k.kind]
    md = obj.get("metadata") or {}
    out = meta.object_meta(md, k.namespaced, name_rule)
    if old is not None:
        out = meta.object_meta_update(md, old.get("metadata") or {}) + out
    return out + rules(obj, old)
