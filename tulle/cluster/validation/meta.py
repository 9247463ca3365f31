"""metadata and label selectors, as apimachinery validates them for every kind.

Paths follow the API server: label and annotation errors name the map
(`metadata.labels: Invalid value: "Bad Key": ...`), not the entry.
"""

from __future__ import annotations

import json
from typing import Any

from tulle.cluster import names
from tulle.cluster.errors import FieldError, forbidden, invalid, required, too_long
from tulle.cluster.fieldpath import child, index
from tulle.cluster.names import NameRule
from tulle.cluster.validation.common import each, immutable, non_negative

ANNOTATIONS_MAX = 256 * 1024           # bytes of all keys and values together
STANDARD_FINALIZERS = ("kubernetes", "orphan", "foregroundDeletion")
SELECTOR_OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")


def labels(path: str, value: dict[str, str] | None) -> list[FieldError]:
    out: list[FieldError] = []
    for k, v in (value or {}).items():
        out += each(path, k, names.qualified_name_errors(k))
        out += each(path, v, names.label_value_errors(v))
    return out


def annotations(path: str, value: dict[str, str] | None) -> list[FieldError]:
    value = value or {}
    out: list[FieldError] = []
    for k in value:
        out += each(path, k, names.qualified_name_errors(k.lower()))   # case does not matter here
    if sum(len(k.encode()) + len(v.encode()) for k, v in value.items()) > ANNOTATIONS_MAX:
        out.append(too_long(path, ANNOTATIONS_MAX))
    return out


def label_selector(path: str, selector: dict[str, Any] | None) -> list[FieldError]:
    """A metav1.LabelSelector: matchLabels as labels, each expression well formed."""
    if selector is None:
        return []
    out = labels(child(path, "matchLabels"), selector.get("matchLabels"))
    for i, expr in enumerate(selector.get("matchExpressions") or []):
        at = index(child(path, "matchExpressions"), i)
        op, values = expr.get("operator", ""), expr.get("values") or []
        if op in ("In", "NotIn") and not values:
            out.append(required(child(at, "values"), "must be specified when `operator` is 'In' or 'NotIn'"))
        elif op in ("Exists", "DoesNotExist") and values:
            out.append(forbidden(child(at, "values"),
                                 "may not be specified when `operator` is 'Exists' or 'DoesNotExist'"))
        elif op not in SELECTOR_OPERATORS:
            out.append(invalid(child(at, "operator"), op, "not a valid selector operator"))
        k = expr.get("key", "")
        out += each(child(at, "key"), k, names.qualified_name_errors(k))
        for j, v in enumerate(values):
            out += each(index(child(at, "values"), j), v, names.label_value_errors(v))
    return out


def _api_version_ok(value: str) -> bool:
    parts = value.split("/")
    return len(parts) <= 2 and bool(parts[-1])


def owner_references(path: str, refs: list[dict[str, Any]] | None) -> list[FieldError]:
    out: list[FieldError] = []
    controller = ""
    for i, ref in enumerate(refs or []):
        at = index(path, i)
        if not ref.get("apiVersion"):
            out.append(required(child(at, "apiVersion"), "must not be empty"))
        elif not _api_version_ok(ref["apiVersion"]):
            out.append(invalid(child(at, "apiVersion"), ref["apiVersion"], "must be <group>/<version> or <version>"))
        for f in ("kind", "name", "uid"):
            if not ref.get(f):
                out.append(required(child(at, f), "must not be empty"))
        if ref.get("controller"):
            this = f"{ref.get('kind', '')}/{ref.get('name', '')}"
            if controller:
                out.append(invalid(path, refs, "Only one reference can have Controller set to true. "
                                               f'Found "true" in references for {controller} and {this}'))
            else:
                controller = this
    return out


def finalizers(path: str, value: list[str] | None, indexed: bool = True) -> list[FieldError]:
    """Qualified names; one without a prefix must be a standard finalizer. The API server
    names the entry (`metadata.finalizers[0]`) for objects, the list for a Namespace's spec."""
    value = value or []
    out: list[FieldError] = []
    for i, name in enumerate(value):
        problems = names.qualified_name_errors(name)
        out += each(path, name, problems)
        if not problems and "/" not in name and name not in STANDARD_FINALIZERS:
            out.append(invalid(index(path, i) if indexed else path, name,
                               "name is neither a standard finalizer name nor is it fully qualified"))
    if "orphan" in value and "foregroundDeletion" in value:
        out.append(invalid(path, value, "finalizer orphan and foregroundDeletion cannot be both set"))
    return out


def object_meta(meta: dict[str, Any], namespaced: bool, name_rule: NameRule) -> list[FieldError]:
    """ValidateObjectMeta: the name by the kind's rule, the namespace, labels, annotations, ..."""
    out: list[FieldError] = []
    generate = meta.get("generateName", "")
    if generate:
        out += each("metadata.generateName", generate, name_rule(generate, True))
    name = meta.get("name", "")
    if name:
        out += each("metadata.name", name, name_rule(name, False))
    elif not generate:                    # the object API names it from generateName
        out.append(required("metadata.name", "name or generateName is required"))
    ns = meta.get("namespace", "")
    if namespaced and not ns:
        out.append(required("metadata.namespace"))
    elif namespaced:
        out += each("metadata.namespace", ns, names.name_is_dns_label(ns, False))
    elif ns:
        out.append(forbidden("metadata.namespace", "not allowed on this type"))
    out += non_negative("metadata.generation", meta.get("generation", 0))
    out += labels("metadata.labels", meta.get("labels"))
    out += annotations("metadata.annotations", meta.get("annotations"))
    out += owner_references("metadata.ownerReferences", meta.get("ownerReferences"))
    out += finalizers("metadata.finalizers", meta.get("finalizers"))
    return out


def object_meta_update(new: dict[str, Any], old: dict[str, Any]) -> list[FieldError]:
    """What an update may not change. Server-set fields the client left out are the
    object API's to carry over, so only a value the client did send is compared."""
    out = immutable("metadata.name", new.get("name", ""), old.get("name", ""))
    out += immutable("metadata.namespace", new.get("namespace", ""), old.get("namespace", ""))
    for f in ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds"):
        if new.get(f) not in (None, ""):
            out += immutable(child("metadata", f), new[f], old.get(f))
    if old.get("deletionTimestamp"):
        extra = sorted(set(new.get("finalizers") or []) - set(old.get("finalizers") or []))
        if extra:
            out.append(forbidden("metadata.finalizers", "no new finalizers can be added if the object is "
                                                        f"being deleted, found new finalizers {json.dumps(extra)}"))
    return out
