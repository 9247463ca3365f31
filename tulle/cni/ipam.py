"""Delegating address management to the IPAM plugin named in `ipam.type`,
and applying its result to an interface inside the pod."""

from __future__ import annotations

from tulle.cni import delegate, keys
from tulle.cni.errors import INVALID_CONFIG, CNIError
from tulle.cni.skel import Call
from tulle.cni.types import Result


def ipam_type(call: Call) -> str | None:
    """The IPAM plugin's type, or None for an L2-only config (`"ipam": {}` or absent)."""
    ipam = call.fields.raw("ipam")
    if ipam is None:
        return None
    if not isinstance(ipam, dict):
        raise CNIError(INVALID_CONFIG, "ipam must be an object")
    kind = keys.get(ipam, "type")
    if kind is None:
        return None
    if not isinstance(kind, str) or not kind:
        raise CNIError(INVALID_CONFIG, "ipam.type must be a non-empty string")
    return kind


def add(call: Call) -> Result:
    kind = ipam_type(call)
    if kind is None:
        return Result(cni_version=call.version)
    result = delegate.invoke(call, kind, "ADD")
    assert result is not None
    return result


def delete(call: Call) -> None:
    kind = ipam_type(call)
    if kind is not None:
        delegate.invoke(call, kind, "DEL")


def check(call: Call) -> None:
    kind = ipam_type(call)
    if kind is not None:
        delegate.invoke(call, kind, "CHECK")


def gc(call: Call) -> None:
    kind = ipam_type(call)
    if kind is not None:
        delegate.invoke(call, kind, "GC")
