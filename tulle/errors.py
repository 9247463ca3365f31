"""The one error hierarchy of tulle.

Every seam (netlink, nft, the store, delegated plugins) translates its library's
failures into these classes; the CNI layer maps them to the spec's error codes
(see tulle.cni.errors).
"""

from __future__ import annotations


class TulleError(Exception):
    """Root of every failure tulle reports on purpose."""

    def __init__(self, msg: str, details: str = "") -> None:
        super().__init__(msg)
        self.msg = msg
        self.details = details


class ConfigError(TulleError):
    """The user's configuration is invalid (bad field, bad CIDR, ...)."""


class NotFoundError(TulleError):
    """Something that must exist does not (a netns, a link, a master device)."""


class ExistsError(TulleError):
    """Something that must not exist yet does (an interface name in the pod)."""


class ExhaustedError(TulleError):
    """No free resource is left (every address of a range is taken)."""


class KernelError(TulleError):
    """The kernel (netlink, nft, tc) refused a change."""

    def __init__(self, msg: str, details: str = "", errno: int = 0) -> None:
        super().__init__(msg, details)
        self.errno = errno


class CheckFailed(TulleError):
    """CHECK found that the live state drifted from what ADD made."""


class TryAgain(TulleError):
    """A transient condition; the caller may retry later."""
