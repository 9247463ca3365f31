"""CNI error codes and the error object printed on stdout.

Codes 1-99 are the spec's (SPEC.md "Error"); 100 and up are tulle's own:

  100  the kernel refused a change (netlink, nft or tc; the message says which)
  101  the interface (or host device) already exists
  102  the address range is exhausted
  103  CHECK found drift between the live state and the ADD result
  104  a required object does not exist (master device, bridge port, ...)
  999  an unexpected internal failure (a bug: please report it with stderr)
"""

from __future__ import annotations

import json

from tulle import errors

INCOMPATIBLE_VERSION = 1
UNSUPPORTED_FIELD = 2
UNKNOWN_CONTAINER = 3
INVALID_ENV = 4
IO_FAILURE = 5
DECODE_FAILURE = 6
INVALID_CONFIG = 7
TRY_AGAIN = 11
NOT_AVAILABLE = 50
LIMITED_CONNECTIVITY = 51

KERNEL = 100
EXISTS = 101
EXHAUSTED = 102
CHECK_FAILED = 103
NOT_FOUND = 104
INTERNAL = 999


class CNIError(errors.TulleError):
    """An error with a CNI code, ready to be printed as the spec asks."""

    def __init__(self, code: int, msg: str, details: str = "") -> None:
        super().__init__(msg, details)
        self.code = code

    def to_dict(self, cni_version: str) -> dict:
        out: dict = {"cniVersion": cni_version, "code": self.code, "msg": self.msg}
        if self.details:
            out["details"] = self.details
        return out

    def to_json(self, cni_version: str) -> bytes:
        return json.dumps(self.to_dict(cni_version)).encode()

    @classmethod
    def from_dict(cls, d: object) -> "CNIError":
        """Another plugin's error object; ValueError when it is not one (callers then
        report the raw output), never a TypeError from int() of a list."""
        if not isinstance(d, dict):
            raise ValueError(f"a CNI error must be an object, got {type(d).__name__}")
        code = d.get("code", INTERNAL)
        if isinstance(code, bool) or not isinstance(code, int):
            raise ValueError(f"a CNI error code must be an integer, got {code!r}"[:120])
        return cls(code, str(d.get("msg", "")), str(d.get("details", "")))


_CODES: list[tuple[type[errors.TulleError], int]] = [
    (errors.ConfigError, INVALID_CONFIG),
    (errors.ExistsError, EXISTS),
    (errors.ExhaustedError, EXHAUSTED),
    (errors.CheckFailed, CHECK_FAILED),
    (errors.NotFoundError, NOT_FOUND),
    (errors.KernelError, KERNEL),
    (errors.TryAgain, TRY_AGAIN),
]


def from_exception(exc: BaseException) -> CNIError:
    """Map any exception onto a CNIError (unknown ones become 999)."""
    if isinstance(exc, CNIError):
        return exc
    if isinstance(exc, errors.TulleError):
        for cls, code in _CODES:
            if isinstance(exc, cls):
                return CNIError(code, exc.msg, exc.details)
        return CNIError(INTERNAL, exc.msg, exc.details)
    if isinstance(exc, OSError):
        return CNIError(IO_FAILURE, f"I/O failure: {exc}")
    return CNIError(INTERNAL, f"internal error: {type(exc).__name__}: {exc}")
