"""Which CNI spec versions tulle speaks, and what each one allows."""

from __future__ import annotations

from tulle.cni.errors import INCOMPATIBLE_VERSION, CNIError

SUPPORTED: tuple[str, ...] = ("0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")
LATEST = "1.1.0"


def parse(version: str) -> tuple[int, int, int]:
    """'1.0.0' -> (1, 0, 0); anything else is an incompatible-version error."""
    try:
        parts = tuple(int(p) for p in version.split("."))
    except (AttributeError, ValueError):
        raise CNIError(INCOMPATIBLE_VERSION, f"invalid cniVersion {version!r}") from None
    if len(parts) != 3:
        raise CNIError(INCOMPATIBLE_VERSION, f"invalid cniVersion {version!r}")
    return parts  # type: ignore[return-value]


def require_supported(version: str) -> str:
    parse(version)
    if version not in SUPPORTED:
        raise CNIError(
            INCOMPATIBLE_VERSION,
            f"incompatible CNI versions: config is {version!r}, plugin supports {list(SUPPORTED)}",
        )
    return version


def at_least(version: str, minimum: str) -> bool:
    return parse(version) >= parse(minimum)


def has_check(version: str) -> bool:
    return at_least(version, "0.4.0")


def has_status_gc(version: str) -> bool:
    return at_least(version, "1.1.0")


def ips_carry_version(version: str) -> bool:
    """0.3.x and 0.4.0 results tag each IP with "version": "4"|"6"."""
    return not at_least(version, "1.0.0")
