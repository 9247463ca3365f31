"""What the object API does to every object it is asked to write, in the API
server's order: decode (unknown fields dropped with warnings, wrong JSON types
refused), apply defaults, on update drop what the strategy drops (strategy.py),
validate (on update, against the stored object).

    obj, warnings = prepare(manifest)            # create
    obj, warnings = prepare(manifest, stored)    # update

Raises Invalid (errors.py) with every field error, or BadRequest (kinds.of) for a
kind the cluster does not serve.
"""

from __future__ import annotations

from typing import Any

from tulle.cluster import defaults, kinds, schema, strategy
from tulle.cluster.errors import FieldError, Invalid
from tulle.cluster.validation import validate


def _refuse(obj: dict[str, Any], errors: list[FieldError]) -> Invalid:
    name = (obj.get("metadata") or {}).get("name") or (obj.get("metadata") or {}).get("generateName") or ""
    return Invalid(str(obj.get("kind", "")), str(name), errors)


def prepare(obj: dict[str, Any], old: dict[str, Any] | None = None) -> tuple[dict[str, Any], list[str]]:
    """(the object as it would be stored, the warnings to show); `obj` is not changed."""
    kinds.of(str(obj.get("apiVersion", "")), str(obj.get("kind", "")))
    clean, warnings, wrong = schema.inspect(obj)
    if wrong:
        raise _refuse(obj, wrong)
    ready = defaults.apply(clean)
    if old is not None:
        strategy.prepare_update(ready, old)
    errors = validate(ready, old)
    if errors:
        raise _refuse(ready, errors)
    return ready, warnings
