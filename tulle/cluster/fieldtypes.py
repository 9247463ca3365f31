"""The small vocabulary the object schemas are written in (tulle.cluster.shapes).

A schema is a tree of these types, one per JSON type the Kubernetes API uses:
`Obj` (a struct: known fields), `ListOf`, `MapOf` (string keys), `Str`, `Int`,
`Bool`, `IntOrStr` (intstr.IntOrString), `Time`/`MicroTime` (metav1.Time and
MicroTime, RFC 3339 strings) and `Base64` (a []byte field: base64 in JSON). An
`Obj(..., open=True)` — `OPEN` when it names no field — is kept whole: the parts of
the API tulle carries but does not model (volume sources, probes, resources).

`walk` does in one pass what the API server's decoder does: it copies the value,
drops unknown fields with the warning kube-apiserver sends (`unknown field
"spec.foo"`), drops nulls (Go decodes them as "unset"), and reports a value of the
wrong JSON type as a FieldError — where the API server would refuse to decode at
all, we say which field and why.
"""

from __future__ import annotations

import copy
import datetime
import re
from dataclasses import dataclass, field
from typing import Any

from tulle.cluster import errors
from tulle.cluster.errors import FieldError
from tulle.cluster.fieldpath import child, index, key


@dataclass
class Findings:
    """What a walk noticed: warnings (unknown fields) and type errors."""

    warnings: list[str] = field(default_factory=list)
    errors: list[FieldError] = field(default_factory=list)

    def unknown(self, path: str) -> None:
        self.warnings.append(f'unknown field "{path}"')

    def wrong(self, path: str, value: Any, detail: str) -> None:
        self.errors.append(errors.invalid(path, value, detail))


class Type:
    """One node of a schema: `walk` returns the cleaned copy of `value`."""

    def walk(self, value: Any, path: str, found: Findings) -> Any:
        raise NotImplementedError


class _Scalar(Type):
    """A JSON scalar: `accept` says whether a value fits (and its clean form)."""

    need = ""            # the detail of the error when it does not

    def accept(self, value: Any) -> tuple[bool, Any]:
        raise NotImplementedError

    def walk(self, value: Any, path: str, found: Findings) -> Any:
        ok, clean = self.accept(value)
        if not ok:
            found.wrong(path, value, self.need)
        return clean


def _as_int(value: Any) -> int | None:
    """JSON numbers: 80 and 80.0 are the same integer (YAML→JSON writes 80.0 as 80)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


class Str(_Scalar):
    need = "must be a string"

    def accept(self, value: Any) -> tuple[bool, Any]:
        return isinstance(value, str), value


class Int(_Scalar):
    need = "must be an integer"

    def accept(self, value: Any) -> tuple[bool, Any]:
        n = _as_int(value)
        return n is not None, value if n is None else n


class Bool(_Scalar):
    need = "must be a boolean"

    def accept(self, value: Any) -> tuple[bool, Any]:
        return isinstance(value, bool), value


class IntOrStr(_Scalar):
    need = "must be an integer or a string"

    def accept(self, value: Any) -> tuple[bool, Any]:
        if isinstance(value, str):
            return True, value
        n = _as_int(value)
        return n is not None, value if n is None else n


_RFC3339 = re.compile(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)")


def _valid_time(value: str, fraction: int | None) -> bool:
    m = _RFC3339.fullmatch(value)
    if not m or (fraction is not None and len(m.group(7) or "") != fraction + 1):
        return False
    try:
        datetime.datetime(*(int(g) for g in m.groups()[:6]))
    except ValueError:
        return False
    return True


class Time(_Scalar):
    """metav1.Time: RFC 3339, fractional seconds allowed."""

    need = "must be an RFC 3339 time (e.g. 2006-01-02T15:04:05Z)"
    fraction: int | None = None

    def accept(self, value: Any) -> tuple[bool, Any]:
        return isinstance(value, str) and _valid_time(value, self.fraction), value


class MicroTime(Time):
    """metav1.MicroTime (Lease times): RFC 3339 with exactly six fractional digits."""

    need = "must be an RFC 3339 time with microseconds (e.g. 2006-01-02T15:04:05.000000Z)"
    fraction = 6


_B64 = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")


def base64_error_offset(src: str) -> int | None:
    """Where Go's base64.StdEncoding stops decoding `src` (None when it decodes): the
    byte offset its CorruptInputError names, so our message is the API server's.
    Newlines are skipped, as Go does."""
    si, n = 0, len(src)
    while True:
        j = 0
        while j < 4:
            if si == n:
                return None if j == 0 else si - j
            ch = src[si]
            si += 1
            if ch in _B64:
                j += 1
                continue
            if ch in "\r\n":
                continue
            if ch != "=" or j < 2:
                return si - 1
            if j == 2:                       # "==" expected: the first "=" is consumed
                while si < n and src[si] in "\r\n":
                    si += 1
                if si == n:
                    return n
                if src[si] != "=":
                    return si - 1
                si += 1
            while si < n and src[si] in "\r\n":
                si += 1
            return si if si < n else None    # anything after the padding is garbage


class Base64(Type):
    """A []byte field (Secret data): base64 in JSON; the contents never appear in errors."""

    def walk(self, value: Any, path: str, found: Findings) -> Any:
        if not isinstance(value, str):
            found.wrong(path, "<secret contents redacted>", "must be a base64-encoded string")
        elif (at := base64_error_offset(value)) is not None:
            found.wrong(path, "<secret contents redacted>", f"illegal base64 data at input byte {at}")
        return value


@dataclass
class Obj(Type):
    """A struct: `fields` by JSON name. `open` objects keep unknown fields quietly
    (for parts of the API tulle carries without modelling them)."""

    fields: dict[str, Type]
    open: bool = False

    def walk(self, value: Any, path: str, found: Findings) -> Any:
        if not isinstance(value, dict):
            found.wrong(path, value, "must be an object")
            return value
        out: dict[str, Any] = {}
        for name, item in value.items():
            if item is None:
                continue
            sub = self.fields.get(name)
            if sub is not None:
                out[name] = sub.walk(item, child(path, name), found)
            elif self.open:
                out[name] = copy.deepcopy(item)
            else:
                found.unknown(child(path, name))
        return out


@dataclass
class ListOf(Type):
    item: Type

    def walk(self, value: Any, path: str, found: Findings) -> Any:
        if not isinstance(value, list):
            found.wrong(path, value, "must be a list")
            return value
        return [self.item.walk(v, index(path, i), found) for i, v in enumerate(value)]


@dataclass
class MapOf(Type):
    value: Type

    def walk(self, value: Any, path: str, found: Findings) -> Any:
        if not isinstance(value, dict):
            found.wrong(path, value, "must be an object")
            return value
        return {str(k): self.value.walk(v, key(path, k), found) for k, v in value.items() if v is not None}


# Shared instances: the types hold no state, so schemas reuse these.
STR, INT, BOOL, INT_OR_STR = Str(), Int(), Bool(), IntOrStr()
TIME, MICRO_TIME, BASE64 = Time(), MicroTime(), Base64()
STRINGS = ListOf(STR)
STRING_MAP = MapOf(STR)
OPEN = Obj({}, open=True)
