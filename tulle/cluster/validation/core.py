"""Namespace and Secret validation (core/v1): beyond metadata, a Secret's keys, its
size, and the keys each well-known type needs."""

from __future__ import annotations

import base64
import json
from typing import Any

from tulle.cluster import names
from tulle.cluster.errors import FieldError, forbidden, invalid, required, too_long
from tulle.cluster.fieldpath import key
from tulle.cluster.validation.common import IMMUTABLE, each, immutable
from tulle.cluster.validation.meta import finalizers

MAX_SECRET_SIZE = 1024 * 1024
REDACTED = "<secret contents redacted>"

# type → the data keys it needs (all of them, or — basic-auth — at least one)
_NEEDS_ALL = {
    "kubernetes.io/tls": ("tls.crt", "tls.key"),
    "kubernetes.io/ssh-auth": ("ssh-privatekey",),
    "kubernetes.io/dockercfg": (".dockercfg",),
    "kubernetes.io/dockerconfigjson": (".dockerconfigjson",),
}
_JSON_KEYS = (".dockercfg", ".dockerconfigjson")


def validate_namespace(obj: dict[str, Any], old: dict[str, Any] | None) -> list[FieldError]:
    return finalizers("spec.finalizers", (obj.get("spec") or {}).get("finalizers"), indexed=False)


def _decoded(data: dict[str, str]) -> dict[str, bytes]:
    return {k: base64.b64decode(v.replace("\n", "").replace("\r", "")) for k, v in data.items()}


def _by_type(kind: str, data: dict[str, bytes], meta: dict[str, Any]) -> list[FieldError]:
    if kind == "kubernetes.io/service-account-token":
        name_key = "kubernetes.io/service-account.name"
        if not (meta.get("annotations") or {}).get(name_key):
            return [required(key("metadata.annotations", name_key))]
        return []
    if kind == "kubernetes.io/basic-auth":
        if "username" not in data and "password" not in data:
            return [required(key("data", "username")), required(key("data", "password"))]
        return []
    out = []
    for k in _NEEDS_ALL.get(kind, ()):
        if k not in data or (kind == "kubernetes.io/ssh-auth" and not data[k]):
            out.append(required(key("data", k)))
        elif k in _JSON_KEYS:
            try:
                if not isinstance(json.loads(data[k]), dict):
                    raise ValueError("must be a JSON object")
            except ValueError as e:
                out.append(invalid(key("data", k), REDACTED, str(e)))
    return out


def validate_secret(obj: dict[str, Any], old: dict[str, Any] | None) -> list[FieldError]:
    data = _decoded(obj.get("data") or {})
    out: list[FieldError] = []
    for k in data:
        out += each(key("data", k), k, names.config_map_key_errors(k))
    if sum(len(v) for v in data.values()) > MAX_SECRET_SIZE:
        out.append(too_long("data", MAX_SECRET_SIZE))
    out += _by_type(obj.get("type", ""), data, obj.get("metadata") or {})
    if old is not None:
        out += immutable("type", obj.get("type", ""), old.get("type", ""))
        if old.get("immutable") is True:
            why = f"{IMMUTABLE} when `immutable` is set"
            if obj.get("immutable") is not True:
                out.append(forbidden("immutable", why))
            if (obj.get("data") or {}) != (old.get("data") or {}):
                out.append(forbidden("data", why))
    return out
