"""API errors in the API server's words.

A rejected object answers like kube-apiserver: the reason (NotFound, AlreadyExists,
Conflict, Invalid, BadRequest) and, for Invalid, every field error with its path and
rule, e.g.

    The Service "web" is invalid: spec.ports[0].port: Invalid value: 70000: must be
    between 1 and 65535, inclusive

`FieldError` mirrors apimachinery's `field.Error` (its types and their wording) so a
user who knows kubectl's messages reads ours the same way.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from tulle.errors import TulleError

# field.ErrorType → the words kubectl prints for it
REQUIRED = "Required value"
INVALID = "Invalid value"
NOT_SUPPORTED = "Unsupported value"
DUPLICATE = "Duplicate value"
FORBIDDEN = "Forbidden"
TOO_LONG = "Too long"
TOO_MANY = "Too many"
NOT_FOUND = "Not found"


def _show(value: Any) -> str:
    """A value as the API server quotes it: strings in double quotes, the rest as the
    compact JSON Go's encoding/json writes (`{"app":"web"}`)."""
    if isinstance(value, str):
        return json.dumps(value)
    try:
        return json.dumps(value, sort_keys=True, separators=(",", ":"))
    except (TypeError, ValueError):
        return repr(value)


@dataclass(frozen=True)
class FieldError:
    """One broken rule at one field path (`spec.ports[0].port`)."""

    path: str
    type: str
    value: Any = None
    detail: str = ""

    def __str__(self) -> str:
        body = self.type if self.type in _NO_VALUE else f"{self.type}: {_show(self.value)}"
        return f"{self.path}: {body}" + (f": {self.detail}" if self.detail else "")


_NO_VALUE = (REQUIRED, FORBIDDEN, TOO_LONG)   # apimachinery prints no value for these


def required(path: str, detail: str = "") -> FieldError:
    return FieldError(path, REQUIRED, None, detail)


def invalid(path: str, value: Any, detail: str) -> FieldError:
    return FieldError(path, INVALID, value, detail)


def not_supported(path: str, value: Any, supported: list[str]) -> FieldError:
    quoted = ", ".join(json.dumps(s) for s in supported)
    return FieldError(path, NOT_SUPPORTED, value, f"supported values: {quoted}")


def duplicate(path: str, value: Any) -> FieldError:
    return FieldError(path, DUPLICATE, value)


def forbidden(path: str, detail: str) -> FieldError:
    return FieldError(path, FORBIDDEN, None, detail)


def too_many(path: str, have: int, most: int) -> FieldError:
    return FieldError(path, TOO_MANY, have, f"must have at most {most} items")


def too_long(path: str, most: int) -> FieldError:
    """A value over a byte limit (the value itself is not shown, as apimachinery omits it)."""
    return FieldError(path, TOO_LONG, None, f"may not be more than {most} byte{'' if most == 1 else 's'}")


def not_found(path: str, value: Any) -> FieldError:
    return FieldError(path, NOT_FOUND, value)


class ApiError(TulleError):
    """A request the object API refused; `reason` and `code` as in a metav1.Status."""

    reason = "InternalError"
    code = 500

    def status(self) -> dict[str, Any]:
        """The metav1.Status body kubectl would receive."""
        return {"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": self.msg,
                "reason": self.reason, "code": self.code}


class BadRequest(ApiError):
    """The manifest cannot be read at all (not YAML/JSON, no kind, unknown kind)."""

    reason, code = "BadRequest", 400


class NotFound(ApiError):
    reason, code = "NotFound", 404


class AlreadyExists(ApiError):
    reason, code = "AlreadyExists", 409


class Conflict(ApiError):
    """An update from a stale resourceVersion (someone wrote in between): read again, retry."""

    reason, code = "Conflict", 409


class Invalid(ApiError):
    """Validation failed; `errors` holds every field error."""

    reason, code = "Invalid", 422

    def __init__(self, kind: str, name: str, errors: list[FieldError]) -> None:
        self.kind, self.name, self.errors = kind, name, list(errors)
        shown = str(self.errors[0]) if len(self.errors) == 1 else \
            "[" + ", ".join(str(e) for e in self.errors) + "]"
        super().__init__(f'The {kind} "{name}" is invalid: {shown}')


def not_found_error(resource: str, name: str) -> NotFound:
    """`Error from server (NotFound): services "web" not found` (kubectl's words)."""
    return NotFound(f'{resource} "{name}" not found')


def already_exists_error(resource: str, name: str) -> AlreadyExists:
    return AlreadyExists(f'{resource} "{name}" already exists')


def conflict_error(resource: str, name: str) -> Conflict:
    return Conflict(f'Operation cannot be fulfilled on {resource} "{name}": the object has been '
                    f'modified; please apply your changes to the latest version and try again')
