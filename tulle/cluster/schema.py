"""Which fields each kind has, and what an object looks like with only those.

The schemas themselves are declarative, one module per API group in
tulle.cluster.shapes. Here is what the API layer asks of them:

- `prune(obj)`: a copy without unknown fields, plus the warnings kube-apiserver
  sends for them (`unknown field "spec.ports[0].bogus"`). `kubectl apply` prints
  those and still creates the object; so do we.
- `check_types(obj)`: a FieldError for every value of the wrong JSON type
  (`spec.ports[0].port: Invalid value: "80": must be an integer`), which the API
  server would refuse to decode.
- `inspect(obj)`: both in one pass, for `prepare`.

An unknown kind is BadRequest (kinds.of), before any field is looked at.
"""

from __future__ import annotations

from typing import Any

from tulle.cluster import kinds
from tulle.cluster.errors import FieldError
from tulle.cluster.fieldtypes import Findings, Obj
from tulle.cluster.shapes import SCHEMAS


def schema_of(obj: dict[str, Any]) -> Obj:
    k = kinds.of(str(obj.get("apiVersion", "")), str(obj.get("kind", "")))
    return SCHEMAS[(k.api_version, k.kind)]


def inspect(obj: dict[str, Any]) -> tuple[dict[str, Any], list[str], list[FieldError]]:
    """(pruned copy, unknown-field warnings, type errors) of one object."""
    found = Findings()
    clean = schema_of(obj).walk(obj, "", found)
    return clean, found.warnings, found.errors


def prune(obj: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    clean, warnings, _ = inspect(obj)
    return clean, warnings


def check_types(obj: dict[str, Any]) -> list[FieldError]:
    return inspect(obj)[2]
